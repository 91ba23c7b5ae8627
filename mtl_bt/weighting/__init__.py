"""Loss-weighting schemes."""

from mtl_bt.weighting.base import Weighting

__all__ = ["Weighting"]
