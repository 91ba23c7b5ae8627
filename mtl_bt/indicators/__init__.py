"""Backtrader indicators driven by mtl-bt models: ``MTLPredictions`` (a model's predictions
as lines, one per task head, plus the deciding fold)."""

from mtl_bt.indicators.engine import PredictionEngine
from mtl_bt.indicators.predictions import MTLPredictions, line_name, lines_class

__all__ = ["MTLPredictions", "PredictionEngine", "line_name", "lines_class"]
