"""Scaler: fitted statistics, zero-variance guard, plain-data round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mtl_bt.errors import CheckpointError, DataError
from mtl_bt.features import Scaler


def _data(seed=0, n=500):
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.normal(5, 2, n), rng.standard_t(2, n) * 0.01, np.full(n, 3.0), rng.exponential(1, n)]
    )
    return X


def test_standard_scaler_moments_and_constant_column():
    X = _data()
    Z = Scaler("standard").fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 1, 3]].std(axis=0), 1.0, rtol=1e-12)
    assert (Z[:, 2] == 0.0).all()  # constant: scale 1, centred, no division by zero


def test_robust_scaler_median_and_iqr():
    X = _data()
    s = Scaler("robust").fit(X)
    Z = s.transform(X)
    np.testing.assert_allclose(np.median(Z, axis=0), 0.0, atol=1e-12)
    q75, q25 = np.percentile(Z[:, [0, 1, 3]], [75, 25], axis=0)
    np.testing.assert_allclose(q75 - q25, 1.3489795003921634, rtol=1e-9)
    assert np.isfinite(Z).all()


def test_robust_falls_back_to_std_when_iqr_is_zero():
    x = np.zeros((100, 1))
    x[:5] = 10.0  # IQR 0, std > 0
    s = Scaler("robust").fit(x)
    assert s.scale_[0] == pytest.approx(x.std())


@given(
    X=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=30),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    ),
    kind=st.sampled_from(["standard", "robust"]),
)
def test_any_finite_input_gives_finite_output_and_inverse(X, kind):
    s = Scaler(kind).fit(X)
    Z = s.transform(X)
    assert np.isfinite(Z).all() and (s.scale_ > 0).all()
    np.testing.assert_allclose(s.inverse_transform(Z), X, rtol=1e-9, atol=1e-6)


def test_round_trip_through_weights_only_checkpoint():
    X = _data(1)
    s = Scaler("robust", clip=5.0).fit(X)
    data = s.to_dict()
    assert set(data) == {"kind", "clip", "center", "scale"}
    assert all(type(v) is float for v in data["center"] + data["scale"])
    buf = io.BytesIO()
    torch.save({"scaler": data}, buf)
    buf.seek(0)
    back = Scaler.from_dict(torch.load(buf, weights_only=True)["scaler"])
    Y = _data(2)
    np.testing.assert_array_equal(back.transform(Y), s.transform(Y))
    assert np.abs(back.transform(Y * 100)).max() == 5.0  # clip kept


def test_fit_uses_only_the_rows_it_is_given():
    """The trainer fits on the training slice; test rows must not move the scaler."""
    X = _data(3)
    train, test = X[:300], X[300:] + 100.0
    s = Scaler().fit(train)
    np.testing.assert_allclose(s.center_, train.mean(axis=0))
    assert s.transform(test)[:, 0].mean() > 10  # the shift is visible, not absorbed


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        Scaler().transform(np.ones((2, 2)))
    with pytest.raises(DataError, match="unknown scaler 'minmax'"):
        Scaler("minmax")
    with pytest.raises(DataError, match="non-finite value at row 1, column 0"):
        Scaler().fit(np.array([[1.0], [np.nan]]))
    s = Scaler().fit(np.ones((3, 2)))
    with pytest.raises(DataError, match="fitted on 2 features, got 3"):
        s.transform(np.ones((1, 3)))
    with pytest.raises(CheckpointError, match="malformed"):
        Scaler.from_dict({"kind": "standard", "center": [0.0], "scale": [0.0, 1.0]})
    with pytest.raises(CheckpointError, match="malformed"):
        Scaler.from_dict({"center": [0.0], "scale": [1.0]})
