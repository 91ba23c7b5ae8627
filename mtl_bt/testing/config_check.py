"""``mtl-bt check CONFIG``: look-ahead and warm-up analysis of every feature and task a
config uses (built-in or not), on the config's own data.

The counterpart of freqtrade's ``lookahead-analysis`` / ``recursive-analysis``:
- look-ahead: each feature is recomputed on truncated prefixes at several cut points
  and on a perturbed future; any changed past row names the column and the first bar.
  Each target must use bars t-lookback..t+h only, and really look h bars ahead.
- warm-up: the bars after which a feature no longer depends on where the history
  starts, against its declared warm-up.
- contract: the architecture, weighting and signal rule through ``check_architecture``,
  ``check_weighting`` and ``check_signal`` with the config's tasks and options.
- streaming = preloaded: the config's backtest on the last ``parity_bars`` bars of each
  symbol after the warm-up, with the config's architecture built from ``training.seed``
  and left untrained, run preloaded and with ``preload=False``; every feature row,
  prediction, target weight, order and the final value must agree (relative 1e-6). A
  differing feature is named with its column and first bar (``mtl_bt.testing.parity``).
  It does not prove parity on other data, over longer runs, for a trained model's
  decisions or for replayed/resampled feeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mtl_bt import registry
from mtl_bt.testing import lookahead

#: statuses of a row
PASS, FAIL, NOTE, SKIP = "pass", "FAIL", "note", "not checked"


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    plugin: str
    law: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _plugin(kind: str, name: str) -> str:
    entry = registry.registry().entry(kind, name)
    return entry.plugin


def check_config(
    config: Any,
    frames: Mapping[str, pd.DataFrame],
    *,
    bars: int = 2000,
    cuts: int = 5,
    parity_bars: int = 300,
) -> list[Row]:
    """One row per (item, law); FAIL rows name the column and the first bar."""
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.spec import plugin_name
    from mtl_bt.testing import cross
    from mtl_bt.training import build_components

    comp = build_components(config)
    rows: list[Row] = []
    params = comp.feature_spec.resolved_params()
    for name in params:
        spec = FeatureSpec(names=[name], params={name: params[name]})

        def fn(f: pd.DataFrame, spec: FeatureSpec = spec) -> pd.DataFrame:
            return compute(f, spec)

        plugin = _plugin("feature", plugin_name(name))
        if spec.reads():  # reads other frames: the laws across frames (mtl_bt.testing.cross)
            rows.extend(
                Row("feature", name, plugin, law, status, detail)
                for law, status, detail in cross.config_rows(name, spec, frames, bars, cuts)
            )
            continue
        declared = spec.warmup()
        look: list[lookahead.Finding] = []
        worst: dict[str, int | None] = {}
        slow: dict[str, int | None] = {}
        where = ""
        for symbol, frame in frames.items():
            frame = frame.iloc[-bars:]
            points = lookahead.default_cuts(len(frame), declared, cuts)
            full = fn(frame)
            found = lookahead.prefix_findings(fn, frame, points, full) or (
                lookahead.future_findings(fn, frame, points, full)
            )
            if found and not look:
                look, where = found, symbol
            starts = lookahead.default_starts(len(frame), declared)
            for column, value in lookahead.measured_warmup(fn, frame, starts, full).items():
                if value is None or worst.get(column, 0) is not None:
                    old = worst.get(column, 0)
                    worst[column] = None if value is None else max(old or 0, value)
            for column, value in lookahead.measured_warmup(
                fn, frame, starts, full, lookahead.WARMUP_NOTE_TOL
            ).items():
                if value is None or value > declared:
                    slow[column] = value
        if look:
            rows.append(Row("feature", name, plugin, "look-ahead", FAIL, f"{where}: {look[0]}"))
        else:
            rows.append(
                Row(
                    "feature",
                    name,
                    plugin,
                    "look-ahead",
                    PASS,
                    f"{cuts} cuts x {len(frames)} symbols",
                )
            )
        never = [c for c, v in worst.items() if v is None]
        over = {c: v for c, v in worst.items() if v is not None and v > declared}
        measured = max((v for v in worst.values() if v is not None), default=0)
        if never:
            rows.append(
                Row(
                    "feature",
                    name,
                    plugin,
                    "warm-up",
                    FAIL,
                    f"column {never[0]!r} depends on where the history starts and never settles "
                    "(cumulative or start-anchored)",
                )
            )
        elif over:
            column, value = max(over.items(), key=lambda kv: kv[1])
            rows.append(
                Row(
                    "feature",
                    name,
                    plugin,
                    "warm-up",
                    FAIL,
                    f"column {column!r} depends on the start of the history for {value} bars; "
                    f"declared warm-up {declared}",
                )
            )
        elif slow:
            rows.append(
                Row(
                    "feature",
                    name,
                    plugin,
                    "warm-up",
                    NOTE,
                    f"declared {declared}, measured {measured}; a trace of the start "
                    f"(> {lookahead.WARMUP_NOTE_TOL} std) remains for {slow} bars",
                )
            )
        else:
            rows.append(
                Row(
                    "feature",
                    name,
                    plugin,
                    "warm-up",
                    PASS,
                    f"declared {declared}, measured {measured}",
                )
            )
    for task in comp.tasks:
        plugin = _plugin("task", task.kind)

        def build(f: pd.DataFrame, task: Any = task) -> pd.Series:
            return task.build_target(f).astype("float64")

        found: list[lookahead.Finding] = []
        for symbol, frame in frames.items():
            frame = frame.iloc[-bars:]
            points = lookahead.default_cuts(len(frame), task.lookback + task.horizon, cuts)
            found = lookahead.target_findings(build, frame, task.horizon, task.lookback, points)
            if found:
                found = [found[0]]
                where = symbol
                break
        if found:
            rows.append(
                Row("task", task.name, plugin, "target window", FAIL, f"{where}: {found[0]}")
            )
        else:
            rows.append(
                Row(
                    "task",
                    task.name,
                    plugin,
                    "target window",
                    PASS,
                    f"bars t-{task.lookback}..t+{task.horizon} only",
                )
            )
    rows.extend(_contract_rows(config, comp))
    rows.extend(_parity_rows(config, comp, frames, parity_bars))
    return rows


def _parity_rows(
    config: Any, comp: Any, frames: Mapping[str, pd.DataFrame], bars: int
) -> list[Row]:
    """The config's short backtest preloaded vs streaming (``mtl_bt.testing.parity``)."""
    from mtl_bt.testing import parity

    return [
        Row(o.kind, o.name, o.plugin, "streaming = preloaded", o.status, o.detail)
        for o in parity.check_parity(config, comp, frames, bars)
    ]


def _contract_rows(config: Any, comp: Any) -> list[Row]:
    """The architecture, weighting and signal rule, each through its ``check_*`` with
    the config's own tasks and options."""
    from mtl_bt.models.build import model_options
    from mtl_bt.testing import checks

    specs = [t.spec for t in comp.tasks]
    names = [t.name for t in comp.tasks]
    jobs = [
        (
            "architecture",
            config.model.architecture,
            lambda: checks.check_architecture(
                config.model.architecture,
                len(comp.feature_spec.columns()),
                tasks=specs,
                **model_options(config.model, len(config.data.symbols)),
            ),
        ),
        (
            "weighting",
            config.weighting.name,
            lambda: checks.check_weighting(
                config.weighting.name, tasks=specs, **config.weighting.options
            ),
        ),
        (
            "signal",
            config.backtest.signal,
            lambda: checks.check_signal(
                config.backtest.signal, task_names=names, **config.backtest.signal_options
            ),
        ),
    ]
    rows = []
    for kind, name, run in jobs:
        plugin = _plugin(kind, name)
        try:
            report = run()
        except checks.ConformanceError as exc:
            rows.append(Row(kind, name, plugin, "contract", FAIL, str(exc)))
            continue
        rows.append(Row(kind, name, plugin, "contract", PASS, f"{len(report.laws)} laws"))
    return rows


def format_table(rows: list[Row]) -> str:
    head = ("kind", "name", "plugin", "law", "result", "detail")
    cells = [head] + [(r.kind, r.name, r.plugin, r.law, r.status, r.detail) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = []
    for c in cells:
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(5)) + "  " + c[5])
    return "\n".join(lines)


def failures(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.status == FAIL]
