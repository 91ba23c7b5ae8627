"""The kit (mtl_bt.testing) holds a plugin to what `mtl-bt check` and a run need: the state
law, streaming = preloaded (an EWM without a long enough window fails the kit as it fails
`check`), model.dropout honoured or refused."""

from __future__ import annotations

import pytest

from mtl_bt.testing import check_architecture, check_feature
from mtl_bt.testing.checks import ConformanceError


@pytest.mark.parametrize("name", ["cached_once", "cached_by_first_bar"])
def test_the_kit_refuses_a_cache(probes, name):
    with pytest.raises(ConformanceError, match="state between calls: .*keeps state"):
        check_feature(name)


def test_the_kit_streams_every_feature(probes):
    report = check_feature("hour_of_day")
    assert "streaming = preloaded (relative 1e-06)" in report.laws
    for name in probes.HONEST:
        check_feature(name)
    with pytest.raises(ConformanceError, match="streaming = preloaded: .*; warm-up: on its last"):
        check_feature("ewm_no_window")


def test_dropout_is_honoured_or_refused(probes):
    with pytest.raises(ConformanceError, match="ignores model.dropout"):
        check_architecture("ignores_dropout")
    report = check_architecture("refuses_dropout", dropout=0.0)
    assert "dropout > 0 refused when built" in report.laws
    assert "model.dropout honoured in training mode" in check_architecture("shared_bottom").laws
