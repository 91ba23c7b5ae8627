"""Run-time look-ahead guard for plugins that are not mtl-bt's own.

Before training, every feature and task from a third-party plugin is checked on **every
symbol** of the run, on ``GUARD_WINDOWS`` windows of ``GUARD_BARS`` bars spread over the
symbol's whole history (its start, middle and end; the whole history when shorter):

- a feature must first pass the state law (``mtl_bt.testing.state``): called in fresh
  copies of its module in two orders (a prefix then the whole window, and the reverse)
  it returns the same rows, so no cache can answer the comparisons that follow; then, on
  each window, truncated prefixes and a perturbed future at ``GUARD_CUTS`` cut points
  (``mtl_bt.testing.lookahead``; the perturbed check keeps ``GUARD_SPAN`` bars after its
  cut) must leave every earlier row unchanged;
- a task's target must use bars t-lookback..t+h only, and really look h bars ahead.

A finding stops the run with one line naming the plugin, the symbol, the column and the
bar; so does a plugin that raises. The cost is bounded by the windows, not by the length
of the history (``mtl-bt check`` covers the whole data). Built-ins are proved by the test
suite and skipped, so a config without third-party plugins pays nothing. ``--no-guards``
(or ``MTL_BT_NO_GUARDS=1``) skips the guard: unsafe, a look-ahead then goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import PluginError
from mtl_bt.plugin_calls import calling, feature_named, plugin_of
from mtl_bt.safety import guards_enabled

#: bars of each window a feature or target is checked on
GUARD_BARS = 1500
#: windows per symbol (spread over its whole history: start, middle, end)
GUARD_WINDOWS = 3
#: cut points per feature check (spread over each symbol's whole history)
GUARD_CUTS = 3
#: bars after each cut that the perturbed-future check keeps (and perturbs)
GUARD_SPAN = 500


def windows(n: int, size: int, count: int) -> list[slice]:
    """``count`` windows of ``size`` rows spread evenly over ``n`` rows (first and last
    included); one window of all rows when ``n <= size``."""
    if n <= size:
        return [slice(0, n)]
    if count <= 1:
        return [slice(n - size, n)]
    starts = sorted({round(k * (n - size) / (count - 1)) for k in range(count)})
    return [slice(s, s + size) for s in starts]


def check_causal(feature_spec: Any, tasks: list[Any], frames: Mapping[str, pd.DataFrame]) -> int:
    """State, prefix and perturbed-future checks of every non-built-in feature and task on
    every symbol. Returns how many items were checked; raises ``PluginError`` on the first
    finding."""
    if not guards_enabled() or not frames:
        return 0
    checked = 0
    params = feature_spec.resolved_params()
    from mtl_bt.features.spec import plugin_name

    for name in params:
        if registry.is_builtin("feature", plugin_name(name)):
            continue
        if name in feature_spec.reads():  # reads other frames: the laws across frames
            _check_cross_feature(name, params[name], frames)
        else:
            for symbol, frame in frames.items():
                _check_feature(name, params[name], symbol, frame)
        checked += 1
    for task in tasks:
        if registry.is_builtin("task", task.kind):
            continue
        for symbol, frame in frames.items():
            _check_task(task, symbol, frame)
        checked += 1
    return checked


def _check_feature(name: str, params: dict[str, Any], symbol: str, frame: pd.DataFrame) -> None:
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.base import declared_columns
    from mtl_bt.features.spec import feature_fn
    from mtl_bt.testing import lookahead, state

    spec = FeatureSpec(names=[name], params={name: params})
    resolved = spec.resolved_params()[name]
    fn = feature_fn(name)
    columns = declared_columns(name, fn, resolved)
    what = feature_named(name)

    def compute_one(f: pd.DataFrame) -> pd.DataFrame:
        return compute(f, spec)

    for i, window in enumerate(windows(len(frame), GUARD_BARS, GUARD_WINDOWS)):
        part = frame.iloc[window]
        where = f"{symbol} (bars {window.start}..{window.stop - 1})"
        cuts = lookahead.default_cuts(len(part), spec.warmup(), GUARD_CUTS)
        if i == 0:  # first: a cache would answer every later comparison
            middle = cuts[len(cuts) // 2]
            found = calling(
                what,
                where,
                lambda part=part, middle=middle: state.state_findings(
                    fn, resolved, part, middle, columns
                ),
            )
            if found:
                raise PluginError(
                    f"{what} on {where}: {_shifted(found[0], window.start)}. A feature must be "
                    "a function of the frame it is given; drop the cache (or key it by the "
                    "whole frame)"
                )
        full = calling(what, where, lambda part=part: compute_one(part))
        found = calling(
            what,
            where,
            lambda part=part, full=full, cuts=cuts: (
                lookahead.prefix_findings(compute_one, part, cuts, full)
                or lookahead.future_findings(compute_one, part, cuts, full, span=GUARD_SPAN)
            ),
        )
        if found:
            raise PluginError(
                f"{what} looks ahead on {where}: {_shifted(found[0], window.start)}. A feature "
                "at bar t may use bars <= t only; fix the plugin (check it with `mtl-bt check "
                "CONFIG` or mtl_bt.testing.check_feature)"
            )


def _check_cross_feature(
    name: str, params: dict[str, Any], frames: Mapping[str, pd.DataFrame]
) -> None:
    """A feature that reads other frames, each symbol as the target on its last
    ``GUARD_BARS`` bars, the other frames over the same time span: every frame cut after a
    cut point, each frame's future perturbed (``mtl_bt.testing.cross``)."""
    from mtl_bt.features import FeatureSpec
    from mtl_bt.testing import lookahead
    from mtl_bt.testing.cross import cross_findings, named

    spec = FeatureSpec(names=[name], params={name: params})
    what = feature_named(name)
    frames = named(frames)
    for symbol, frame in frames.items():
        part = frame.iloc[-GUARD_BARS:]
        if not len(part):
            continue
        start, end = part.index[0], part.index[-1]
        run = {s: f[(f.index >= start) & (f.index <= end)] for s, f in frames.items()}
        cuts = lookahead.default_cuts(len(part), 0, GUARD_CUTS)
        found = calling(
            what,
            symbol,
            lambda run=run, symbol=symbol, cuts=cuts: cross_findings(spec, run, symbol, cuts),
        )
        if found:
            raise PluginError(
                f"{what} looks ahead on {symbol}: {found[0]}. A feature at bar t may use bars "
                "<= t only; fix the plugin (check it with `mtl-bt check CONFIG` or "
                "mtl_bt.testing.check_cross_feature)"
            )


def _shifted(finding: Any, start: int) -> Any:
    """A window's finding with its bar counted from the start of the symbol's history."""
    import dataclasses

    return dataclasses.replace(finding, row=finding.row + start)


def _check_task(task: Any, symbol: str, frame: pd.DataFrame) -> None:
    from mtl_bt.testing import lookahead

    what = f"task {task.name!r} from {plugin_of('task', task.kind)}"

    def build(f: pd.DataFrame) -> pd.Series:
        return task.build_target(f).astype("float64")

    for window in windows(len(frame), GUARD_BARS, GUARD_WINDOWS):
        part = frame.iloc[window]
        cuts = lookahead.default_cuts(len(part), task.lookback + task.horizon, GUARD_CUTS)
        where = f"{symbol} (bars {window.start}..{window.stop - 1})"
        found = calling(
            what,
            where,
            lambda part=part, cuts=cuts: lookahead.target_findings(
                build, part, task.horizon, task.lookback, cuts
            ),
        )
        if found:
            raise PluginError(
                f"{what} on {where}: {_shifted(found[0], window.start)}. Fix the plugin "
                "(check it with "
                "`mtl-bt check CONFIG` or mtl_bt.testing.check_task)"
            )
