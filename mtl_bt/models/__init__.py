"""Multi-task model architectures."""

from mtl_bt.models.base import MTLModel

__all__ = ["MTLModel"]
