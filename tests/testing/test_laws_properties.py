"""Property tests of the laws themselves: the clipping function, and the look-ahead
analysis (a peek of any size is found at its first bar; a trailing window never is)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_bt.signals.clip import clip_weights, violations
from mtl_bt.testing import garch_bars, lookahead

FRAME = garch_bars(300, seed=11, freq="1h")

weights = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=12
)


@given(
    weights,
    st.floats(0.01, 2.0),
    st.floats(0.01, 5.0),
    st.booleans(),
)
def test_clipped_weights_are_always_within_every_limit(w, max_weight, gross, short):
    out = clip_weights(np.array(w), max_weight, gross, short)
    assert out.shape == (len(w),)
    assert not violations(out, max_weight, gross, short)
    # idempotent (up to the rounding of one rescale)
    np.testing.assert_allclose(clip_weights(out, max_weight, gross, short), out, rtol=1e-12)


@given(st.lists(st.floats(-0.1, 0.1), min_size=1, max_size=8), st.booleans())
def test_weights_within_the_limits_are_left_alone(w, short):
    arr = np.array(w) if short else np.abs(w)
    np.testing.assert_array_equal(clip_weights(arr, 0.1, 1.0, short), arr)


def _peek(k: int, window: int):
    def compute(frame: pd.DataFrame) -> pd.DataFrame:
        x = np.log(frame["close"]).rolling(window).mean().shift(-k)
        return pd.DataFrame({"peek": x}, index=frame.index)

    return compute


def _trailing(window: int):
    def compute(frame: pd.DataFrame) -> pd.DataFrame:
        x = np.log(frame["close"] / frame["close"].rolling(window).mean())
        return pd.DataFrame({"ok": x}, index=frame.index)

    return compute


@given(st.integers(1, 6), st.integers(1, 20))
def test_a_peek_of_any_size_is_found(k, window):
    cuts = lookahead.default_cuts(len(FRAME), window)
    found = lookahead.prefix_findings(_peek(k, window), FRAME, cuts)
    assert found and found[0].column == "peek"
    # the first changed bar of the first cut is where the peek crosses it
    assert found[0].row == max(0, cuts[0] - k)


@given(st.integers(1, 40))
def test_a_trailing_window_is_never_flagged_and_its_warmup_is_measured(window):
    fn = _trailing(window)
    cuts = lookahead.default_cuts(len(FRAME), window)
    assert not lookahead.prefix_findings(fn, FRAME, cuts)
    assert not lookahead.future_findings(fn, FRAME, cuts)
    starts = lookahead.default_starts(len(FRAME), window - 1)
    assert lookahead.measured_warmup(fn, FRAME, starts)["ok"] == window - 1


@given(
    weights,
    st.floats(0.01, 2.0),
    st.floats(0.01, 5.0),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_clip_each_before_the_run_then_the_gross_cap_per_bar_equals_clip_weights(
    w, max_weight, gross, short, rnd
):
    """Precomputed mode clips every bar elementwise before the run (as Python floats) and
    scales each bar's subset to the gross cap: bit for bit ``clip_weights`` of the subset."""
    from mtl_bt.signals.clip import clip_each, scale_to_gross

    raw = np.array(w)
    each = clip_each(raw, max_weight, short).tolist()
    subset = sorted(rnd.sample(range(len(w)), rnd.randint(1, len(w))))
    got = scale_to_gross(np.array([each[i] for i in subset]), gross)
    np.testing.assert_array_equal(got, clip_weights(raw[subset], max_weight, gross, short))


@given(
    st.lists(st.floats(-3.0, 3.0, width=64), min_size=1, max_size=12),
    st.floats(0.0, 5.0),
    st.floats(0.0, 2.0),
)
def test_the_per_bar_float_paths_equal_the_numpy_ones(w, cap, other):
    """The strategy's per-bar gross cap and rebalancer cap on Python floats equal the numpy
    versions bit for bit (one value in Python, more through numpy)."""
    from mtl_bt.backtesting.rebalancer import Rebalancer
    from mtl_bt.signals.clip import gross_of, scale_floats_to_gross, scale_to_gross

    arr = np.array(w)
    assert gross_of(w) == float(np.abs(arr).sum())
    assert scale_floats_to_gross(list(w), cap) == scale_to_gross(arr, cap).tolist()
    reb = Rebalancer(max_gross_leverage=cap)
    assert reb.cap_floats(list(w), other) == reb.cap(arr, other).tolist()


_few = st.lists(
    st.one_of(
        st.floats(-2.0, 2.0),
        st.sampled_from([0.0, -0.0, 0.5, -0.5, 0.25, 1.0, np.nan, np.inf, -np.inf, 1e-10]),
    ),
    min_size=1,
    max_size=8,
)
_limits = st.tuples(
    st.sampled_from([1.0, 0.5, 0.25, 0.3]), st.sampled_from([1.0, 2.0, 0.5]), st.booleans()
)


@settings(max_examples=300, deadline=None)
@given(_few, _limits)
def test_small_batch_checks_and_clips_in_floats_as_numpy_does(w, limits):
    """A decision's few weights are checked (``violations``) and clipped (``clip_each``,
    ``RuleCaller.precomputed``) in Python floats: the same limit names and the same bits as
    the numpy path, signed zeros and non-finite weights included; a gross within rounding
    of the cap (here: weights that sum to it) decides as numpy's sum does."""
    from mtl_bt.signals import clip
    from mtl_bt.signals.context import RuleCaller

    mw, cap, short = limits
    arr = np.array(w, dtype=np.float64)
    assert clip.violations(arr, mw, cap, short) == clip._violations_numpy(arr, mw, cap, short)
    for gross in (cap, cap + clip.EPS, np.nextafter(cap + clip.EPS, 9.0)):
        even = np.full(len(w), gross / len(w))
        want = clip._violations_numpy(even, 1.0, cap, short)
        assert clip.violations(even, 1.0, cap, short) == want
    each = np.array(clip.clip_each_floats(list(w), mw, short), dtype=np.float64)
    assert each.tobytes() == clip.clip_each(arr, mw, short).tobytes()
    got = RuleCaller(object(), "x").precomputed(
        arr, max_weight=mw, max_gross_leverage=cap, allow_short=short
    )
    want = clip.clip_weights(arr, mw, cap, short)
    assert np.array(got, dtype=np.float64).tobytes() == want.tobytes()


def test_small_batch_gross_at_the_cap_is_numpys_sum():
    """Eight weights whose Python sum and numpy's (pairwise) sum differ by an ulp, with the
    cap between them: the float path's gross check decides as numpy's does."""
    from mtl_bt.signals import clip

    rng = np.random.default_rng(0)
    found = 0
    for _ in range(20_000):
        w = rng.uniform(0.0, 0.3, 8)
        py, npy = sum(w.tolist()), float(np.abs(w).sum())
        if py == npy:
            continue
        for mgl in (min(py, npy) - clip.EPS, np.nextafter(min(py, npy), 0.0) - clip.EPS):
            cap = mgl + clip.EPS
            if (py > cap) != (npy > cap):
                found += 1
                want = clip._violations_numpy(w, 1.0, mgl, True)
                assert clip.violations(w, 1.0, mgl, True) == want
        if found >= 20:
            break
    assert found >= 20
