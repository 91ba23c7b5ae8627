"""The signal-rule interface: model predictions -> target portfolio weights."""

from __future__ import annotations

from typing import Any

import numpy as np


class SignalRule:
    """Maps one bar's predictions for a batch of assets to target weights.

    ``predictions`` maps task name (e.g. ``"return@1"``) to an array with one
    transformed prediction per asset; ``weights`` returns one signed target
    weight per asset (fraction of portfolio value; 0 = flat).
    """

    def __init__(self, **options: Any) -> None:
        self.options = options

    def weights(self, predictions: dict[str, np.ndarray], **context: Any) -> np.ndarray:
        raise NotImplementedError
