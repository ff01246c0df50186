"""Moved to :mod:`farslip_ext.ovss.benchmarks` (kept so existing imports work)."""
from farslip_ext.ovss.benchmarks import *  # noqa: F401,F403
from farslip_ext.ovss.benchmarks import __all__  # noqa: F401
