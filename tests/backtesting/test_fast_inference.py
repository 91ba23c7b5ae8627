"""The Predictor's fast inference paths (the compiled kernel, the default, and the numpy
closures) equal its torch path on real trained checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_bt.predictor import Predictor


def _rows(predictor, frames):
    symbol = predictor.symbols[0]
    feats = predictor.features(frames[symbol]).dropna().to_numpy(np.float32)
    return symbol, feats


def _assert_predicts_like_torch(predictor, frames, n=5):
    """``predict`` on ``n`` real rows equals ``predict_torch`` to 1e-6 for every task."""
    symbol, feats = _rows(predictor, frames)
    ids = predictor.asset_ids([symbol] * n)
    fast, slow = predictor.predict(feats[:n], ids), predictor.predict_torch(feats[:n], ids)
    for name in slow:
        np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-6, err_msg=name)


def _on(backend, predictor, monkeypatch):
    """``predictor`` reloaded on ``backend`` ("kernel" is the default; "numpy" with
    ``MTL_BT_NO_KERNEL=1``)."""
    if backend == "kernel":
        return predictor
    monkeypatch.setenv("MTL_BT_NO_KERNEL", "1")
    return Predictor(predictor.checkpoint)


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
@pytest.mark.parametrize("batch", [1, 7, 50])
def test_fast_predict_equals_torch_on_real_checkpoints(
    predictors, frames, batch, backend, monkeypatch
):
    for predictor in predictors:
        predictor = _on(backend, predictor, monkeypatch)
        assert predictor.backend == backend
        symbol, feats = _rows(predictor, frames)
        x = feats[:batch]
        ids = predictor.asset_ids([symbol] * len(x))
        fast, slow = predictor.predict(x, ids), predictor.predict_torch(x, ids)
        assert list(fast) == list(slow) == predictor.task_names
        for name in slow:
            assert fast[name].dtype == np.float64 and fast[name].shape == (len(x),)
            np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-6, err_msg=name)


def test_predict_frame_equals_torch(predictors, frames, monkeypatch):
    predictor = predictors[-1]
    feats = {s: predictor.features(frames[s]) for s in predictor.symbols}
    fast = predictor.predict_frame(feats)
    monkeypatch.setenv("MTL_BT_TORCH_INFERENCE", "1")
    slow_predictor = Predictor(predictor.checkpoint)
    assert slow_predictor.backend == "torch"
    slow = slow_predictor.predict_frame(feats)
    assert fast[["datetime", "symbol"]].equals(slow[["datetime", "symbol"]])
    for name in predictor.task_names:
        np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-6, equal_nan=True)


def test_live_and_precomputed_kernel_predictions_are_the_same_bits(predictors, frames):
    """``predict_frame`` (chunks of 8192 rows) and ``predict`` one row at a time (per bar)."""
    predictor = predictors[-1]
    assert predictor.backend == "kernel"
    symbol = predictor.symbols[0]
    feats = predictor.features(frames[symbol])
    whole = predictor.predict_frame({symbol: feats})
    rows = np.flatnonzero(np.isfinite(feats.to_numpy(np.float32)).all(axis=1))[:40]
    values = feats.to_numpy(np.float32)
    ids = predictor.asset_ids([symbol])
    for i in rows:
        one = predictor.predict(values[i : i + 1], ids)
        for name in predictor.task_names:
            assert one[name][0] == whole[name].iloc[i], (name, i)


def test_a_broken_kernel_op_is_refused_with_a_warning(predictors, frames, monkeypatch):
    """A program whose affine ops are off by 1e-3 fails the probe check at load: the
    predictor warns and runs the numpy closures, whose predictions equal torch."""
    from mtl_bt.models import kernel as kn

    original = kn.Program.affine

    def off(self, src, w, b=None, dst=None, act="none"):
        b = (np.zeros(w.shape[1]) if b is None else b) + 1e-3
        return original(self, src, w, b, dst, act)

    monkeypatch.setattr(kn.Program, "affine", off)
    with pytest.warns(RuntimeWarning, match="compiled kernel disagrees"):
        predictor = Predictor(predictors[0].checkpoint)
    assert predictor.backend == "numpy"
    _assert_predicts_like_torch(predictor, frames)


def test_no_kernel_env_var_selects_the_numpy_closures(predictors, monkeypatch):
    monkeypatch.setenv("MTL_BT_NO_KERNEL", "1")
    assert Predictor(predictors[0].checkpoint).backend == "numpy"
    monkeypatch.setenv("MTL_BT_TORCH_INFERENCE", "1")
    assert Predictor(predictors[0].checkpoint).backend == "torch"


def test_without_numba_the_predictor_runs_the_numpy_closures(predictors, monkeypatch):
    import sys

    from mtl_bt.models import kernel as kn

    monkeypatch.setattr(kn, "_RUNNER", [])
    monkeypatch.setitem(sys.modules, "numba", None)
    assert Predictor(predictors[0].checkpoint).backend == "numpy"


def test_a_wrong_numpy_forward_falls_back_to_torch_with_a_warning(predictors, monkeypatch):
    from mtl_bt import registry

    monkeypatch.setenv("MTL_BT_NO_KERNEL", "1")  # the numpy closures are checked without it

    cls = registry.get("architecture", predictors[0].checkpoint.architecture)
    original = cls.numpy_predict

    def off_by_a_bit(self):
        inner = original(self)
        return lambda h: {k: v + 1e-3 for k, v in inner(h).items()}

    monkeypatch.setattr(cls, "numpy_predict", off_by_a_bit)
    with pytest.warns(RuntimeWarning, match="disagrees with its torch model"):
        predictor = Predictor(predictors[0].checkpoint)
    assert predictor.backend == "torch"


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_bad_asset_ids_are_refused_on_the_fast_paths(predictors, frames, backend, monkeypatch):
    predictor = _on(backend, predictors[0], monkeypatch)
    assert predictor.backend == backend
    _, feats = _rows(predictor, frames)
    for bad in ([0, 5], [-1, 0]):
        with pytest.raises(ValueError, match="asset ids must be in"):
            predictor.predict(feats[:2], np.array(bad))


def test_a_wrong_transform_numpy_falls_back_to_the_torch_transform(predictors, frames, monkeypatch):
    from mtl_bt import registry

    cls = registry.get("task", "return")
    monkeypatch.setattr(cls, "transform_numpy", lambda self, v: v * 2.0)
    with pytest.warns(RuntimeWarning, match="transform_numpy disagrees"):
        predictor = Predictor(predictors[0].checkpoint)
    assert predictor.backend == "kernel"
    _assert_predicts_like_torch(predictor, frames)


def test_the_scaler_is_folded_into_the_first_layer_without_a_clip(predictors, monkeypatch):
    for predictor in predictors:
        predictor = _on("numpy", predictor, monkeypatch)
        assert predictor.scaler.clip is None and predictor._prescaled


def test_a_fold_that_disagrees_falls_back_to_scaling_first(predictors, frames, monkeypatch):
    """A wrong fold is refused at load (probe rows vs torch): the numpy path scales first,
    silently (it is only slower), and predictions still equal torch."""
    from mtl_bt.models import numpy_forward as nf

    original = nf.InputFold.fold

    def off(self, w, bias):  # only the scaler's fold (the embedding's stays right)
        wx, c = original(self, w, bias)
        return (wx, c + np.float32(1e-3)) if self.a is not None else (wx, c)

    monkeypatch.setattr(nf.InputFold, "fold", off)
    monkeypatch.setenv("MTL_BT_NO_KERNEL", "1")
    predictor = Predictor(predictors[0].checkpoint)
    assert predictor.backend == "numpy" and not predictor._prescaled
    _assert_predicts_like_torch(predictor, frames)


@pytest.mark.parametrize("float64_transform", [False, True])
def test_kernel_outputs_are_assembled_like_one_transform_per_task(
    predictors, frames, monkeypatch, float64_transform
):
    """``predict`` converts all tasks to float64 at once after writing each float32
    transform back: bit for bit ``f(column).astype(float64)`` per task; a transform that
    returns float64 keeps its own precision."""
    from mtl_bt import registry

    cls = registry.get("task", "direction")
    monkeypatch.setattr(cls, "kernel_transform", lambda self: None)  # transform_numpy after
    if float64_transform:
        monkeypatch.setattr(
            cls, "transform_numpy", lambda self, v: 1.0 / (1.0 + np.exp(-v.astype(np.float64)))
        )
    predictor = Predictor(predictors[-1].checkpoint)
    assert [c[0] for c in predictor._columns if c[3] is not None] == ["direction@1"]
    kernel = predictor._kernel
    assert kernel is not None
    symbol, feats = _rows(predictor, frames)
    for n in (1, 5, 50):
        x = np.ascontiguousarray(feats[:n])
        ids = predictor.asset_ids([symbol] * n)
        raw = np.empty((kernel.n_cols, n), np.float32)
        kernel.run(kernel.ops, kernel.weights, x, kernel.ids(ids, n), raw)
        got = predictor.predict(x, ids)
        for name, col, wide, f in predictor._columns:
            v = raw[col].T if wide else raw[col]
            want = (v if f is None else f(v.copy())).astype(np.float64)
            np.testing.assert_array_equal(got[name], want, err_msg=name)
            assert got[name].dtype == np.float64
        if float64_transform:
            direction = [c for c in predictor._columns if c[0].startswith("direction")][0]
            assert got[direction[0]].base is None or got[direction[0]].base.dtype == np.float64


def test_built_in_transforms_run_inside_the_kernel(predictors, frames):
    predictor = predictors[-1]
    assert predictor._in_kernel == set(predictor.task_names)
    assert all(f is None for *_, f in predictor._columns)


@pytest.mark.parametrize("steps", [(("exp",),), (("softplus",),)])
def test_a_wrong_kernel_transform_is_refused_with_a_warning(predictors, frames, monkeypatch, steps):
    """Steps that are not the task's transform (or not steps at all) fail the probe check:
    that task's transform_numpy runs after the kernel, and predictions equal torch."""
    from mtl_bt import registry

    monkeypatch.setattr(registry.get("task", "direction"), "kernel_transform", lambda self: steps)
    with pytest.warns(RuntimeWarning, match="kernel_transform disagrees"):
        predictor = Predictor(predictors[-1].checkpoint)
    assert predictor.backend == "kernel" and "direction@1" not in predictor._in_kernel
    _assert_predicts_like_torch(predictor, frames)
