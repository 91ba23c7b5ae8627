"""The target-horizon law accepts every target that looks exactly h bars ahead, scale-free
ones included (log(high/low) of the next bar at h=1), and refuses one that declares h=1
but reads bar t+5 (a return, or a scale-free range)."""

from __future__ import annotations

import pytest

from mtl_bt.errors import PluginError
from mtl_bt.testing import check_task, garch_bars
from mtl_bt.testing.checks import ConformanceError
from mtl_bt.training import guards


@pytest.mark.parametrize("horizon", [1, 2, 4])
def test_a_scale_free_target_passes_at_every_horizon(probes, horizon):
    check_task("log_range", horizon=horizon)


@pytest.mark.parametrize("name", ["uses_five", "range_five"])
def test_a_target_reading_bar_t_plus_5_at_h1_is_refused(probes, name):
    with pytest.raises(ConformanceError, match="target uses bars beyond t\\+h"):
        check_task(name, horizon=1)


def test_the_run_guard_agrees(probes):
    from mtl_bt.features import FeatureSpec
    from mtl_bt.tasks import build_tasks

    frames = {"S": garch_bars(700, seed=5, freq="1h")}
    spec = FeatureSpec(names=["log_return"])
    good = build_tasks([{"name": "log_range", "horizons": [1]}])
    assert guards.check_causal(spec, good, frames) == 1
    for name in ("uses_five", "range_five"):
        bad = build_tasks([{"name": name, "horizons": [1]}])
        with pytest.raises(PluginError, match=f"task '{name}@1'.*beyond t\\+h"):
            guards.check_causal(spec, bad, frames)
