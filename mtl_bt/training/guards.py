"""Run-time look-ahead guard for plugins that are not mtl-bt's own.

Before training, every feature and task from a third-party plugin is checked on **every
symbol** of the run (``mtl_bt.testing.lookahead``, ``mtl_bt.testing.state``):

- a feature is computed on the symbol's whole history, then on truncated prefixes and
  with a perturbed future at ``GUARD_CUTS`` cut points spread over that history (each
  perturbed check keeps ``GUARD_SPAN`` bars after its cut, which bounds its cost); a
  changed past row stops the run naming the plugin, the symbol, the column and the bar.
  First it must pass the state law: called in fresh copies of its module in two orders
  (a prefix, then the whole history; and the reverse) it returns the same rows, so no
  cache can serve the later comparisons;
- a task's target is checked on ``GUARD_WINDOWS`` windows of ``GUARD_BARS`` bars spread
  over the symbol's history (start, middle, end).

Cost: about ``2 * GUARD_CUTS + 5`` computations of each third-party feature over each
symbol's history (the run itself computes it once), and ``GUARD_WINDOWS`` target checks
per task and symbol. Built-ins are proved by the test suite and skipped, so a config
without third-party plugins pays nothing. A plugin that raises stops the run with one
line naming it. ``--no-guards`` (or ``MTL_BT_NO_GUARDS=1``) skips the guard: unsafe, a
look-ahead then goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import PluginError, UserError
from mtl_bt.safety import guards_enabled

#: bars of each window a task's target is checked on
GUARD_BARS = 1500
#: windows per symbol for targets (spread over its whole history)
GUARD_WINDOWS = 3
#: cut points per feature check (spread over each symbol's whole history)
GUARD_CUTS = 3
#: bars after each cut that the perturbed-future check keeps (and perturbs)
GUARD_SPAN = 500

T = TypeVar("T")


def plugin_of(kind: str, name: str) -> str:
    """'plugin NAME (distribution)' of a registered item, for messages."""
    entry = registry.registry().entry(kind, name)
    return f"plugin {entry.plugin!r}" + (f" ({entry.distribution})" if entry.distribution else "")


def calling(what: str, where: str, call: Callable[[], T]) -> T:
    """``call()``; an exception from plugin code becomes one PluginError line naming ``what``
    (a UserError the plugin raised on purpose passes unchanged)."""
    try:
        return call()
    except UserError:
        raise
    except Exception as exc:
        detail = str(exc).replace("\n", " ")
        raise PluginError(
            f"{what} raised {type(exc).__name__} on {where}: {detail}. Fix the plugin "
            "(reproduce it with `mtl-bt check CONFIG`)"
        ) from exc


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
    for name in params:
        if registry.is_builtin("feature", name):
            continue
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
    from mtl_bt.testing import lookahead, state

    spec = FeatureSpec(names=[name], params={name: params})
    fn = registry.get("feature", name)
    what = f"feature {name!r} from {plugin_of('feature', name)}"
    where = f"{symbol} ({len(frame)} bars)"
    columns = declared_columns(name, fn, spec.resolved_params()[name])
    resolved = spec.resolved_params()[name]
    cuts = lookahead.default_cuts(len(frame), spec.warmup(), GUARD_CUTS)
    middle = cuts[len(cuts) // 2]
    found = calling(what, where, lambda: state.state_findings(fn, resolved, frame, middle, columns))
    if found:
        raise PluginError(
            f"{what} on {symbol}: {found[0]}. A feature must be "
            "a function of the frame it is given; drop the cache (or key it by the whole "
            "frame)"
        )

    def compute_one(f: pd.DataFrame) -> pd.DataFrame:
        return compute(f, spec)

    full = calling(what, where, lambda: compute_one(frame))
    found = calling(
        what,
        where,
        lambda: (
            lookahead.prefix_findings(compute_one, frame, cuts, full)
            or lookahead.future_findings(compute_one, frame, cuts, full, span=GUARD_SPAN)
        ),
    )
    if found:
        raise PluginError(
            f"{what} looks ahead on {symbol}: {found[0]}. A feature at bar t may use bars "
            "<= t only; fix the plugin (check it with `mtl-bt check CONFIG` or "
            "mtl_bt.testing.check_feature)"
        )


def _check_task(task: Any, symbol: str, frame: pd.DataFrame) -> None:
    from mtl_bt.testing import lookahead

    what = f"task {task.name!r} from {plugin_of('task', task.kind)}"

    def build(f: pd.DataFrame) -> pd.Series:
        return task.build_target(f).astype("float64")

    for window in windows(len(frame), GUARD_BARS, GUARD_WINDOWS):
        part = frame.iloc[window]
        cuts = lookahead.default_cuts(len(part), task.lookback + task.horizon, GUARD_CUTS)
        found = calling(
            what,
            f"{symbol} (bars {window.start}..{window.stop - 1})",
            lambda part=part, cuts=cuts: lookahead.target_findings(
                build, part, task.horizon, task.lookback, cuts
            ),
        )
        if found:
            raise PluginError(
                f"{what} on {symbol}: {found[0]}. Fix the plugin (check it with "
                "`mtl-bt check CONFIG` or mtl_bt.testing.check_task)"
            )
