"""Run-time look-ahead guard for plugins that are not mtl-bt's own.

Before training, every feature and task from a third-party plugin is recomputed on
truncated histories and on a perturbed future at a few cut points of the first
symbol's bars (``mtl_bt.testing.lookahead``); a changed past row stops the run with
an error naming the plugin, the column and the first bar. Built-ins are proved by the
test suite and skipped, so a default config pays nothing. ``--no-guards`` (or
``MTL_BT_NO_GUARDS=1``) skips the guard: unsafe, a look-ahead then goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mtl_bt import registry
from mtl_bt.errors import PluginError
from mtl_bt.safety import guards_enabled

#: bars of the first symbol the guard recomputes on (enough for several warm-ups)
GUARD_BARS = 1500
#: cut points per check
GUARD_CUTS = 3


def _plugin_of(kind: str, name: str) -> str:
    entry = registry.registry().entry(kind, name)
    return f"plugin {entry.plugin!r}" + (f" ({entry.distribution})" if entry.distribution else "")


def check_causal(feature_spec: Any, tasks: list[Any], frames: Mapping[str, pd.DataFrame]) -> int:
    """Prefix + perturbed-future check of every non-built-in feature and task.

    Returns how many items were checked; raises ``PluginError`` on the first finding.
    """
    from mtl_bt.features import FeatureSpec, compute
    from mtl_bt.features.spec import plugin_name
    from mtl_bt.testing import lookahead
    from mtl_bt.testing.cross import cross_findings

    if not guards_enabled() or not frames:
        return 0
    symbol, frame = next(iter(frames.items()))
    frame = frame.iloc[:GUARD_BARS]
    checked = 0
    params = feature_spec.resolved_params()
    for name in params:
        plugin = plugin_name(name)
        if registry.is_builtin("feature", plugin):
            continue
        spec = FeatureSpec(names=[name], params={name: params[name]})
        cuts = lookahead.default_cuts(len(frame), spec.warmup(), GUARD_CUTS)
        if spec.reads():  # reads other frames: every frame cut, each frame's future perturbed
            end = frame.index[-1]
            run = {s: f[f.index <= end].iloc[-GUARD_BARS:] for s, f in frames.items()}
            run[symbol] = frame
            found = cross_findings(spec, run, symbol, cuts)
        else:
            fn = lambda f, spec=spec: compute(f, spec)  # noqa: E731
            full = fn(frame)
            found = lookahead.prefix_findings(fn, frame, cuts, full) or lookahead.future_findings(
                fn, frame, cuts, full
            )
        if found:
            raise PluginError(
                f"feature {name!r} from {_plugin_of('feature', plugin)} looks ahead on {symbol}: "
                f"{found[0]}. A feature at bar t may use bars <= t only; fix the plugin "
                "(check it with `mtl-bt check CONFIG` or mtl_bt.testing.check_feature)"
            )
        checked += 1
    for task in tasks:
        if registry.is_builtin("task", task.kind):
            continue

        def build(f: pd.DataFrame, task: Any = task) -> pd.Series:
            return task.build_target(f).astype("float64")

        cuts = lookahead.default_cuts(len(frame), task.lookback + task.horizon, GUARD_CUTS)
        found = lookahead.target_findings(build, frame, task.horizon, task.lookback, cuts)
        if found:
            raise PluginError(
                f"task {task.name!r} from {_plugin_of('task', task.kind)} on {symbol}: "
                f"{found[0]}. Fix the plugin (check it with `mtl-bt check CONFIG` or "
                "mtl_bt.testing.check_task)"
            )
        checked += 1
    return checked
