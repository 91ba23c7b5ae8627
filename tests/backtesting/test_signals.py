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
    # without current weights (every asset flat) and margin 0: the memoryless rule
    rule = registry.create("signal", "agree_voltarget", target_vol=target_vol, margin=0.0)
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
            "return@1": np.array([-0.06]),
            "direction@1": np.array([0.1]),
            "volatility@1": np.array([0.01]),
        },
        periods_per_year=252,
        **COST,
    )
    assert w[0] < 0  # the product r * (2p - 1) would have been positive (a long)


def test_threshold_default_is_round_trip_cost_times_one_plus_margin_and_configurable():
    preds = {
        "return@1": np.array([0.0479, 0.0481]),
        "direction@1": np.array([0.9, 0.9]),
        "volatility@1": np.array([0.01, 0.01]),
    }
    # default daily margin 15 at one decision a day (365.25 one-bar holding periods a
    # year): the edge must clear 16 round trips 2 * (0.001 + 0.0005)
    rule = registry.create("signal", "agree_voltarget")
    w = rule.weights(preds, periods_per_year=365.25, **COST)
    assert w[0] == 0 and w[1] > 0
    # at 252 decisions a year the margin is 15 * 252 / 365.25 = 10.35: 11.35 round trips
    low = {**preds, "return@1": np.array([0.0340, 0.0341])}
    w = rule.weights(low, periods_per_year=252, **COST)
    assert w[0] == 0 and w[1] > 0
    w = registry.create("signal", "agree_voltarget", margin=0.0).weights(
        {**preds, "return@1": np.array([0.0029, 0.0031])}, periods_per_year=252, **COST
    )
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
    rule = registry.create("signal", "agree_voltarget", target_vol=0.1, margin=1.0)
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
        "return@1": np.array([0.06, 0.06, 0.06]),  # clears agree_voltarget's entry (4.8%)
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


# -- the cost-aware default: entry margin, hysteresis, resize band ----------------------------


def hysteresis_reference(r, p, s, w0, *, entry, exit_, band, ppy=252.0, target=0.2, cap=0.5):
    """Plain-Python agree_voltarget with hysteresis, one asset at a time (before the clip)."""
    out = []
    for ri, pi, si, wi in zip(r, p, s, w0, strict=True):
        agree = ri != 0 and (ri > 0) == (pi > 0.5) and pi != 0.5
        signal = math.copysign(1, ri) if agree and abs(ri) > entry else 0.0
        size = min(cap, target / (si * math.sqrt(ppy)))
        held = 0.0 if abs(wi) <= 1e-9 else math.copysign(1, wi)
        if held == 0:
            out.append(signal * size)
        elif signal == -held:  # a strong opposite signal flips
            out.append(signal * size)
        elif ri != 0 and math.copysign(1, ri) == -held and abs(ri) > exit_:
            out.append(0.0)  # the return head turned against the position: close
        elif abs(abs(wi) - size) > band * size:
            out.append(held * size)
        else:
            out.append(wi)  # keep: no order
    return out


held_arrays = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-0.02, 0.02), min_size=n, max_size=n),
        st.lists(st.floats(0.01, 0.99), min_size=n, max_size=n),
        st.lists(st.floats(1e-3, 0.05), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.05, -0.05, 0.12, -0.2, 1e-12]), min_size=n, max_size=n),
    )
)


@given(held_arrays, st.floats(0, 3), st.floats(0, 0.004), st.floats(0, 0.5))
def test_hysteresis_matches_reference(data, margin, exit_, band):
    r, p, s, w0 = data
    rule = registry.create(
        "signal", "agree_voltarget", margin=margin, exit_threshold=exit_, resize_band=band
    )
    assert not rule.separable  # reads current weights: called bar by bar
    w = rule.raw_weights(
        {"return@1": np.array(r), "direction@1": np.array(p), "volatility@1": np.array(s)},
        periods_per_year=252.0,
        current_weights=np.array(w0),
        max_weight=0.5,
        max_gross_leverage=10.0,
        **COST,
    )
    entry = 0.003 * (1 + margin)
    expected = hysteresis_reference(r, p, s, w0, entry=entry, exit_=exit_, band=band)
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)


def test_noise_around_the_threshold_does_not_flip_a_position():
    """A return head wobbling inside the band (-exit, entry) never trades after the entry."""
    rule = registry.create("signal", "agree_voltarget", margin=1.0, exit_threshold=0.002)
    rng = np.random.default_rng(0)
    w, trades = np.zeros(1), 0
    wobble = np.concatenate([[0.01], rng.uniform(-0.0019, 0.0059, 300)])  # inside the band
    for x in wobble:
        new = rule.weights(
            {"return@1": np.array([x]), "direction@1": np.array([0.5 + np.sign(x) * 0.1])},
            periods_per_year=252.0,
            realised_vol=np.array([0.01]),
            current_weights=w,
            max_weight=0.5,
            **COST,
        )
        trades += int(not np.allclose(new, w))
        w = new
    assert trades == 1 and w[0] > 0  # the entry, then held through the noise
    memoryless = registry.create("signal", "agree_voltarget", margin=1.0, hysteresis=False)
    assert memoryless.separable
    flips = [
        memoryless.weights(
            {"return@1": np.array([x]), "direction@1": np.array([0.5 + np.sign(x) * 0.1])},
            periods_per_year=252.0,
            realised_vol=np.array([0.01]),
            current_weights=np.array([0.3]),
            max_weight=0.5,
            **COST,
        )[0]
        for x in wobble
    ]
    assert sum(f == 0 for f in flips) > 100  # without the band it drops out again and again


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("margin", -1),
        ("daily_margin", -1),
        ("exit_threshold", -0.1),
        ("resize_band", -0.5),
        ("hysteresis", "yes"),
    ],
)
def test_cost_aware_options_are_validated(option, value):
    with pytest.raises(PluginError, match=option):
        registry.create("signal", "agree_voltarget", **{option: value})


# -- the default margin: per calendar day of holding ------------------------------------

#: (bars a year, horizon) of hourly 24/7, hourly exchange, daily stock and weekly bars
BAR_SIZES = [(8760.0, 24), (8760.0, 1), (1638.0, 7), (252.0, 5), (252.0, 1), (52.0, 1)]


@given(st.sampled_from(BAR_SIZES), st.floats(0, 40), st.integers(1, 6))
def test_default_margin_depends_only_on_the_holding_period_in_days(bars, daily, k):
    """margin = daily_margin * P / (h * 365.25): the same holding period in calendar days
    (k times more bars a year, a k times longer horizon) gets the same margin, and the
    default equals the per-decision margin given explicitly."""
    ppy, h = bars
    rule = registry.create("signal", "agree_voltarget", daily_margin=daily)
    m = rule.decision_margin(ppy, h)
    assert m == pytest.approx(daily * ppy / (h * 365.25), rel=1e-12)
    assert rule.decision_margin(ppy * k, h * k) == pytest.approx(m, rel=1e-12)
    explicit = registry.create("signal", "agree_voltarget", margin=m)
    assert explicit.entry_threshold(**COST) == pytest.approx(
        rule.entry_threshold(**COST, periods_per_year=ppy, horizon=h), rel=1e-12
    )


def test_the_default_margins_of_the_demos():
    """15 per decision at hourly bars and h = 24 (one decision a day); about 2 at daily
    stock bars and h = 5 (a decision every 7.2 calendar days)."""
    rule = registry.create("signal", "agree_voltarget")
    assert rule.decision_margin(8760.0, 24) == pytest.approx(14.99, abs=0.01)
    assert rule.decision_margin(252.0, 5) == pytest.approx(2.07, abs=0.01)


def _preds(r, p, h):
    return {f"return@{h}": np.array(r), f"direction@{h}": np.array(p)}


@given(arrays, st.sampled_from(BAR_SIZES), st.floats(0, 20))
def test_no_trade_when_the_edge_is_below_the_entry_threshold(data, bars, daily):
    """From flat, an asset whose |r| does not clear the entry threshold gets weight 0 and
    one that clears it (heads agreeing) gets a position, whatever the bar size."""
    r, p, s = data
    ppy, h = bars
    rule = registry.create("signal", "agree_voltarget", daily_margin=daily)
    w = rule.raw_weights(
        _preds(r, p, h),
        periods_per_year=ppy,
        realised_vol=np.array(s),
        current_weights=np.zeros(len(r)),
        **COST,
    )
    entry = 0.003 * (1 + daily * ppy / (h * 365.25))
    for ri, pi, wi in zip(r, p, w, strict=True):
        agree = ri != 0 and np.sign(ri) == np.sign(2 * pi - 1)
        if abs(ri) <= entry or not agree:
            assert wi == 0
        else:
            assert np.sign(wi) == np.sign(ri)


def _path_turnover(rule, r, p, h, ppy):
    """Sum |weight change| of one asset decided bar by bar with the rule (constant vol)."""
    w, turnover = np.zeros(1), 0.0
    for ri, pi in zip(r, p, strict=True):
        new = rule.weights(
            _preds([ri], [pi], h),
            periods_per_year=ppy,
            realised_vol=np.array([0.1 / np.sqrt(ppy)]),  # size 0.2 / 0.1 = 2 -> capped at 1
            current_weights=w,
            **COST,
        )
        turnover += float(np.abs(new - w).sum())
        w = new
    return turnover


paths = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-0.06, 0.06), min_size=n, max_size=n),
        st.lists(st.floats(0.01, 0.99), min_size=n, max_size=n),
    )
)


@given(paths, st.sampled_from(BAR_SIZES), st.floats(0, 20), st.floats(0, 20))
def test_turnover_never_rises_with_the_margin(path, bars, a, b):
    """A stricter margin trades a subset of the decisions: on any path of predictions its
    turnover is at most the looser margin's (no resizing: constant vol)."""
    r, p = path
    ppy, h = bars
    lo, hi = sorted((a, b))
    loose = registry.create("signal", "agree_voltarget", daily_margin=lo)
    strict = registry.create("signal", "agree_voltarget", daily_margin=hi)
    assert _path_turnover(strict, r, p, h, ppy) <= _path_turnover(loose, r, p, h, ppy) + 1e-12


@given(
    st.lists(st.floats(-1, 1), min_size=1, max_size=60),
    st.lists(st.floats(0.01, 0.99), min_size=60, max_size=60),
    st.sampled_from(BAR_SIZES),
    st.sampled_from([1.0, -1.0]),
)
def test_noise_inside_the_band_never_changes_a_held_position(unit, p, bars, held):
    """Predictions strictly inside (-entry, entry) never flip, close or resize a held
    position at the target size, whatever the direction head says."""
    ppy, h = bars
    rule = registry.create("signal", "agree_voltarget")
    entry = rule.entry_threshold(**COST, periods_per_year=ppy, horizon=h)
    w0 = np.array([held])
    for u, pi in zip(unit, p, strict=False):
        w = rule.weights(
            _preds([u * entry * 0.999], [pi], h),
            periods_per_year=ppy,
            realised_vol=np.array([0.1 / np.sqrt(ppy)]),
            current_weights=w0,
            **COST,
        )
        assert w[0] == held


@given(held_arrays)
def test_per_asset_calendars_get_their_own_margin(data):
    """With periods_per_year per asset (mixed calendars) each asset's decision equals the
    one-asset call with its own calendar."""
    r, p, s, w0 = data
    ppy = np.array(
        [[8760.0, 252.0, 52.0][i % 3] for i in range(len(r))]
    )  # h = 24: margins 15, 0.43, 0.09
    rule = registry.create("signal", "agree_voltarget")
    kw = dict(max_weight=0.5, max_gross_leverage=10.0, **COST)
    both = rule.raw_weights(
        _preds(r, p, 24),
        periods_per_year=ppy,
        realised_vol=np.array(s),
        current_weights=np.array(w0),
        **kw,
    )
    for i in range(len(r)):
        one = rule.raw_weights(
            _preds([r[i]], [p[i]], 24),
            periods_per_year=float(ppy[i]),
            realised_vol=np.array([s[i]]),
            current_weights=np.array([w0[i]]),
            **kw,
        )
        assert both[i] == one[0]
