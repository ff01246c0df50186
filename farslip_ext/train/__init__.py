"""Training: the task (batch -> losses), its feature vocabulary, the training loop, configs and recipes."""
from farslip_ext.train import task  # noqa: F401  (registers FarSLIPTask in TASKS)
from farslip_ext.train.config import describe_config, list_recipes, load_config
from farslip_ext.train.features import COMPUTED_FEATURES, FEATURES, example_features
from farslip_ext.train.task import FarSLIPTask

__all__ = ["FarSLIPTask", "FEATURES", "COMPUTED_FEATURES", "example_features", "load_config", "list_recipes",
           "describe_config", "Trainer", "train"]


def __getattr__(name):  # the loop imports the data stack; load it on first use
    if name in ("Trainer", "train", "NonFiniteLossError"):
        from farslip_ext.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
