"""NAFSSR architecture, TLC conversion and checkpoint I/O."""

from .nafssr import NAFSSR, VARIANTS, NAFSSRConfig, build_nafssr, forward_6ch
from .tlc import disable_tlc, enable_tlc

__all__ = [
           "NAFSSR",
           "VARIANTS",
           "NAFSSRConfig",
           "build_nafssr",
           "disable_tlc",
           "enable_tlc",
           "forward_6ch",
]
