"""The signal-rule interface: model predictions -> target portfolio weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.signals.clip import clip_weights


def task_horizons(predictions: dict[str, Any], kind: str) -> list[int]:
    """Horizons of the ``kind@h`` heads among ``predictions``' names, ascending."""
    out = []
    for name in predictions:
        k, _, h = name.partition("@")
        if k == kind and h.isdigit():
            out.append(int(h))
    return sorted(out)


def pick_horizon(predictions: dict[str, Any], horizon: int | None, rule: str) -> int:
    """The trading horizon: ``horizon`` if given, else the smallest return horizon."""
    available = task_horizons(predictions, "return")
    if not available:
        raise PluginError(
            f"signal {rule!r} needs a return head (return@h); the model predicts "
            f"{sorted(predictions)}"
        )
    if horizon is None:
        return available[0]
    if horizon not in available:
        raise PluginError(
            f"signal {rule!r}: horizon={horizon} has no return@{horizon} head; "
            f"available return horizons: {available}"
        )
    return int(horizon)


class SignalRule:
    """Maps one bar's predictions for a batch of assets to target weights.

    ``weights(predictions, **context)``: ``predictions`` maps task name (e.g.
    ``"return@1"``) to an array with one transformed prediction per asset of the
    batch; the result is one signed target weight per asset of the batch, in batch
    order (fraction of portfolio value; 0 = flat). The batch is the assets due for a
    decision on this bar: every asset with a usable prediction under
    ``rebalance = "bar"``, only those whose holding period ended under
    ``rebalance = "horizon"``, and always every asset for a rule with
    ``all_assets = True`` (cross-sectional rules: ranks, market neutrality).

    Context keywords the strategy passes (accept ``**context`` for the ones you do
    not use; more may be added): ``symbols`` (list[str], the batch),
    ``current_weights`` (array, the batch's current signed weights),
    ``all_symbols`` and ``all_current_weights`` (every asset of the backtest),
    ``periods_per_year`` and ``realised_vol`` (arrays over the batch),
    ``commission``, ``slippage``, ``max_weight``, ``max_gross_leverage``,
    ``allow_short``, ``n_assets``; and, only for a rule whose ``context_inputs`` lists it,
    ``ewma_vol`` (array over the batch: the RiskMetrics EWMA per-bar vol forecast from each
    asset's bars up to and including this one, ``mtl_bt.metrics.volatility.ewma_vol``).
    Whatever the rule returns is then held to
    ``max_weight``, ``max_gross_leverage`` and ``allow_short`` by
    ``mtl_bt.signals.clip.clip_weights`` (a breach is warned about and counted as
    ``signal_clipped`` in the run's metrics).
    """

    #: True: the rule sees every asset with a usable prediction on every decision bar
    all_assets: bool = False

    #: optional context the strategy computes only for rules that list it: ``"ewma_vol"``
    context_inputs: tuple[str, ...] = ()

    #: True promises ``weights(p, **c) == clip_weights(raw_weights(p, **c), max_weight,
    #: max_gross_leverage, allow_short)`` (``mtl_bt.signals.clip``) with ``raw_weights``
    #: elementwise: an asset's raw weight depends only on its own predictions and its own
    #: entries of array context (``periods_per_year``, ``realised_vol``, ``ewma_vol``) plus
    #: scalars, never on the other assets of the batch, ``symbols`` or current weights. In
    #: precomputed mode the strategy then computes the raw weight of every (bar, asset)
    #: before the run and applies only the cross-sectional ``clip_weights`` per bar
    #: (identical orders, tested).
    separable: bool = False

    #: True promises the ``separable`` law whenever the batch is flat: with every entry of
    #: ``current_weights`` 0, ``weights(p, **c) == clip_weights(raw_weights(p, **c'), ...)``
    #: where ``c'`` is ``c`` without the current-weights context and ``raw_weights`` is
    #: elementwise (a rule with memory of its positions, e.g. hysteresis, that trades a flat
    #: book as its memoryless form). A decision on a flat batch then skips the context and,
    #: in precomputed mode, reads raw weights computed before the run (identical orders,
    #: tested).
    separable_when_flat: bool = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    def weights(self, predictions: dict[str, np.ndarray], **context: Any) -> np.ndarray:
        """A ``separable`` rule's weights are its raw weights through the portfolio clip;
        any other rule implements this itself."""
        if not self.separable:
            raise NotImplementedError
        raw = self.raw_weights(predictions, **context)
        return clip_weights(
            raw,
            context.get("max_weight", 1.0),
            context.get("max_gross_leverage", 1.0),
            context.get("allow_short", True),
        )

    def raw_weights(self, predictions: dict[str, np.ndarray], **context: Any) -> np.ndarray:
        """Elementwise weights before the portfolio clip (``separable`` rules only)."""
        raise NotImplementedError
