"""Distillation teachers (docs/reference/method.md §1.4). Importing this package registers them in ``TEACHERS``."""
from farslip_ext.teachers.teachers import (
    LOGIT_SCALE_MAX,
    ActiveTeacher,
    EMATeacher,
    FrozenTeacher,
    Teacher,
    unwrap_model,
)

__all__ = ["Teacher", "ActiveTeacher", "EMATeacher", "FrozenTeacher", "unwrap_model", "LOGIT_SCALE_MAX"]
