"""Moved to :mod:`farslip_ext.ovss.text` (kept so existing imports work)."""
from farslip_ext.ovss.text import *  # noqa: F401,F403
from farslip_ext.ovss.text import __all__  # noqa: F401
