"""The torchjd plugin pack: every aggregator and scalarizer passes check_weighting, and
the adapter's update is exactly torchjd's own aggregation of the same matrix."""

from __future__ import annotations

import pytest
import torch

from mtl_bt import registry
from mtl_bt.plugins.torchjd import AGGREGATORS, PREFIX, SCALARIZERS, example_options
from mtl_bt.testing import check_weighting

torchjd = pytest.importorskip("torchjd")  # CI installs it with the dev extras

NAMES = [PREFIX + n for n in (*AGGREGATORS, *SCALARIZERS)]


@pytest.fixture(autouse=True)
def with_the_pack(monkeypatch):
    """The suite loads the built-ins only; these tests add the pack (shipped with mtl-bt)."""
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "builtin,torchjd")
    registry.reset()
    yield
    registry.reset()


def test_the_pack_registers_the_issue_s_schemes_with_their_source():
    for name in ("upgrad", "nash_mtl", "imtl_g", "aligned_mtl", "gradvac", "dualproj", "config"):
        entry = registry.registry().entry("weighting", f"torchjd_{name}")
        assert entry.plugin == "torchjd"
        assert entry.source.startswith("torchjd 0.18.")
    for name in ("famo", "imtl_l", "geometric_mean", "stch"):
        assert f"torchjd_{name}" in registry.names("weighting")
    assert sorted(NAMES) == [n for n in registry.names("weighting") if n.startswith(PREFIX)]


@pytest.mark.parametrize("name", NAMES)
def test_every_torchjd_scheme_passes_check_weighting(name):
    check_weighting(name, **example_options(name, 3))


@pytest.mark.parametrize(
    "name", ["torchjd_upgrad", "torchjd_imtl_g", "torchjd_aligned_mtl", "torchjd_mgda"]
)
def test_adapter_update_equals_torchjd_aggregation(name):
    weighting = registry.create("weighting", name, ["a", "b", "c"])
    g = torch.randn(3, 40, generator=torch.Generator().manual_seed(0))
    ours = weighting.aggregate(g, [torch.tensor(1.0)] * 3)
    theirs = weighting.torchjd_class()(g)
    torch.testing.assert_close(ours, theirs)
    assert set(weighting.weights()) == {"a", "b", "c"}


def test_unknown_option_and_missing_required_option_are_config_errors():
    from mtl_bt.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        registry.create("weighting", "torchjd_upgrad", ["a", "b"], colour=1)
    with pytest.raises(ConfigError, match=r"needs option\(s\) \['mu'\]"):
        registry.create("weighting", "torchjd_stch", ["a", "b"])


def test_the_pack_is_listed_by_mtl_bt_plugins_with_its_source():
    from click.testing import CliRunner

    from mtl_bt.cli import main

    out = CliRunner().invoke(main, ["plugins"]).output
    assert "torchjd_upgrad" in out and "torchjd 0.18.0: torchjd.aggregation.UPGrad" in out


def test_scalarizer_effective_weights_are_the_loss_gradients():
    weighting = registry.create("weighting", "torchjd_geometric_mean", ["a", "b"])
    losses = {
        "a": torch.tensor(1.0, requires_grad=True),
        "b": torch.tensor(4.0, requires_grad=True),
    }
    weighting.combine(losses)
    w = weighting.weights()
    # geometric mean sqrt(a*b): d/da = sqrt(b/a)/2 = 1, d/db = sqrt(a/b)/2 = 0.25
    assert w["a"] == pytest.approx(1.0) and w["b"] == pytest.approx(0.25)


def test_without_torchjd_the_pack_registers_nothing_and_warns_nothing(monkeypatch, recwarn):
    import mtl_bt.plugins.torchjd as pack
    from mtl_bt.registry import PluginWarning

    monkeypatch.setattr(pack, "available", lambda: False)
    registry.reset()
    assert not [n for n in registry.names("weighting") if n.startswith(PREFIX)]
    assert "equal" in registry.names("weighting")
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]


def test_the_pack_registers_without_importing_torchjd():
    """torchjd (and its cvxpy / scipy.stats) is imported when a torchjd scheme is built, not
    when the registry loads: every command and compare worker would pay seconds for it."""
    import subprocess
    import sys

    code = (
        "import sys; from mtl_bt import registry; "
        "names = registry.names('weighting'); "
        "assert 'torchjd_upgrad' in names, names; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torchjd', 'cvxpy')]; "
        "w = registry.create('weighting', 'torchjd_upgrad', ['a', 'b']); "
        "assert 'torchjd' in sys.modules and w.torchjd_class.__name__ == 'UPGrad'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_tested_release_has_every_named_class():
    from mtl_bt.plugins.torchjd import TESTED_VERSION, _classes

    aggregators, scalarizers = _classes(TESTED_VERSION + ".dev-not-it")  # imports torchjd
    assert (aggregators, scalarizers) == (AGGREGATORS, SCALARIZERS)
