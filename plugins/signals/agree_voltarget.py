"""Default signal rule: trade when the return and direction heads agree and the predicted
edge clears the round-trip cost by a margin; hold through noise (hysteresis); size by
target volatility.

Per asset, with h the trading horizon (option ``horizon``, default the smallest return
horizon), r = return@h (expected log return over the h-bar holding period), p =
direction@h (probability of an up move), s = volatility@h (per-bar vol), c = the
round-trip cost ``2 * (commission + slippage)`` and w0 the asset's current weight:

    entry   = threshold if given else c * (1 + margin)
    margin  = the option ``margin`` if given, else daily_margin * P / (h * 365.25)
              (P bars a year: the margin scales with holding periods per calendar day;
              daily_margin default 15: 16c for one decision a day, crypto's hourly bars
              at h = 24; about 3c for daily stocks at h = 5)
    signal  = sign(r)  iff  sign(r) == sign(2p - 1) != 0  and  |r| > entry,  else 0
    size    = min(max_weight, target_vol / (s * sqrt(periods_per_year)))

    flat (w0 = 0):   weight = signal * size
    held (w0 != 0):  flip to signal * size      if signal == -sign(w0)
                     close (0)                  if sign(r) == -sign(w0) and |r| > exit
                                                (exit = exit_threshold, default entry)
                     resize to sign(w0) * size  if | |w0| - size | > resize_band * size
                                                (resize_band default 0.5)
                     else keep w0 (no order)

then all weights are scaled down together when their gross sum exceeds
``max_gross_leverage``. The no-trade band between ``-exit`` and ``entry`` (hysteresis) is
why noise around a threshold does not flip positions: a held position is kept while the
heads merely disagree or the predicted edge is small, and a new position, a flip or a
close needs an edge of ``entry`` against the position.

Why a margin, and why per calendar day: the return head's raw numbers overstate the edge. On the bundled demos
its median |r| is 1.3% (crypto, 24 h) and 2.2% (stocks, 5 days), a third to half of the
realised return's spread, while its rank IC is about 0.01-0.02: taken at face value almost
every decision "clears" one round trip (0.3%), and the memoryless rule traded 444x its
value a year on the crypto demo. The margin is the discount on that overconfident edge,
chosen on the frontier of turnover against gross and net Sharpe
(``python -m mtl_bt.compare.frontier``; docs/results.md, "The default rule's turnover
frontier"); lower it for a calibrated return forecast. A position can change once per
holding period, so a noise-driven round trip can be paid ``P / h`` times a year: a rule
that decides seven times as often must demand more of each decision to pay the same
noise cost a year. The default therefore fixes the margin per calendar day of holding
(``daily_margin``) and divides it by the holding period in days: 15 at hourly bars and
h = 24 (one decision a day), 15 / 7.2 = 2.1 at daily stock bars and h = 5 (a decision
every 7.2 calendar days). The linear law is a first-order choice (a noise flip's
probability falls faster than linearly in the threshold), made after seeing that one
per-decision margin left the daily stocks demo nearly idle; the constant 15 was picked
on the crypto demo's seed-0 frontier. Give ``margin`` to fix the per-decision margin
instead (it overrides ``daily_margin``).
``hysteresis = false`` with ``margin = 0`` is the old memoryless rule (enter iff the edge
clears one round trip, flat otherwise, resized every decision): separable, vectorised.

Combining the heads by sign agreement (not by the product r * (2p - 1)) means two bearish
heads never produce a long.

Option ``volatility_input`` chooses s: ``"head"`` (default) the model's volatility@h
head; ``"trailing"`` the trailing realised per-bar vol the strategy passes as
``realised_vol`` (window ``realised_vol_window``, 20 bars); ``"ewma"`` the RiskMetrics
EWMA (lambda from the bar size, 11.2-day half-life) per-bar vol forecast from the asset's bars up to and including the
decision bar (the strategy's ``ewma_vol``; flat over the h bars, so the same per-bar
quantity as the head's forecast; the forecast scored as ``qlike_ewma``).
``use_volatility = false`` turns the head off (= ``"trailing"`` when the input is the
head; the other inputs read no head).

Fallbacks, so the same rule drives a single-task baseline:
- no direction@h head: trade on sign(r) and the thresholds alone;
- no volatility@h head (or a non-finite prediction; or an EWMA still in its 20-bar
  warm-up): size with the trailing realised per-bar vol; if that is missing too, equal
  weight ``min(max_weight, max_gross_leverage / n_assets)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtl_bt.errors import PluginError
from mtl_bt.plugins.signals.common import check_volatility_input, sizing_vol, vol_target_size
from mtl_bt.signals.base import SignalRule, pick_horizon
from mtl_bt.signals.clip import SMALL, clip_each_floats, clip_weights, scale_floats_to_gross

#: a current weight smaller than this is flat (rounding of a closed position)
FLAT = 1e-9
#: default margin per calendar day of holding (= the per-decision margin at one decision
#: a day); see the module docstring for why it scales with the holding period
DAILY_MARGIN = 15.0
#: calendar days a year (the margin's day)
DAYS_PER_YEAR = 365.25


class AgreeVolTarget(SignalRule):
    """Sign-agreement entry past the cost margin, hysteresis, volatility-targeted size."""

    name = "agree_voltarget"
    # the class promise holds for the memoryless form (hysteresis = false); an instance
    # with hysteresis reads current weights and says so with ``self.separable = False``
    separable = True
    # from a flat book (every current weight 0) the hysteresis rule is the memoryless one
    separable_when_flat = True

    def __init__(
        self,
        *,
        target_vol: float = 0.2,
        threshold: float | None = None,
        margin: float | None = None,
        daily_margin: float = DAILY_MARGIN,
        hysteresis: bool = True,
        exit_threshold: float | None = None,
        resize_band: float = 0.5,
        horizon: int | None = None,
        use_direction: bool = True,
        use_volatility: bool = True,
        volatility_input: str = "head",
    ) -> None:
        rule = "signal agree_voltarget"
        if not target_vol > 0:
            raise PluginError(f"{rule}: target_vol must be > 0, got {target_vol}")
        if threshold is not None and not threshold >= 0:
            raise PluginError(f"{rule}: threshold must be >= 0, got {threshold}")
        if margin is not None and not margin >= 0:
            raise PluginError(f"{rule}: margin must be >= 0, got {margin}")
        if not daily_margin >= 0:
            raise PluginError(f"{rule}: daily_margin must be >= 0, got {daily_margin}")
        if exit_threshold is not None and not exit_threshold >= 0:
            raise PluginError(f"{rule}: exit_threshold must be >= 0, got {exit_threshold}")
        if not resize_band >= 0:
            raise PluginError(f"{rule}: resize_band must be >= 0, got {resize_band}")
        if not isinstance(hysteresis, bool):
            raise PluginError(f"{rule}: hysteresis must be true or false, got {hysteresis!r}")
        source = check_volatility_input("agree_voltarget", volatility_input)
        super().__init__(
            target_vol=target_vol,
            threshold=threshold,
            margin=margin,
            daily_margin=daily_margin,
            hysteresis=hysteresis,
            exit_threshold=exit_threshold,
            resize_band=resize_band,
            horizon=horizon,
            use_direction=use_direction,
            use_volatility=use_volatility,
            volatility_input=source,
        )
        self.volatility_input = source
        self.context_inputs = ("ewma_vol",) if source == "ewma" else ()
        self.target_vol = float(target_vol)
        self.threshold = threshold
        self.margin = None if margin is None else float(margin)
        self.daily_margin = float(daily_margin)
        self.hysteresis = hysteresis
        self.exit_threshold = None if exit_threshold is None else float(exit_threshold)
        self.resize_band = float(resize_band)
        self.horizon = horizon
        self.use_direction = use_direction
        self.use_volatility = use_volatility
        #: with hysteresis the weights depend on the current weights: called bar by bar
        self.separable = not hysteresis
        self._heads: dict[tuple[str, ...], dict[str, str | None]] = {}
        self._horizon: dict[tuple[str, ...], int] = {}

    def heads(self, task_names: list[str]) -> dict[str, str | None]:
        """Which tasks feed the rule (cached: called every bar)."""
        key = tuple(task_names)
        cached = self._heads.get(key)
        if cached is not None:
            return cached
        fake = {name: np.empty(0) for name in task_names}
        h = pick_horizon(fake, self.horizon, self.name)
        direction, volatility = f"direction@{h}", f"volatility@{h}"
        cached = {
            "return": f"return@{h}",
            "direction": direction if self.use_direction and direction in fake else None,
            "volatility": volatility
            if self.use_volatility and self.volatility_input == "head" and volatility in fake
            else None,
        }
        self._heads[key] = cached
        self._horizon[key] = h
        return cached

    def decision_margin(
        self, periods_per_year: float | np.ndarray, horizon: int
    ) -> float | np.ndarray:
        """The per-decision margin: ``margin`` if given, else ``daily_margin`` times the
        holding periods per calendar day, ``P / (horizon * 365.25)`` (per asset when
        ``periods_per_year`` is an array)."""
        if self.margin is not None:
            return self.margin
        ppy = np.asarray(periods_per_year, dtype=np.float64)
        out = self.daily_margin * ppy / (horizon * DAYS_PER_YEAR)
        return float(out) if out.ndim == 0 else out

    def entry_threshold(
        self,
        commission: float,
        slippage: float,
        periods_per_year: float | np.ndarray = DAYS_PER_YEAR,
        horizon: int = 1,
    ) -> float | np.ndarray:
        """The edge a new position (or a flip) needs: ``threshold``, else the round-trip
        cost times ``1 + decision_margin`` (default arguments: one decision a day)."""
        if self.threshold is not None:
            return float(self.threshold)
        margin = self.decision_margin(periods_per_year, horizon)
        return 2.0 * (commission + slippage) * (1.0 + margin)

    def _parts(
        self,
        predictions: dict[str, np.ndarray],
        periods_per_year: float | np.ndarray,
        commission: float,
        slippage: float,
        max_weight: float,
        max_gross_leverage: float,
        realised_vol: np.ndarray | None,
        ewma_vol: np.ndarray | None,
        n_assets: int | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | np.ndarray]:
        """(r, signal side in {-1, 0, 1} or NaN, vol-target size, entry threshold) per
        asset."""
        names = list(predictions)
        heads = self.heads(names)
        entry = self.entry_threshold(
            commission, slippage, periods_per_year, self._horizon[tuple(names)]
        )
        r = np.asarray(predictions[heads["return"]], dtype=np.float64)
        n = r.shape[0]
        side = np.sign(r)
        if heads["direction"] is not None:
            up = np.asarray(predictions[heads["direction"]], dtype=np.float64) * 2.0 - 1.0
            side *= np.sign(up) == side
        side *= np.abs(r) > entry  # NaN r stays NaN
        head = None if heads["volatility"] is None else predictions[heads["volatility"]]
        vol = sizing_vol(self.volatility_input, head, realised_vol, ewma_vol, n)
        size = vol_target_size(
            vol, self.target_vol, periods_per_year, max_weight, max_gross_leverage, n_assets
        )
        return r, side, size, entry

    def raw_weights(
        self,
        predictions: dict[str, np.ndarray],
        *,
        periods_per_year: float | np.ndarray,
        commission: float = 0.0,
        slippage: float = 0.0,
        max_weight: float = 1.0,
        max_gross_leverage: float = 1.0,
        allow_short: bool = True,
        realised_vol: np.ndarray | None = None,
        ewma_vol: np.ndarray | None = None,
        n_assets: int | None = None,
        current_weights: np.ndarray | None = None,
        **context: Any,
    ) -> np.ndarray:
        """Weights before the portfolio clip. Without ``current_weights`` (or with
        ``hysteresis = false``) every asset is treated as flat: the memoryless rule. A small
        batch takes the scalar path, equal bit for bit (tested)."""
        context = {
            "periods_per_year": periods_per_year,
            "commission": commission,
            "slippage": slippage,
            "max_weight": max_weight,
            "max_gross_leverage": max_gross_leverage,
            "allow_short": allow_short,
            "realised_vol": realised_vol,
            "ewma_vol": ewma_vol,
            "n_assets": n_assets,
            "current_weights": current_weights,
        }
        small = self._small(predictions, context, raw=True)
        if small is not None:
            return small
        r, side, size, entry = self._parts(
            predictions,
            periods_per_year,
            commission,
            slippage,
            max_weight,
            max_gross_leverage,
            realised_vol,
            ewma_vol,
            n_assets,
        )
        target = side * size
        if not self.hysteresis or current_weights is None:
            return target
        w0 = np.nan_to_num(np.asarray(current_weights, dtype=np.float64).reshape(-1))
        if not allow_short:
            w0 = np.maximum(w0, 0.0)  # a short the rule may not hold is closed, not kept
        held = np.sign(np.where(np.abs(w0) > FLAT, w0, 0.0))
        rs = np.nan_to_num(np.sign(r))
        flip = (held != 0) & (np.nan_to_num(side) == -held)
        exit_at = entry if self.exit_threshold is None else self.exit_threshold
        close = (held != 0) & ~flip & (rs == -held) & (np.abs(r) > exit_at)
        with np.errstate(invalid="ignore"):
            drift = np.abs(np.abs(w0) - size) > self.resize_band * size
        keep = np.where(drift & np.isfinite(size), held * size, w0)
        out = np.where(held == 0, target, keep)
        out = np.where(flip, side * size, out)
        return np.where(close, 0.0, out)

    def weights(self, predictions: dict[str, np.ndarray], **context: Any) -> np.ndarray:
        """``raw_weights`` (reading ``current_weights``) through the portfolio clip; a small
        batch takes the scalar path, equal bit for bit (tested)."""
        small = self._small(predictions, context)
        if small is not None:
            return small
        raw = self.raw_weights(predictions, **context)
        return clip_weights(
            raw,
            context.get("max_weight", 1.0),
            context.get("max_gross_leverage", 1.0),
            context.get("allow_short", True),
        )

    def _small(
        self, predictions: dict[str, np.ndarray], context: dict[str, Any], raw: bool = False
    ) -> Any:
        """``weights`` (``raw``: ``raw_weights``) on a batch of at most ``SMALL`` assets in
        Python floats (the same IEEE operations in the same order as the numpy path, so the
        same bits: numpy's minimum, maximum and sign mimicked, NaN and signed zeros
        included); ``None`` when the batch or its context is not the plain kind (the numpy
        path then runs). ``raw`` without current weights or hysteresis: every asset flat."""
        w0s = context.get("current_weights")
        flat = w0s is None or not self.hysteresis
        if (flat and not raw) or not _plain(type(self)):
            return None
        names = list(predictions)
        heads = self.heads(names)
        r = _floats(predictions[heads["return"]])
        if r is None or not 0 < len(r) <= SMALL:
            return None
        n = len(r)
        w0s = [0.0] * n if flat else _floats(w0s, n)
        ppy = _floats(context.get("periods_per_year"), n)
        rv = context.get("realised_vol")
        rv = None if rv is None else _floats(rv, n)
        ev = context.get("ewma_vol")
        ev = None if ev is None else _floats(ev, n)
        up = None if heads["direction"] is None else _floats(predictions[heads["direction"]], n)
        hv = None if heads["volatility"] is None else _floats(predictions[heads["volatility"]], n)
        if None in (w0s, ppy) or (rv is None) != (context.get("realised_vol") is None):
            return None
        if (ev is None) != (context.get("ewma_vol") is None):
            return None
        if (up is None) != (heads["direction"] is None) or (hv is None) != (
            heads["volatility"] is None
        ):
            return None
        commission = context.get("commission", 0.0)
        slippage = context.get("slippage", 0.0)
        mw = context.get("max_weight", 1.0)
        cap = context.get("max_gross_leverage", 1.0)
        allow_short = context.get("allow_short", True)
        n_assets = context.get("n_assets")
        h = self._horizon[tuple(names)]
        cost = 2.0 * (commission + slippage)
        if self.threshold is not None:
            entries = [float(self.threshold)] * n
        elif self.margin is not None:
            entries = [cost * (1.0 + self.margin)] * n
        else:
            per_day = h * DAYS_PER_YEAR
            entries = [cost * (1.0 + self.daily_margin * p / per_day) for p in ppy]
        primary = hv if self.volatility_input == "head" else ev
        if self.volatility_input == "trailing":
            primary = None
        if primary is not None:
            vols = (
                primary
                if rv is None
                else [v if v > 0 else q for v, q in zip(primary, rv, strict=True)]
            )
        elif rv is not None:
            vols = rv
        else:
            vols = [math.nan] * n
        equal = min(mw, cap / max(1, n_assets or n))
        tv, band = self.target_vol, self.resize_band
        out = []
        for i in range(n):
            ri, entry, v, p = r[i], entries[i], vols[i], ppy[i]
            side = _sign(ri)
            if up is not None:
                side = side * (_sign(up[i] * 2.0 - 1.0) == side)
            side = side * (abs(ri) > entry)
            if v > 0:
                denom = v * (math.sqrt(p) if not p < 0 else math.nan)
                s = tv / denom if denom != 0 else math.inf
                size = s if s != s or s < mw else mw  # np.minimum(s, mw)
            else:
                size = equal
            w0 = w0s[i]
            w0 = 0.0 if w0 != w0 else max(min(w0, _MAX), -_MAX)  # np.nan_to_num
            if not allow_short:
                w0 = w0 if w0 > 0.0 else 0.0  # np.maximum(w0, 0.0)
            held = _sign(w0) if abs(w0) > FLAT else 0.0
            if held == 0:
                w = side * size
            else:
                side0 = 0.0 if side != side else side
                flip = side0 == -held
                rs = _sign(ri)
                rs = 0.0 if rs != rs else rs
                exit_at = entry if self.exit_threshold is None else self.exit_threshold
                if flip:
                    w = side * size
                elif rs == -held and abs(ri) > exit_at:
                    w = 0.0
                else:
                    drift = abs(abs(w0) - size) > band * size
                    w = held * size if drift and math.isfinite(size) else w0
            out.append(w)
        if not raw:  # the portfolio clip, as ``clip_weights`` does it
            out = scale_floats_to_gross(clip_each_floats(out, mw, allow_short), cap)
        return np.array(out, dtype=np.float64)


#: the methods the scalar path stands for: a subclass overriding one takes the numpy path
_SCALAR_STANDS_FOR = ("raw_weights", "_parts", "entry_threshold", "decision_margin", "heads")


def _plain(cls: type) -> bool:
    """``cls`` computes weights as ``AgreeVolTarget`` does (no override of what the scalar
    path reimplements; cached per class)."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = all(getattr(cls, m) is getattr(AgreeVolTarget, m) for m in _SCALAR_STANDS_FOR)
        _PLAIN[cls] = plain
    return plain


_PLAIN: dict[type, bool] = {}


#: np.nan_to_num's replacement for an infinite weight
_MAX = float(np.finfo(np.float64).max)


def _sign(x: float) -> float:
    """``np.sign`` of one float (NaN stays NaN; both zeros give 0.0)."""
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0 if x == 0 else x


def _floats(x: Any, n: int | None = None) -> list[float] | None:
    """A flat 1-D float64 array or float as a list of ``n`` Python floats (a float is
    broadcast); ``None`` for anything else."""
    if isinstance(x, float):
        return None if n is None else [x] * n
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype != np.float64:
        return None
    if n is not None and x.shape[0] != n:
        return None
    return x.tolist()
