"""Multi-task model architectures."""

from mtl_bt.models.base import COMMON_OPTIONS, MTLModel
from mtl_bt.models.build import build_model, build_model_from_dict, model_options
from mtl_bt.models.input_stage import InputStage

__all__ = [
    "COMMON_OPTIONS",
    "InputStage",
    "MTLModel",
    "build_model",
    "build_model_from_dict",
    "model_options",
]
