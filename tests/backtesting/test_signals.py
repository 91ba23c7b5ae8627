"""Signal rules: formula vs an independent per-asset computation, sign safety, caps, fallbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtl_bt import registry
from mtl_bt.errors import PluginError

COST = dict(commission=0.001, slippage=0.0005)


def reference(r, p, s, ppy, target_vol, cap, lev, threshold, allow_short=True):
    """Plain-Python agree_voltarget, one asset at a time."""
    out = []
    for ri, pi, si in zip(r, p, s, strict=True):
        agree = ri != 0 and math.copysign(1, ri) == math.copysign(1, 2 * pi - 1) and pi != 0.5
        if not agree or abs(ri) <= threshold:
            out.append(0.0)
            continue
        w = math.copysign(min(cap, target_vol / (si * math.sqrt(ppy))), ri)
        out.append(w if (allow_short or w > 0) else 0.0)
    gross = sum(abs(w) for w in out)
    return [w * lev / gross for w in out] if gross > lev else out


arrays = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n),
        st.lists(st.floats(0.01, 0.99), min_size=n, max_size=n),
        st.lists(st.floats(1e-4, 0.1), min_size=n, max_size=n),
    )
)


@given(arrays, st.sampled_from([252.0, 365.0, 8760.0]), st.floats(0.05, 0.5), st.booleans())
def test_agree_voltarget_matches_reference(data, ppy, target_vol, allow_short):
    r, p, s = data
    rule = registry.create("signal", "agree_voltarget", target_vol=target_vol)
    w = rule.weights(
        {"return@1": np.array(r), "direction@1": np.array(p), "volatility@1": np.array(s)},
        periods_per_year=ppy,
        max_weight=0.5,
        max_gross_leverage=1.0,
        allow_short=allow_short,
        **COST,
    )
    expected = reference(r, p, s, ppy, target_vol, 0.5, 1.0, 0.003, allow_short)
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(w) <= 0.5 + 1e-12) and np.abs(w).sum() <= 1.0 + 1e-12
    # sign safety: never long unless both heads are bullish, never short unless both bearish
    r, p = np.array(r), np.array(p)
    assert not np.any((w > 0) & ((r <= 0) | (p <= 0.5)))
    assert not np.any((w < 0) & ((r >= 0) | (p >= 0.5)))


def test_both_heads_bearish_is_never_long():
    rule = registry.create("signal", "agree_voltarget")
    w = rule.weights(
        {
            "return@1": np.array([-0.02]),
            "direction@1": np.array([0.1]),
            "volatility@1": np.array([0.01]),
        },
        periods_per_year=252,
        **COST,
    )
    assert w[0] < 0  # the product r * (2p - 1) would have been positive (a long)


def test_threshold_default_is_round_trip_cost_and_configurable():
    preds = {
        "return@1": np.array([0.0029, 0.0031]),
        "direction@1": np.array([0.9, 0.9]),
        "volatility@1": np.array([0.01, 0.01]),
    }
    w = registry.create("signal", "agree_voltarget").weights(preds, periods_per_year=252, **COST)
    assert w[0] == 0 and w[1] > 0
    w = registry.create("signal", "agree_voltarget", threshold=0.0).weights(
        preds, periods_per_year=252, **COST
    )
    assert (w > 0).all()


def test_horizon_option_picks_heads_and_missing_heads_fall_back():
    rule = registry.create("signal", "agree_voltarget", horizon=3)
    heads = rule.heads(["return@1", "return@3", "direction@1", "volatility@3"])
    assert heads == {"return": "return@3", "direction": None, "volatility": "volatility@3"}
    assert (
        registry.create("signal", "agree_voltarget").heads(["return@5", "return@2"])["return"]
        == "return@2"
    )
    with pytest.raises(PluginError, match="return@4"):
        registry.create("signal", "agree_voltarget", horizon=4).heads(["return@1"])
    with pytest.raises(PluginError, match="needs a return head"):
        registry.create("signal", "agree_voltarget").heads(["direction@1"])
    # return-only model: sign of r, sized by realised vol, else equal weight
    rule = registry.create("signal", "agree_voltarget", target_vol=0.1)
    preds = {"return@1": np.array([0.01, -0.01, 0.01])}
    rv = np.array([0.02, 0.02, np.nan])
    w = rule.weights(
        preds,
        periods_per_year=252,
        realised_vol=rv,
        n_assets=3,
        max_weight=0.5,
        max_gross_leverage=1.0,
        **COST,
    )
    size = 0.1 / (0.02 * math.sqrt(252))
    np.testing.assert_allclose(w, [size, -size, 1 / 3])


def test_sign_rule_and_registry():
    assert {"agree_voltarget", "sign"} <= set(registry.names("signal"))
    rule = registry.create("signal", "sign")
    w = rule.weights(
        {"return@1": np.array([0.01, -0.01, 0.001, np.nan])},
        n_assets=4,
        max_weight=0.5,
        max_gross_leverage=1.0,
        allow_short=False,
        **COST,
    )
    np.testing.assert_allclose(w, [0.25, 0.0, 0.0, 0.0])
    with pytest.raises(PluginError, match="target_vol"):
        registry.create("signal", "agree_voltarget", target_vol=0)


# -- the volatility input of vol_managed / agree_voltarget -----------------------------------
LIMITS = dict(max_weight=0.5, max_gross_leverage=1.0, allow_short=True, n_assets=3)


@pytest.mark.parametrize("signal", ["vol_managed", "agree_voltarget"])
def test_volatility_input_picks_the_sizing_vol(signal):
    """head (default) / trailing / ewma size with the head, realised_vol, ewma_vol; an EWMA
    in its warm-up (NaN) falls back to the trailing vol, then to equal weight."""
    preds = {
        "return@1": np.array([0.01, 0.01, 0.01]),
        "direction@1": np.array([0.9, 0.9, 0.9]),
        "volatility@1": np.array([0.01, 0.01, 0.01]),
    }
    ctx = dict(
        periods_per_year=252.0,
        realised_vol=np.array([0.02, 0.02, np.nan]),
        ewma_vol=np.array([0.03, np.nan, np.nan]),
        **LIMITS,
        **COST,
    )

    def size(s):
        return min(0.5, 0.02 / (s * math.sqrt(252)))

    def weights(**options):
        return registry.create("signal", signal, target_vol=0.02, **options).weights(preds, **ctx)

    np.testing.assert_allclose(weights(), [size(0.01)] * 3)
    assert weights().tolist() == weights(volatility_input="head").tolist()
    np.testing.assert_allclose(weights(volatility_input="trailing"), [size(0.02)] * 2 + [1 / 3])
    assert weights(use_volatility=False).tolist() == weights(volatility_input="trailing").tolist()
    np.testing.assert_allclose(weights(volatility_input="ewma"), [size(0.03), size(0.02), 1 / 3])
    # the EWMA input reads no volatility head, so use_volatility does not change it
    assert weights(volatility_input="ewma", use_volatility=False).tolist() == (
        weights(volatility_input="ewma").tolist()
    )
    rule = registry.create("signal", signal, volatility_input="ewma")
    assert rule.context_inputs == ("ewma_vol",)
    assert rule.heads(list(preds))["volatility"] is None  # no head gates its decisions
    assert registry.create("signal", signal).context_inputs == ()
    from mtl_bt.testing import check_signal

    check_signal(signal, volatility_input="ewma")  # the kit passes ewma_vol when asked


@pytest.mark.parametrize("signal", ["vol_managed", "agree_voltarget"])
def test_unknown_volatility_input_is_a_one_line_error_naming_the_values(signal):
    with pytest.raises(PluginError) as err:
        registry.create("signal", signal, volatility_input="garch")
    msg = str(err.value)
    assert "\n" not in msg and "volatility_input" in msg and "'garch'" in msg
    assert "'head', 'trailing', 'ewma'" in msg


def test_unknown_volatility_input_stops_the_cli_before_any_work(tmp_path):
    """`mtl-bt run` checks the signal options before loading data: exit 2, one line."""
    from pathlib import Path

    from click.testing import CliRunner

    from mtl_bt.cli import main

    tiny = Path(__file__).parents[1] / "e2e" / "tiny.toml"
    out = tmp_path / "o"
    args = ["--set", "backtest.signal=vol_managed"]
    args += ["--set", "backtest.signal_options.volatility_input=garch"]
    res = CliRunner().invoke(main, ["run", str(tiny), "--out", str(out), "--quiet", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line]
    assert len(lines) == 1 and "volatility_input" in lines[0] and "'ewma'" in lines[0]
    assert not out.exists()
