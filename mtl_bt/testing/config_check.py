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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import UserError
from mtl_bt.plugin_calls import PluginRaised
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


#: ``bars="auto"`` covers every bar when the config's data hold at most this many bars in
#: all (the bundled year of 5 hourly symbols, ~44k, takes about a minute: docs/plugins.md) ...
ALL_BARS = 50_000
#: ... else the last this many bars of each symbol
AUTO_BARS = 5_000


def covered_bars(frames: Mapping[str, pd.DataFrame], bars: int | str = "auto") -> int | None:
    """Bars of each symbol ``check`` covers: None (all) for ``"all"``, and for ``"auto"``
    when the data are small enough (``ALL_BARS``); else the last ``bars`` (or ``AUTO_BARS``)."""
    if bars == "all":
        return None
    if bars == "auto":
        return None if sum(len(f) for f in frames.values()) <= ALL_BARS else AUTO_BARS
    return int(bars)


class _Raised(Exception):
    """A plugin's own code raised while checking ``symbol`` (the finding, not a crash)."""

    def __init__(self, symbol: str, exc: Exception) -> None:
        super().__init__(symbol)
        self.detail = f"{symbol}: raised {type(exc).__name__}: {exc}".replace("\n", " ")


@contextmanager
def _on(symbol: str) -> Iterator[None]:
    """Plugin code runs here: its exception becomes ``_Raised`` (a UserError passes)."""
    try:
        yield
    except _Raised:
        raise
    except PluginRaised as exc:  # compute named the plugin: the finding is its exception
        raise _Raised(exc.where, exc.original) from exc.original
    except UserError:
        raise
    except Exception as exc:
        raise _Raised(symbol, exc) from exc


def check_config(
    config: Any,
    frames: Mapping[str, pd.DataFrame],
    *,
    bars: int | str = "auto",
    cuts: int = 5,
    parity_bars: int = 300,
) -> list[Row]:
    """One row per (item, law); FAIL rows name the column and the first bar. ``bars``: the
    last bars of each symbol to check, ``"all"``, or ``"auto"`` (``covered_bars``)."""
    from mtl_bt.features import FeatureSpec
    from mtl_bt.features.spec import plugin_name
    from mtl_bt.testing import cross
    from mtl_bt.training import build_components

    comp = build_components(config)
    keep = covered_bars(frames, bars)
    covered = {s: (f if keep is None else f.iloc[-keep:]) for s, f in frames.items()}
    rows: list[Row] = [_coverage_row(s, covered[s], frames[s]) for s in frames]
    params = comp.feature_spec.resolved_params()
    for name in params:
        plugin = _plugin("feature", plugin_name(name))
        if name in comp.feature_spec.reads():  # reads other frames: the laws across frames
            spec = FeatureSpec(names=[name], params={name: params[name]})
            longest = max((len(f) for f in covered.values()), default=0)
            try:
                rows.extend(
                    Row("feature", name, plugin, law, status, detail)
                    for law, status, detail in cross.config_rows(name, spec, covered, longest, cuts)
                )
            except Exception as exc:  # noqa: BLE001 - the plugin's own code failed: a finding
                detail = str(exc).replace("\n", " ")
                rows.append(
                    Row("feature", name, plugin, "runs", FAIL, f"{type(exc).__name__}: {detail}")
                )
            continue
        try:
            rows.extend(_feature_rows(name, params[name], plugin, covered, cuts))
        except _Raised as exc:  # the plugin's own code failed: that is the finding
            rows.append(Row("feature", name, plugin, "runs", FAIL, exc.detail))
    for task in comp.tasks:
        plugin = _plugin("task", task.kind)
        try:
            rows.append(_task_row(task, plugin, covered, cuts))
        except _Raised as exc:
            rows.append(Row("task", task.name, plugin, "runs", FAIL, exc.detail))
    rows.extend(_contract_rows(config, comp))
    rows.extend(_parity_rows(config, comp, frames, parity_bars))
    return rows


def _coverage_row(symbol: str, covered: pd.DataFrame, frame: pd.DataFrame) -> Row:
    span = f"{covered.index[0]} .. {covered.index[-1]}" if len(covered) else "no bars"
    if len(covered) == len(frame):
        return Row("data", symbol, "-", "bars covered", PASS, f"all {len(frame)} bars ({span})")
    return Row(
        "data",
        symbol,
        "-",
        "bars covered",
        NOTE,
        f"the last {len(covered)} of {len(frame)} bars ({span}); --bars all covers every bar",
    )


def _feature_rows(
    name: str,
    params: dict[str, Any],
    plugin: str,
    frames: Mapping[str, pd.DataFrame],
    cuts: int,
) -> list[Row]:
    """The state, look-ahead and warm-up rows of one feature over every symbol."""
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.base import declared_columns
    from mtl_bt.features.spec import feature_fn
    from mtl_bt.testing import state

    spec = FeatureSpec(names=[name], params={name: params})
    resolved = spec.resolved_params()[name]
    columns = declared_columns(name, feature_fn(name), resolved)

    def fn(f: pd.DataFrame) -> pd.DataFrame:
        return compute(f, spec)

    declared = spec.warmup()
    look: list[lookahead.Finding] = []
    stateful: list[lookahead.Finding] | None = []
    worst: dict[str, int | None] = {}
    slow: dict[str, int | None] = {}
    where = state_where = ""
    for symbol, frame in frames.items():
        with _on(symbol):
            points = lookahead.default_cuts(len(frame), declared, cuts)
            if stateful == []:  # fresh module copies: no cache can answer (testing/state.py)
                middle = points[len(points) // 2]
                stateful = state.state_findings(feature_fn(name), resolved, frame, middle, columns)
                state_where = symbol
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
    rows = []
    law = state.LAW
    if stateful is None:
        rows.append(
            Row("feature", name, plugin, law, SKIP, "defined in a function or __main__: not copied")
        )
    elif stateful:
        rows.append(Row("feature", name, plugin, law, FAIL, f"{state_where}: {stateful[0]}"))
    else:
        rows.append(Row("feature", name, plugin, law, PASS, "fresh copies, two call orders"))
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
    rows.append(_warmup_row(name, plugin, declared, worst, slow))
    return rows


def _warmup_row(
    name: str,
    plugin: str,
    declared: int,
    worst: dict[str, int | None],
    slow: dict[str, int | None],
) -> Row:
    never = [c for c, v in worst.items() if v is None]
    over = {c: v for c, v in worst.items() if v is not None and v > declared}
    measured = max((v for v in worst.values() if v is not None), default=0)
    if never:
        return Row(
            "feature",
            name,
            plugin,
            "warm-up",
            FAIL,
            f"column {never[0]!r} depends on where the history starts and never settles "
            "(cumulative or start-anchored)",
        )
    if over:
        column, value = max(over.items(), key=lambda kv: kv[1])
        return Row(
            "feature",
            name,
            plugin,
            "warm-up",
            FAIL,
            f"column {column!r} depends on the start of the history for {value} bars; "
            f"declared warm-up {declared}",
        )
    if slow:
        return Row(
            "feature",
            name,
            plugin,
            "warm-up",
            NOTE,
            f"declared {declared}, measured {measured}; a trace of the start "
            f"(> {lookahead.WARMUP_NOTE_TOL} std) remains for {slow} bars",
        )
    return Row(
        "feature", name, plugin, "warm-up", PASS, f"declared {declared}, measured {measured}"
    )


def _task_row(task: Any, plugin: str, frames: Mapping[str, pd.DataFrame], cuts: int) -> Row:
    def build(f: pd.DataFrame) -> pd.Series:
        return task.build_target(f).astype("float64")

    for symbol, frame in frames.items():
        with _on(symbol):
            points = lookahead.default_cuts(len(frame), task.lookback + task.horizon, cuts)
            found = lookahead.target_findings(build, frame, task.horizon, task.lookback, points)
        if found:
            return Row("task", task.name, plugin, "target window", FAIL, f"{symbol}: {found[0]}")
    return Row(
        "task",
        task.name,
        plugin,
        "target window",
        PASS,
        f"bars t-{task.lookback}..t+{task.horizon} only",
    )


def _parity_rows(
    config: Any, comp: Any, frames: Mapping[str, pd.DataFrame], bars: int
) -> list[Row]:
    """The config's short backtest preloaded vs streaming (``mtl_bt.testing.parity``)."""
    from mtl_bt.testing import parity

    try:
        outcomes = parity.check_parity(config, comp, frames, bars)
    except UserError:
        raise
    except Exception as exc:  # a plugin failed while the slice's model was built
        signal = str(config.backtest.signal)
        detail = f"raised {type(exc).__name__}: {exc}".replace("\n", " ")
        return [Row("backtest", signal, "-", "streaming = preloaded", FAIL, detail)]
    return [
        Row(o.kind, o.name, o.plugin, "streaming = preloaded", o.status, o.detail) for o in outcomes
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
        except UserError:
            raise
        except Exception as exc:  # the plugin's own code failed
            detail = f"raised {type(exc).__name__}: {exc}".replace("\n", " ")
            rows.append(Row(kind, name, plugin, "contract", FAIL, detail))
            continue
        laws = len(report.laws)
        rows.append(
            Row(kind, name, plugin, "contract", PASS, f"{laws} law{'s' if laws != 1 else ''}")
        )
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
