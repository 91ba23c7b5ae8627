"""Streaming vs preloaded backtest parity: the ``streaming = preloaded`` rows of
``mtl-bt check CONFIG``.

A feed that is not preloaded (``cerebro.run(preload=False)``, replay, live) makes
``MTLStrategy`` compute each feature row when its bar arrives
(``mtl_bt.features.streaming``): a feature without a ``stream`` updater is recomputed
over its last ``window`` bars (default warm-up + 1), not over the whole history. A
plugin whose value depends on more history than that, on the frame's length, or on
state kept between calls, trades differently live than in the preloaded backtest it
was judged on. This module runs both on the same short slice and says where they part.

The run: the last ``warm-up + lookback + bars`` bars of each symbol; the config's
features, tasks, architecture (built with ``training.seed``, weights left untrained:
only equality is at stake, not skill; its scaler is fitted on the slice's complete
rows) and signal rule with the config's ``[backtest]`` broker and strategy settings.
The same backtest runs preloaded and with ``preload=False``; compared within
``TOL`` (relative): every feature row, every decision's predictions, every target
weight, every order (bar, symbol, side, size, price, status, commission) and the final
value. Differing feature rows name the feature, its plugin, the column and the first
bar; otherwise the first differing prediction names the architecture, weight the
signal rule.

It does not prove parity on other data, a longer run (a slowly drifting state), a
trained model's decisions (the decision boundaries differ) or replayed/resampled feeds
(their bars are other bars, see docs/backtesting.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt import registry
from mtl_bt.strategies.mtl import MTLStrategy

#: relative tolerance of every comparison (absolute: TOL * ATOL_SCALE)
TOL = 1e-6
ATOL_SCALE = 1e-6
#: bars after the warm-up that each symbol's slice holds by default
PARITY_BARS = 300
#: fewer bars after the warm-up than this and the check is not run
MIN_BARS = 20


@dataclass(frozen=True)
class Outcome:
    """One parity result: ``status`` is ``"pass"``, ``"FAIL"``, ``"note"`` or ``"not checked"``."""

    kind: str
    name: str
    plugin: str
    status: str
    detail: str


class _Recording(MTLStrategy):
    """MTLStrategy that keeps every decision's target weights (via the public hook);
    ``bars_per_year`` pins the streaming path's per-asset bars per year (which it otherwise
    fixes at the first decision from the bars seen so far)."""

    params = (("bars_per_year", None),)

    def _start_streaming(self) -> None:
        super()._start_streaming()
        if self.p.bars_per_year is not None:
            for asset, value in zip(self.book.assets, self.p.bars_per_year, strict=True):
                asset.ppy = float(value)

    def start(self) -> None:
        super().start()
        self.targets_log: list[tuple[float, list[str], np.ndarray]] = []

    def order_targets(self, targets: list[tuple[Any, float]]) -> None:
        self.targets_log.append(
            (
                float(self.datetime[0]),
                [self.symbols[self._asset_of[id(d)]] for d, _ in targets],
                np.array([w for _, w in targets], dtype=np.float64),
            )
        )
        super().order_targets(targets)


@dataclass
class _Run:
    strategy: Any
    orders: pd.DataFrame
    value: float


def _plugin(kind: str, name: str) -> str:
    return registry.registry().entry(kind, name).plugin


def _close(a: Any, b: Any) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.maximum(np.abs(a), np.abs(b))
    return (
        (a == b) | (np.abs(a - b) <= TOL * scale + TOL * ATOL_SCALE) | (np.isnan(a) & np.isnan(b))
    )


def _when(num: float) -> str:
    import backtrader as bt

    return str(pd.Timestamp(bt.num2date(num)).tz_localize("UTC"))


def slices(frames: Mapping[str, pd.DataFrame], warmup: int, bars: int) -> dict[str, pd.DataFrame]:
    """The last ``warmup + bars`` bars of each symbol (attrs kept: the feed's bar size)."""
    return {s: f.iloc[-(warmup + bars) :] for s, f in frames.items()}


def parity_model(config: Any, comp: Any, frames: Mapping[str, pd.DataFrame]) -> Any:
    """A ``Predictor`` of the config's architecture, seeded, untrained; scaler fitted on the
    complete feature rows of ``frames``. Global torch RNG state is left as it was."""
    import torch

    from mtl_bt import checkpoint as ckpt
    from mtl_bt.errors import DataError
    from mtl_bt.features.scaler import Scaler
    from mtl_bt.features.spec import compute
    from mtl_bt.predictor import Predictor
    from mtl_bt.training.pipeline import build_fold_model

    spec = comp.feature_spec
    columns = spec.columns()
    parts = []
    from mtl_bt.training.dataset import run_frames

    run = run_frames(frames)
    for frame in run.values():
        x = compute(frame, spec, run)[columns].to_numpy(np.float64)
        parts.append(x[np.isfinite(x).all(axis=1)])
    x = np.concatenate(parts)
    if not len(x):
        raise DataError("no bar of the parity slice has complete features; raise --parity-bars")
    scaler = Scaler(config.features.scaler).fit(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.training.seed))
        model = build_fold_model(config, len(columns), comp.tasks, len(frames))
    model.eval()
    checkpoint = ckpt.Checkpoint(
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        architecture=config.model.architecture,
        init_kwargs=model.init_kwargs,
        config=config.model_dump(mode="json"),
        feature_spec=spec.to_dict(),
        feature_columns=columns,
        tasks=[ckpt.plain(vars(t.spec)) for t in comp.tasks],
        scaler=scaler.to_dict(),
        symbols=list(frames),
        fold={},
        versions=ckpt.versions(),
        lookback=comp.lookback,
    )
    return Predictor(checkpoint)


def run(
    config: Any,
    frames: Mapping[str, pd.DataFrame],
    predictor: Any,
    preload: bool,
    bars_per_year: Sequence[float] | None = None,
) -> _Run:
    """The config's backtest of ``predictor`` on ``frames``, preloaded or streaming."""
    from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
    from mtl_bt.backtesting.inputs import build_signal, strategy_params
    from mtl_bt.backtesting.runner import make_cerebro

    cfg = config.backtest
    cerebro = make_cerebro(frames, cfg)
    params = strategy_params(cfg, [predictor], build_signal(cfg))  # a fresh rule per run
    cerebro.addstrategy(_Recording, record=True, bars_per_year=bars_per_year, **params)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="portfolio")
    strat = cerebro.run(preload=preload)[0]
    orders = pd.DataFrame(strat.analyzers.portfolio.get_analysis()["orders"])
    return _Run(strat, orders, float(cerebro.broker.getvalue()))


def _owners(spec: Any) -> dict[str, str]:
    """Feature column -> the feature (registered name) that computes it."""
    from mtl_bt.features.spec import feature_columns

    out = {}
    reads = spec.reads()
    for name, params in spec.resolved_params().items():
        for column in feature_columns(name, params, reads.get(name)):
            out[column] = name
    return out


def feature_outcomes(spec: Any, columns: Sequence[str], pre: _Run, stream: _Run) -> list[Outcome]:
    """One FAIL per feature whose streamed rows differ from the preloaded ones: the first
    (bar, column) of the first symbol where they part."""
    owners = _owners(spec)
    found: dict[str, str] = {}
    book_pre, book_stream = pre.strategy.book, stream.strategy.book
    for a, symbol in enumerate(pre.strategy.symbols):
        want = book_pre.feats[a]
        got = np.array(book_stream.kept[a], dtype=np.float32).reshape(-1, len(columns))
        n = min(len(want), len(got))
        bad = ~_close(got[:n], want[:n])
        times = pre.strategy.frames[a].index
        for j in np.flatnonzero(bad.any(axis=0)):
            column = str(columns[j])
            owner = owners.get(column, column)
            if owner in found:
                continue
            i = int(np.argmax(bad[:, j]))
            cause = stream_cause(spec, owner, pre.strategy.frames[a], i, column, float(got[i, j]))
            found[owner] = (
                f"{symbol}: column {column!r} first differs at bar {i} ({times[i]}): streamed "
                f"{float(got[i, j])!r} vs preloaded {float(want[i, j])!r}; {cause}"
            )
        if len(got) != len(want):
            found.setdefault("(rows)", f"{symbol}: {len(got)} streamed rows vs {len(want)}")
    return [
        Outcome(
            "feature",
            name,
            _plugin("feature", name.split("@")[0]) if name in owners.values() else "-",
            "FAIL",
            detail,
        )
        for name, detail in found.items()
    ]


def stream_cause(
    spec: Any, name: str, frame: pd.DataFrame, i: int, column: str, streamed: float
) -> str:
    """Why feature ``name``'s streamed row ``i`` differs from the preloaded one, told apart
    by recomputing that row (the function in one call) on three histories:

    - on bars ..i only vs on the whole slice: differs -> **look-ahead** (the preloaded value
      read bars after i);
    - on its last ``window`` bars (what the stream recomputes) vs on bars ..i: differs ->
      **warm-up**: it reads more history than its window;
    - else the function gives the preloaded value on the stream's own bars in one call, so
      the difference comes from calling it bar by bar: **streaming state** (state kept
      between calls) or a ``stream=``/``batch=`` updater that disagrees with the function.
    """
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.spec import feature_fn
    from mtl_bt.features.streaming import feature_window

    try:
        params = spec.resolved_params()[name]
        one = FeatureSpec(names=[name], params={name: params})
        fn = feature_fn(name)
        full = float(compute(frame, one)[column].iloc[i])
        upto = float(compute(frame.iloc[: i + 1], one)[column].iloc[-1])
        window = feature_window(name, fn, one.resolved_params()[name])
        last = float(compute(frame.iloc[max(0, i + 1 - window) : i + 1], one)[column].iloc[-1])
    except Exception:  # the cause cannot be told; the plain finding stands
        return "the streaming path computes it from the bars seen so far, bar by bar"
    updater = getattr(fn, "stream", None) or getattr(fn, "batch", None)
    if not _close(upto, full).all():
        return (
            f"look-ahead: on the bars up to that one it is {upto!r}, so the preloaded value "
            "read later bars (see its look-ahead row); a live feed cannot see them"
        )
    if updater is not None:
        return (
            f"its stream=/batch= updater disagrees with the function ({upto!r} on the same "
            "bars in one call): fix the updater (docs/features.md)"
        )
    if not _close(last, upto).all():
        return (
            f"warm-up: on its last {window} bars (what the stream recomputes; window = "
            f"warm-up + 1 unless declared) it is {last!r}, on the whole history {upto!r}: it "
            "reads more history than that; declare @feature(window=...) or a stream= updater "
            "(docs/features.md), or drop its dependence on longer history"
        )
    return (
        f"streaming state: on the same last {window} bars in one call it is {last!r}, called "
        f"bar by bar {streamed!r}: it keeps state between calls (a cache?) or depends on "
        "something besides its bars"
    )


def _first_prediction_difference(pre: Any, stream: Any) -> str | None:
    a, b = pre.predictions_log, stream.predictions_log
    for (t1, as1, p1), (t2, as2, p2) in zip(a, b, strict=False):
        if t1 != t2 or as1 != as2:
            return f"decided at {_when(t1)} on assets {as1} vs at {_when(t2)} on {as2}"
        for task in p1:
            ok = _close(p2[task], p1[task])
            if not ok.all():
                k = int(np.argmin(ok))
                return (
                    f"prediction {task!r} of {pre.symbols[as1[k]]} at {_when(t1)}: streamed "
                    f"{float(p2[task][k])!r} vs preloaded {float(p1[task][k])!r}"
                )
    if len(a) != len(b):
        return f"{len(b)} decisions streamed vs {len(a)} preloaded"
    return None


def _first_weight_difference(pre: Any, stream: Any) -> str | None:
    a, b = pre.targets_log, stream.targets_log
    for (t1, s1, w1), (t2, s2, w2) in zip(a, b, strict=False):
        if t1 != t2 or s1 != s2:
            return f"target weights at {_when(t1)} for {s1} vs at {_when(t2)} for {s2}"
        ok = _close(w2, w1)
        if not ok.all():
            k = int(np.argmin(ok))
            return (
                f"target weight of {s1[k]} at {_when(t1)}: streamed {float(w2[k])!r} vs "
                f"preloaded {float(w1[k])!r}"
            )
    if len(a) != len(b):
        return f"{len(b)} target-weight decisions streamed vs {len(a)} preloaded"
    return None


def _first_order_difference(pre: pd.DataFrame, stream: pd.DataFrame) -> str | None:
    exact = ["datetime", "symbol", "side", "status"]
    near = ["size", "price", "commission"]
    for k in range(min(len(pre), len(stream))):
        o1, o2 = pre.iloc[k], stream.iloc[k]
        if any(o1[c] != o2[c] for c in exact) or not _close(o2[near], o1[near]).all():
            show = ", ".join(f"{c}={o1[c]!r}" for c in ("symbol", "side", "size", "price"))
            got = ", ".join(f"{c}={o2[c]!r}" for c in ("symbol", "side", "size", "price"))
            return f"order {k} ({_when(o1['datetime'])}): preloaded {show}; streamed {got}"
    if len(pre) != len(stream):
        return f"{len(stream)} orders streamed vs {len(pre)} preloaded"
    return None


def _calendar_note(config: Any, pre: _Run, stream: _Run) -> Outcome | None:
    """A note when the streaming run fixed other bars per year than the preloaded one
    (``calendar="auto"`` decided before a weekend bar was seen; docs/backtesting.md) and
    that changed a target weight or an order; None when it changed nothing."""
    a, b = pre.strategy.ppy, stream.strategy.ppy
    decided = np.isfinite(b)
    if np.array_equal(a[decided], b[decided]):
        return None
    if (
        _first_weight_difference(pre.strategy, stream.strategy) is None
        and _first_order_difference(pre.orders, stream.orders) is None
    ):
        return None  # the bars a year did not change a weight or an order: it does not matter
    return Outcome(
        "backtest",
        "calendar",
        "-",
        "note",
        f"calendar {config.backtest.calendar!r}: the stream fixed {b.tolist()} bars a year at "
        f"its first decision (from the bars seen so far), the preloaded run {a.tolist()}, "
        "and that changed its weights; compared on the preloaded values. Set "
        "backtest.calendar to trade the same live",
    )


def _varies(strategy: Any) -> bool:
    """Some prediction of the rule's tasks moves from bar to bar (the inputs mattered)."""
    for task in strategy.used_tasks:
        values = [v for _, _, p in strategy.predictions_log for v in p[task]]
        if np.nanstd(np.asarray(values, dtype=np.float64)) > 0:
            return True
    return False


def check_parity(
    config: Any, comp: Any, frames: Mapping[str, pd.DataFrame], bars: int = PARITY_BARS
) -> list[Outcome]:
    """The config's backtest preloaded vs streaming on a short slice (module docstring):
    a ``backtest`` outcome, plus one FAIL per feature whose streamed rows differ."""
    signal = str(config.backtest.signal)
    signal_plugin = _plugin("signal", signal)
    if bars <= 0:
        return [Outcome("backtest", signal, signal_plugin, "not checked", "--parity-bars 0")]
    warmup = comp.feature_spec.warmup() + comp.lookback
    short = [s for s, f in frames.items() if len(f) < warmup + MIN_BARS]
    if short:
        return [
            Outcome(
                "backtest",
                signal,
                signal_plugin,
                "not checked",
                f"{short[0]}: {len(frames[short[0]])} bars, fewer than the warm-up "
                f"({warmup}) + {MIN_BARS}",
            )
        ]
    part = slices(frames, warmup, bars)
    predictor = parity_model(config, comp, part)
    out: list[Outcome] = []
    try:
        how = "preloaded"
        pre = run(config, part, predictor, True)
        how = "streaming"
        stream = run(config, part, predictor, False)
        calendar = _calendar_note(config, pre, stream)
        if calendar is not None:  # not a plugin's doing: compare on the preloaded calendar
            out.append(calendar)
            stream = run(config, part, predictor, False, pre.strategy.ppy.tolist())
    except Exception as exc:  # a plugin failing on one path is the finding
        return [
            *out,
            Outcome(
                "backtest",
                signal,
                signal_plugin,
                "FAIL",
                f"the {how} run raised {type(exc).__name__}: {exc}".replace("\n", " "),
            ),
        ]
    out.extend(feature_outcomes(comp.feature_spec, predictor.feature_columns, pre, stream))
    culprits = ", ".join(f"feature {o.name!r}" for o in out if o.status == "FAIL")
    checks = [
        ("architecture", config.model.architecture, _first_prediction_difference),
        ("signal", signal, _first_weight_difference),
    ]
    for kind, name, first in checks:
        found = first(pre.strategy, stream.strategy)
        if found:
            if culprits:
                plugin = ", ".join(sorted({o.plugin for o in out if o.status == "FAIL"}))
                cause = culprits
            else:
                plugin, cause = _plugin(kind, name), f"{kind} {name!r}"
            out.append(Outcome("backtest", signal, plugin, "FAIL", f"{found} (from {cause})"))
            return out
    found = _first_order_difference(pre.orders, stream.orders)
    if found is None and not _close(stream.value, pre.value).all():
        found = f"final value streamed {stream.value!r} vs preloaded {pre.value!r}"
    if found:
        out.append(Outcome("backtest", signal, "-", "FAIL", f"{found} (same target weights)"))
        return out
    n = sum(len(f) for f in part.values())
    decisions = len(pre.strategy.predictions_log)
    what = (
        f"{len(part)} symbols x {bars} bars after a {warmup}-bar warm-up ({n} bars), untrained "
        f"seeded model: {decisions} decisions, {len(pre.orders)} orders and the final value "
        f"equal (rel {TOL:g})"
    )
    if culprits:  # features differ but nothing downstream did
        out.append(Outcome("backtest", signal, "-", "pass", what))
    elif decisions == 0 or pre.orders.empty or not _varies(pre.strategy):
        out.append(
            Outcome(
                "backtest",
                signal,
                signal_plugin,
                "note",
                f"{what}; but nothing was traded or the predictions never moved, so little "
                "was compared",
            )
        )
    else:
        out.append(Outcome("backtest", signal, signal_plugin, "pass", what))
    return out
