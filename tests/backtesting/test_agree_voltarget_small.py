"""agree_voltarget's scalar path for small batches equals its numpy path bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_bt.plugins.signals import agree_voltarget as av
from mtl_bt.plugins.signals.agree_voltarget import AgreeVolTarget
from mtl_bt.signals.clip import clip_weights

H = 24
NAMES = [f"return@{H}", f"direction@{H}", f"volatility@{H}", "return@48"]

special = st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-10, -1e-10, 5e-324])
returns = st.one_of(st.floats(-0.2, 0.2), special)
probs = st.one_of(st.floats(0.0, 1.0), st.just(0.5), special)
vols = st.one_of(st.floats(0.0, 0.1), special)
weights = st.one_of(st.floats(-1.0, 1.0), st.just(0.0), st.sampled_from([0.5, -0.5, 2e-9]), special)
ppys = st.one_of(st.sampled_from([8760.0, 252.0, 365.25, 0.0]), st.floats(1.0, 1e5))
options = st.fixed_dictionaries(
    {},
    optional={
        "threshold": st.sampled_from([0.0, 0.001, 0.01]),
        "margin": st.sampled_from([0.0, 1.0, 3.5]),
        "daily_margin": st.sampled_from([0.0, 15.0, 2.5]),
        "exit_threshold": st.sampled_from([0.0, 0.002, 0.05]),
        "resize_band": st.sampled_from([0.0, 0.5, 2.0]),
        "target_vol": st.sampled_from([0.05, 0.2, 1.0]),
        "horizon": st.sampled_from([H, 48]),
        "use_direction": st.booleans(),
        "use_volatility": st.booleans(),
        "volatility_input": st.sampled_from(["head", "trailing", "ewma"]),
    },
)


@st.composite
def decisions(draw):
    n = draw(st.integers(1, av.SMALL))
    col = lambda s: np.array(draw(st.lists(s, min_size=n, max_size=n)), dtype=np.float64)  # noqa: E731
    book = draw(st.sampled_from(["held", "flat", "mixed"]))
    w0 = col(weights)
    if book == "flat":
        w0 = np.zeros(n)
    elif book == "held":
        w0 = np.where(np.abs(w0) > av.FLAT, w0, 0.3)
    preds = {NAMES[0]: col(returns), NAMES[1]: col(probs), NAMES[2]: col(vols)}
    preds[NAMES[3]] = col(returns)
    ppy = draw(st.one_of(st.floats(1.0, 1e4), st.just(None)))
    ctx = {
        "periods_per_year": col(ppys) if ppy is None else ppy,
        "realised_vol": draw(st.one_of(st.none(), st.just(col(vols)))),
        "ewma_vol": draw(st.one_of(st.none(), st.just(col(vols)))),
        "commission": draw(st.sampled_from([0.0, 0.001, 0.0005])),
        "slippage": draw(st.sampled_from([0.0, 0.0002])),
        "max_weight": draw(st.sampled_from([1.0, 0.25, 0.1])),
        "max_gross_leverage": draw(st.sampled_from([1.0, 0.5, 2.0])),
        "allow_short": draw(st.booleans()),
        "n_assets": draw(st.sampled_from([None, n, 10])),
        "current_weights": w0,
        "symbols": [f"S{i}" for i in range(n)],
    }
    return preds, ctx


def numpy_path(rule: AgreeVolTarget, preds, ctx) -> np.ndarray:
    raw = rule.raw_weights(preds, **ctx)
    return clip_weights(raw, ctx["max_weight"], ctx["max_gross_leverage"], ctx["allow_short"])


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=400, deadline=None)
@given(decisions(), options)
def test_scalar_path_equals_numpy_path(decision, opts):
    preds, ctx = decision
    rule = AgreeVolTarget(**opts)
    fast = rule._small(preds, ctx)
    assert fast is not None  # a plain small batch takes the scalar path
    slow = numpy_path(rule, preds, ctx)
    assert same_bits(fast, slow), (fast, slow)
    assert same_bits(rule.weights(preds, **ctx), slow)


def test_what_the_scalar_path_does_not_take():
    n = av.SMALL + 1
    preds = {NAMES[0]: np.full(n, 0.05), NAMES[1]: np.full(n, 0.9), NAMES[2]: np.full(n, 0.01)}
    ctx = {"periods_per_year": np.full(n, 8760.0), "current_weights": np.zeros(n)}
    rule = AgreeVolTarget()
    assert rule._small(preds, ctx) is None  # too many assets
    few = {k: v[:2] for k, v in preds.items()}
    few_ctx = {"periods_per_year": np.full(2, 8760.0), "current_weights": np.zeros(2)}
    assert rule._small(few, few_ctx) is not None
    assert rule._small(few, {"periods_per_year": 8760.0}) is None  # no current weights
    assert AgreeVolTarget(hysteresis=False)._small(few, few_ctx) is None
    as32 = {k: v.astype(np.float32) for k, v in few.items()}
    assert rule._small(as32, few_ctx) is None  # not float64: the numpy path converts

    class OwnParts(AgreeVolTarget):
        def raw_weights(self, predictions, **context):
            return super().raw_weights(predictions, **context) * 0.5

    assert OwnParts()._small(few, few_ctx) is None  # a subclass's override is honoured


@pytest.mark.parametrize("n", [1, 3, av.SMALL + 2])
def test_weights_equal_the_numpy_path_on_either_side_of_small(n):
    rng = np.random.default_rng(n)
    preds = {
        NAMES[0]: rng.normal(0, 0.03, n),
        NAMES[1]: rng.uniform(0, 1, n),
        NAMES[2]: rng.uniform(0.001, 0.02, n),
    }
    ctx = {
        "periods_per_year": np.full(n, 8760.0),
        "realised_vol": np.full(n, 0.01),
        "commission": 0.001,
        "max_weight": 0.5,
        "max_gross_leverage": 1.0,
        "allow_short": True,
        "current_weights": rng.uniform(-0.4, 0.4, n),
    }
    rule = AgreeVolTarget(margin=0.5)
    assert same_bits(rule.weights(preds, **ctx), numpy_path(rule, preds, ctx))


class NumpyOnly(AgreeVolTarget):
    """The rule with its scalar path off: the numpy path it stands in for."""

    def _small(self, predictions, context, raw=False):
        return None


@settings(max_examples=400, deadline=None)
@given(decisions(), options, st.booleans(), st.booleans())
def test_scalar_raw_weights_equal_the_numpy_raw_weights(decision, opts, with_current, hyst):
    """``raw_weights`` of a small batch (the live flat decision's call: no current weights;
    or with them) in Python floats: the same bits as numpy's, NaN, infinities and signed
    zeros included (nothing clipped yet)."""
    preds, ctx = decision
    if not with_current:
        ctx = {k: v for k, v in ctx.items() if k != "current_weights"}
    opts = {**opts, "hysteresis": hyst}
    rule = AgreeVolTarget(**opts)
    assert rule._small(preds, ctx, raw=True) is not None
    assert same_bits(rule.raw_weights(preds, **ctx), NumpyOnly(**opts).raw_weights(preds, **ctx))


def test_a_subnormal_volatility_sizes_at_the_cap_without_a_warning():
    """target / (vol sqrt P) overflows to inf for a subnormal vol: the cap gives max_weight,
    and numpy's overflow warning is not the user's problem."""
    import warnings

    from mtl_bt.plugins.signals.common import vol_target_size

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        size = vol_target_size(np.array([5e-324, 1e-320, 0.01]), 0.15, 8760.0, 0.5, 1.0, None)
    assert size[0] == size[1] == 0.5 and 0 < size[2] < 0.5
