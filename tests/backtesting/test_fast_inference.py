"""The Predictor's per-bar path (the model exported to ONNX, run by ONNX Runtime) equals
its torch path on real trained checkpoints, falls back to torch with one warning where
the export fails or disagrees, and caches the export beside the checkpoint."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from mtl_bt import registry
from mtl_bt.checkpoint import save
from mtl_bt.models import MTLModel
from mtl_bt.models import onnx_runtime as rt
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


def _quiet(checkpoint):
    """``Predictor(checkpoint)``, failing on any warning (the ONNX path loads silently)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return Predictor(checkpoint)


@pytest.mark.parametrize("batch", [1, 7, 50])
def test_onnx_predict_equals_torch_on_real_checkpoints(predictors, frames, batch):
    for predictor in predictors:
        assert predictor.backend == "onnxruntime" and predictor.backend_reason is None
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
    assert "MTL_BT_TORCH_INFERENCE" in slow_predictor.backend_reason
    slow = slow_predictor.predict_frame(feats)
    assert fast[["datetime", "symbol"]].equals(slow[["datetime", "symbol"]])
    for name in predictor.task_names:
        np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-6, equal_nan=True)


def test_live_and_precomputed_predictions_are_the_same_bits(predictors, frames):
    """``predict_frame`` (chunks of 8192 rows) and ``predict`` one row at a time (per bar)."""
    predictor = predictors[-1]
    assert predictor.backend == "onnxruntime" and not predictor._row_by_row
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


def test_bad_asset_ids_are_refused(predictors, frames):
    predictor = predictors[0]
    _, feats = _rows(predictor, frames)
    for bad in ([0, 5], [-1, 0]):  # ONNX's Gather would read -1 as the last asset
        with pytest.raises(ValueError, match="asset ids must be in 0..1"):
            predictor.predict(feats[:2], np.array(bad))
    with pytest.raises(ValueError, match="3 asset ids for a batch of 2 rows"):
        predictor.predict(feats[:2], np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="pass asset ids"):
        predictor.predict(feats[:2], None)


def test_a_wrong_export_falls_back_to_torch_with_one_warning(predictors, frames, monkeypatch):
    """An export off by 1e-3 fails the probe check at load (with and without the
    transforms): one warning naming the architecture and why, then torch."""
    original = rt.InferenceGraph.forward

    def off(self, x, asset=None):
        out = original(self, x, asset)
        return tuple(o + 1e-3 for o in out) if torch.jit.is_tracing() else out

    monkeypatch.setattr(rt.InferenceGraph, "forward", off)
    checkpoint = dataclasses.replace(predictors[0].checkpoint, path=None)
    with pytest.warns(RuntimeWarning) as seen:
        predictor = Predictor(checkpoint)
    assert len(seen) == 1
    message = str(seen[0].message)
    assert f"architecture {checkpoint.architecture!r} runs on torch" in message
    assert "disagrees with torch" in message and "by 0.001" in message
    assert predictor.backend == "torch" and "disagrees" in predictor.backend_reason
    _assert_predicts_like_torch(predictor, frames)


def test_a_transform_that_does_not_export_runs_after_the_session(predictors, frames, monkeypatch):
    """A task transform the graph cannot hold (here: numpy inside, frozen into a constant
    when traced) fails the check; the model alone is exported and the torch transform
    runs on its outputs, silently, and predictions still equal torch."""
    cls = registry.get("task", "direction")

    def numpy_sigmoid(self, output):
        return torch.from_numpy(1.0 / (1.0 + np.exp(-output.detach().numpy())))

    monkeypatch.setattr(cls, "transform", numpy_sigmoid)
    predictor = _quiet(dataclasses.replace(predictors[-1].checkpoint, path=None))
    assert predictor.backend == "onnxruntime" and predictor._transform_after
    _assert_predicts_like_torch(predictor, frames)
    _assert_predicts_like_torch(predictor, frames, n=1)


class Plugin(MTLModel):
    """A third-party architecture: defined here only, nothing but torch (no opt-in)."""

    architecture = "plugin_test"

    def __init__(self, in_features, tasks, *, width: int = 6, **common):
        super().__init__(in_features, tasks, **common)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(self.stage_features, width), torch.nn.GELU(), torch.nn.LayerNorm(width)
        )
        self.gate = torch.nn.Linear(self.stage_features, width)
        self.heads = torch.nn.ModuleDict({t.name: torch.nn.Linear(width, 1) for t in self.tasks})

    def predict(self, h):
        z = self.body(h) * torch.sigmoid(self.gate(h))
        return {n: self._out(head(z)) for n, head in self.heads.items()}

    def task_modules(self, name):
        return [self.heads[name]]


class Branchy(Plugin):
    """Data-dependent Python control flow: a trace freezes the branch of its example."""

    architecture = "branchy_test"

    def predict(self, h):
        out = super().predict(h)
        return out if h.shape[0] == 2 else {n: v + 1.0 for n, v in out.items()}


class BatchMixing(Plugin):
    """Each row's outputs read the batch's mean: a row's predictions depend on its batch."""

    architecture = "batch_mixing_test"

    def predict(self, h):
        return super().predict(h + 0.1 * h.mean(dim=0, keepdim=True))


class Unexportable(Plugin):
    """An op the ONNX exporter does not know."""

    architecture = "unexportable_test"

    def predict(self, h):
        out = super().predict(h)
        k = torch.kthvalue(h, 1, dim=1)[0]
        return {n: v + k for n, v in out.items()}


@pytest.fixture
def plugins():
    from mtl_bt import hookimpl

    class Register:
        @hookimpl
        def register_architectures(self, register):
            for cls in (Plugin, Branchy, BatchMixing, Unexportable):
                register(cls.architecture, cls, "test only")

    registry.register_plugin(Register(), "onnx_test_plugins")
    yield
    registry.unregister_plugin("onnx_test_plugins")


def _as(checkpoint, cls, tmp_path=None):
    """``checkpoint`` with a freshly initialised ``cls`` model of the same shape, saved
    to ``tmp_path`` when given (then its ``path`` is the file)."""
    torch.manual_seed(0)
    opts = dict(checkpoint.init_kwargs)
    tasks, in_features = opts.pop("tasks"), opts.pop("in_features")
    keep = {"hidden", "dropout", "n_assets", "asset_embedding"}
    model = cls(in_features, tasks, **{k: v for k, v in opts.items() if k in keep}).eval()
    out = dataclasses.replace(
        checkpoint,
        state_dict=model.state_dict(),
        architecture=cls.architecture,
        init_kwargs=model.init_kwargs,
        path=None,
    )
    if tmp_path is None:
        return out
    path = save(tmp_path / "fold_0.pt", out)
    return dataclasses.replace(out, path=path)


def test_a_plugin_architecture_runs_per_bar_through_onnx_runtime(predictors, frames, plugins):
    predictor = _quiet(_as(predictors[0].checkpoint, Plugin))
    assert not hasattr(Plugin, "numpy_predict") and not hasattr(Plugin, "kernel_predict")
    assert predictor.backend == "onnxruntime" and not predictor._transform_after
    for n in (1, 5, 50):
        _assert_predicts_like_torch(predictor, frames, n)


def test_a_plugin_that_branches_on_its_input_is_caught_at_load(predictors, frames, plugins):
    with pytest.warns(RuntimeWarning, match="'branchy_test' runs on torch.*disagrees"):
        predictor = Predictor(_as(predictors[0].checkpoint, Branchy))
    assert predictor.backend == "torch"
    _assert_predicts_like_torch(predictor, frames)


def test_a_plugin_that_does_not_export_falls_back_with_the_reason(predictors, frames, plugins):
    with pytest.warns(RuntimeWarning) as seen:
        predictor = Predictor(_as(predictors[0].checkpoint, Unexportable))
    assert len(seen) == 1
    message = str(seen[0].message)
    assert "'unexportable_test' runs on torch" in message and "aten::kthvalue" in message
    assert predictor.backend == "torch" and "export" in predictor.backend_reason
    _assert_predicts_like_torch(predictor, frames)


def test_a_model_whose_rows_depend_on_the_batch_runs_one_row_at_a_time(predictors, frames, plugins):
    """The load check finds that a row in a batch differs from the row alone, so
    ``predict`` runs rows one by one: live (per bar) and precomputed (whole frame)
    predictions stay the same bits, whatever the model does with its batch."""
    predictor = _quiet(_as(predictors[0].checkpoint, BatchMixing))
    assert predictor.backend == "onnxruntime" and predictor._row_by_row
    symbol, feats = _rows(predictor, frames)
    ids = predictor.asset_ids([symbol] * 6)
    whole = predictor.predict(feats[:6], ids)
    for i in range(6):
        one = predictor.predict(feats[i : i + 1], ids[i : i + 1])
        for name in whole:
            assert one[name][0] == whole[name][i], (name, i)


def _cached(folder):
    return sorted(p.name for p in (folder / "onnx").glob("*.onnx"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty mtl-bt cache folder of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MTL_BT_CACHE_DIR", str(folder))
    return folder


def test_the_export_is_cached_by_checkpoint_sha256(
    predictors, frames, tmp_path, cache, monkeypatch
):
    checkpoint = _as(predictors[0].checkpoint, registry.get("architecture", "mmoe"), tmp_path)
    first = _quiet(checkpoint)
    assert first.backend == "onnxruntime"
    key = rt.cache_key(rt.file_sha256(checkpoint.path), "transformed")
    assert _cached(cache) == [f"{key}.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "fold_0.pt"]  # run untouched

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(rt, "export", no_export)
    second = _quiet(checkpoint)  # read from the cache: no export
    assert second.backend == "onnxruntime"
    _, feats = _rows(second, frames)
    ids = np.array([0, 1, 0], dtype=np.int64)
    a, b = first.predict(feats[:3], ids), second.predict(feats[:3], ids)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_a_broken_or_wrong_cached_export_is_exported_again(predictors, frames, tmp_path, cache):
    checkpoint = _as(predictors[0].checkpoint, registry.get("architecture", "ple"), tmp_path)
    _quiet(checkpoint)
    (name,) = _cached(cache)
    path = cache / "onnx" / name
    path.write_bytes(b"not an onnx model")
    predictor = _quiet(checkpoint)
    assert predictor.backend == "onnxruntime"
    assert rt.Session(path.read_bytes())  # rewritten, a model again
    # another model's export under this key (wrong weights) fails the check too
    other = _as(predictors[0].checkpoint, registry.get("architecture", "shared_bottom"))
    width = len(other.feature_columns)
    ids = torch.zeros(2, dtype=torch.long)
    wrong = rt.export(Predictor(other)._graph, torch.zeros((2, width)), ids)
    path.write_bytes(wrong)
    predictor = _quiet(checkpoint)
    assert predictor.backend == "onnxruntime"
    _assert_predicts_like_torch(predictor, frames)
    assert path.read_bytes() != wrong


def test_a_changed_checkpoint_gets_a_new_key(predictors, tmp_path, cache):
    checkpoint = _as(predictors[0].checkpoint, registry.get("architecture", "mmoe"), tmp_path)
    _quiet(checkpoint)
    (before,) = _cached(cache)
    changed = _as(predictors[0].checkpoint, registry.get("architecture", "cross_stitch"), tmp_path)
    _quiet(changed)
    assert len(_cached(cache)) == 2 and before in _cached(cache)


def test_an_unwritable_cache_keeps_the_export_in_memory(predictors, frames, tmp_path, monkeypatch):
    """No folder can be made under a file (not even by root): the export is not cached,
    and the predictor runs ONNX Runtime all the same."""
    blocked = tmp_path / "a file"
    blocked.write_text("")
    monkeypatch.setenv("MTL_BT_CACHE_DIR", str(blocked))
    checkpoint = _as(predictors[0].checkpoint, registry.get("architecture", "mmoe"), tmp_path)
    predictor = _quiet(checkpoint)
    assert predictor.backend == "onnxruntime"
    _assert_predicts_like_torch(predictor, frames)


def test_a_live_batch_of_one_equals_its_row_in_a_larger_batch(live_run):
    """``PredictionEngine.predict_rows`` runs a one-asset decision without the batch's
    canonical ordering: the same bits as that asset's row in a two-asset batch."""
    engine = live_run.strategy.engine
    rows = [r for r in range(len(engine.book.valid[0])) if engine.book.valid[0][r]]
    rows = [r for r in rows if engine.book.valid[1][r]][-30:]
    assert len(rows) == 30
    for r in rows:
        for a, b in ((0, 1), (1, 0)):
            one = engine.predict_rows(0, [a], [r])
            two = engine.predict_rows(0, [a, b], [r, r])
            assert one.shape == (1, len(engine.task_names))
            np.testing.assert_array_equal(one[0], two[0])
            assert np.isfinite(one).all()


def _assert_rows_like_predict(predictor, frames, n=40):
    """``predict_row`` of each of ``n`` real rows (asset ids alternating, so a stale bound
    buffer would show) is the same bits as ``predict`` of that row alone."""
    symbol, feats = _rows(predictor, frames)
    ids = np.arange(n) % max(1, predictor._n_assets) if predictor._with_ids else None
    for i in range(n):
        a = None if ids is None else int(ids[i])
        got = predictor.predict_row(feats[i], a)
        want = predictor.predict(feats[i : i + 1], None if ids is None else ids[i : i + 1])
        assert all(type(v) is float for v in got)
        assert got == [float(want[t][0]) for t in predictor.task_names], i


def test_predict_row_is_predict_of_the_row_on_every_path(predictors, frames, plugins, monkeypatch):
    """The per-decision call (ONNX Runtime on buffers bound once) against ``predict``: real
    checkpoints, a model predicted row by row, a transform run after the session, the torch
    backend, and a call that finds the bound buffers in use (another thread)."""
    for predictor in predictors:
        assert predictor._with_ids
        _assert_rows_like_predict(predictor, frames)
        assert predictor._session._bound[2]  # the bound buffers were used
    row_by_row = _quiet(_as(predictors[0].checkpoint, BatchMixing))
    assert row_by_row._row_by_row
    _assert_rows_like_predict(row_by_row, frames)
    busy = predictors[0]._session._one_lock
    busy.acquire()
    try:
        _assert_rows_like_predict(predictors[0], frames, n=5)
    finally:
        busy.release()
    with pytest.raises(ValueError, match="asset ids must be in 0..1"):
        predictors[0].predict_row(_rows(predictors[0], frames)[1][0], 2)
    with pytest.raises(ValueError, match="pass asset ids"):
        predictors[0].predict_row(_rows(predictors[0], frames)[1][0], None)
    with pytest.raises(ValueError, match="x must have shape"):
        predictors[0].predict_row(np.zeros(3, np.float32), 0)
    monkeypatch.setenv("MTL_BT_TORCH_INFERENCE", "1")
    _assert_rows_like_predict(Predictor(predictors[0].checkpoint), frames, n=5)
    cls = registry.get("task", "direction")
    monkeypatch.delenv("MTL_BT_TORCH_INFERENCE")
    monkeypatch.setattr(
        cls, "transform", lambda self, o: torch.from_numpy(1.0 / (1.0 + np.exp(-o.numpy())))
    )
    after = _quiet(dataclasses.replace(predictors[-1].checkpoint, path=None))
    assert after._transform_after
    _assert_rows_like_predict(after, frames, n=5)


def _assert_matrix_like_predict(predictor, frames, sizes=(2, 3, 5, 16, 17)):
    """``predict_matrix`` of batches of each size (ids varying between calls, so a stale
    bound buffer would show) is ``predict``'s outputs side by side, bit for bit."""
    symbol, feats = _rows(predictor, frames)
    rng = np.random.default_rng(0)
    for k, n in enumerate(sizes * 2):
        x = feats[k : k + n]
        ids = rng.integers(0, predictor._n_assets, n) if predictor._with_ids else None
        want = predictor.predict(x, ids)
        got = predictor.predict_matrix(x, ids)
        assert got.dtype == np.float64 and got.shape == (n, len(predictor.task_names))
        for j, t in enumerate(predictor.task_names):
            assert got[:, j].tobytes() == want[t].tobytes(), (n, t)


def test_predict_matrix_is_predict_side_by_side(predictors, frames, plugins):
    """A live decision over a few assets (bound buffers per batch size) against ``predict``:
    real checkpoints, sizes on both sides of FEW, a model predicted row by row, and a call
    that finds the buffers in use."""
    for predictor in predictors:
        _assert_matrix_like_predict(predictor, frames)
        assert predictor._session._bound[5] and 17 not in predictor._session._bound
    _assert_matrix_like_predict(_quiet(_as(predictors[0].checkpoint, BatchMixing)), frames)
    busy = predictors[0]._session._one_lock
    busy.acquire()
    try:
        _assert_matrix_like_predict(predictors[0], frames, sizes=(3,))
    finally:
        busy.release()
    with pytest.raises(ValueError, match="asset ids must be in 0..1"):
        predictors[0].predict_matrix(_rows(predictors[0], frames)[1][:3], np.array([0, 1, 2]))
