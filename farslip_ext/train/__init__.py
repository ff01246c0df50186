"""Training: the task (batch -> losses), the GPU training loop, configs and recipes."""
from farslip_ext.train import task  # noqa: F401  (registers FarSLIPTask in TASKS)
from farslip_ext.train.config import load_config, list_recipes
from farslip_ext.train.task import FarSLIPTask

__all__ = ["FarSLIPTask", "load_config", "list_recipes", "Trainer", "train"]


def __getattr__(name):  # the loop imports the data stack; load it on first use
    if name in ("Trainer", "train", "NonFiniteLossError"):
        from farslip_ext.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
