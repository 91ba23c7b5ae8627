"""The state law (mtl_bt.testing.state) as a property: on any frame and any cut, a pure
feature passes and a cache filled by the first call fails; fresh copies leave the
registered module untouched."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_bt import registry
from mtl_bt.testing import garch_bars
from mtl_bt.testing.state import fresh_copy, state_findings


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # it only registers
@given(n=st.integers(40, 300), at=st.floats(0.05, 0.95), seed=st.integers(0, 5))
def test_pure_features_pass_and_first_call_caches_fail(probes, n, at, seed):
    frame = garch_bars(n, seed=seed, freq="1h", symbol="S")
    cut = max(2, min(n - 1, int(n * at)))
    for name in ("hour_of_day", "log_return", "std_200"):
        fn = registry.get("feature", name)
        assert state_findings(fn, {}, frame, cut, ["a", "b"]) == [], name
    for name in ("cached_once", "cached_by_first_bar"):
        fn = registry.get("feature", name)
        found = state_findings(fn, {}, frame, cut, [name])
        assert found and found[0].law == "state between calls", name
        assert "keeps state between calls" in found[0].detail
    # every call went to fresh copies: the registered module's caches are still empty
    assert not probes._ONCE and not probes._BY_FIRST_BAR


def test_a_feature_that_cannot_be_copied_is_not_checked():
    def local(frame):
        return frame[["close"]]

    assert fresh_copy(local) is None
    assert state_findings(local, {}, garch_bars(50), 20, ["close"]) is None
