"""The numpy forward pass (fast inference) equals the torch model for every built-in
architecture, input stage and option that changes the layers; task transforms too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_bt import registry
from mtl_bt.models import MTLModel

ARCHS = ["shared_bottom", "soft_sharing", "cross_stitch", "mmoe", "ple", "hierarchical"]
STAGES = ["plain", "asset", "gru", "conv"]
#: options that change which layers the numpy version must reproduce
VARIANTS = {
    "shared_bottom": [{"norm": "layer"}, {"norm": "batch"}, {"norm": "none"}],
    "soft_sharing": [{}],
    "cross_stitch": [{"alpha_self": 0.6}],
    "mmoe": [{"n_experts": 3}, {"n_experts": 2, "expert_hidden": [7]}],
    "ple": [{"levels": 1}, {"levels": 3, "n_task_experts": 2}],
    "hierarchical": [{"detach": True}, {"detach": False}],
}
CASES = [(a, s, o) for a in ARCHS for s in STAGES for o in VARIANTS[a]]


def trained_like(model: MTLModel, seed: int = 3) -> MTLModel:
    """Every parameter and BatchNorm statistic moved off its initial value, then eval."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return model.eval()


def torch_outputs(model, x, asset):
    with torch.inference_mode():
        out = model(x, asset)
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize(("arch", "stage", "options"), CASES)
@pytest.mark.parametrize("batch", [1, 7, 50])
def test_numpy_forward_equals_torch(arch, stage, options, batch, kit):
    model = trained_like(kit.make(arch, stage, **options))
    fast = model.numpy_forward()
    assert fast is not None, f"{arch} has no numpy forward pass"
    x, asset = kit.inputs(stage, batch=batch)
    want = torch_outputs(model, x, asset)
    got = fast(x.numpy().copy(), None if asset is None else asset.numpy())
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_numpy_forward_does_not_modify_its_input(arch, kit):
    model = trained_like(kit.make(arch, "plain"))
    x, _ = kit.inputs("plain", batch=5)
    before = x.numpy().copy()
    arr = x.numpy().copy()
    model.numpy_forward()(arr, None)
    np.testing.assert_array_equal(arr, before)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arch=st.sampled_from(ARCHS),
    stage=st.sampled_from(STAGES),
    batch=st.integers(1, 60),
    scale=st.floats(0.01, 10.0),
    seed=st.integers(0, 10_000),
)
def test_numpy_forward_equals_torch_on_any_input(arch, stage, batch, scale, seed, kit):
    """Property: random weights, inputs of any batch size and scale: the passes agree."""
    model = trained_like(kit.make(arch, stage, seed=seed % 7), seed=seed)
    x, asset = kit.inputs(stage, batch=batch, seed=seed)
    x = x * scale
    want = torch_outputs(model, x, asset)
    got = model.numpy_forward()(x.numpy().copy(), None if asset is None else asset.numpy())
    for name in want:
        tol = 1e-6 * max(1.0, float(np.abs(want[name]).max()))
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=tol, err_msg=name)


def test_asset_embedding_checks_ids(kit):
    model = trained_like(kit.make("shared_bottom", "asset"))
    fast = model.numpy_forward()
    x, _ = kit.inputs("asset", batch=3)
    with pytest.raises(ValueError, match="asset ids"):
        fast(x.numpy(), None)
    with pytest.raises(ValueError, match="asset ids must be in 0..2"):
        fast(x.numpy(), np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="asset ids must be in 0..2"):
        fast(x.numpy(), np.array([0, -1, 1]))


def test_a_third_party_model_without_the_opt_ins_has_no_fast_path(kit):
    """Neither ``numpy_predict`` nor ``kernel_predict``: no closures, no kernel program
    (the predictor runs it through torch)."""

    class Plain(MTLModel):
        architecture = "plain_test"

        def __init__(self, in_features, tasks, **common):
            super().__init__(in_features, tasks, **common)
            self.head = torch.nn.Linear(self.stage_features, len(self.tasks))

        def predict(self, h):
            out = self.head(h)
            return {n: out[:, i] for i, n in enumerate(self.task_names)}

    model = Plain(kit.n_features, kit.specs)
    assert model.numpy_forward() is None
    assert model.kernel_program() is None


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("return", {}),
        ("return", {"scale": 0.01}),
        ("direction", {}),
        ("volatility", {}),
        ("volatility", {"loss": "log_mse"}),
        ("volume", {}),
    ],
)
def test_task_transform_numpy_equals_transform(kind, options):
    task = registry.get("task", kind)(horizon=3, **options)
    raw = np.concatenate(
        [np.linspace(-8, 3, 101, dtype=np.float32), np.float32([-60.0, 30.0])]
    )  # past the volatility clamp too
    want = task.transform(torch.from_numpy(raw.copy())).numpy()
    got = task.transform_numpy(raw.copy())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_default_transform_numpy_runs_the_torch_transform():
    from mtl_bt.tasks.base import Task

    class Tanh(Task):
        kind = "tanh_test"

        def transform(self, output):
            return torch.tanh(output)

    raw = np.linspace(-2, 2, 9, dtype=np.float32)
    np.testing.assert_array_equal(
        Tanh().transform_numpy(raw), torch.tanh(torch.from_numpy(raw)).numpy()
    )
    assert Task().transform_numpy(raw) is raw


@pytest.mark.parametrize(("arch", "stage", "options"), CASES)
@pytest.mark.parametrize("batch", [1, 7])
def test_scaler_folded_into_the_first_layer_equals_scaling_first(arch, stage, options, batch, kit):
    """``numpy_forward(scale=(a, b))`` on raw features = ``numpy_forward()`` on ``x * a + b``
    (the fold is linear algebra, only float rounding may differ) and = torch."""
    model = trained_like(kit.make(arch, stage, **options))
    x, asset = kit.inputs(stage, batch=batch)
    rng = np.random.default_rng(5)
    a = rng.uniform(0.2, 3.0, kit.n_features).astype(np.float32)
    b = rng.normal(0.0, 2.0, kit.n_features).astype(np.float32)
    z = x.numpy()
    raw = ((z - b) / a).astype(np.float32)
    ids = None if asset is None else asset.numpy()
    folded = model.numpy_forward(scale=(a, b))(raw.copy(), ids)
    scaled = raw * a + b
    plain = model.numpy_forward()(scaled, ids)
    want = torch_outputs(model, torch.from_numpy(scaled), asset)
    assert list(folded) == list(plain)
    for name in plain:
        assert folded[name].shape == plain[name].shape and folded[name].dtype == np.float32
        np.testing.assert_allclose(folded[name], plain[name], rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(folded[name], want[name], rtol=0, atol=1e-6, err_msg=name)


def test_a_folded_input_assembles_to_the_stage_output(kit):
    """What a layer that is not a matmul reads: ``[x * a + b, table[ids]]``."""
    from mtl_bt.models import numpy_forward as nf

    model = trained_like(kit.make("shared_bottom", "asset"))
    a = np.full(kit.n_features, 2.0, np.float32)
    b = np.full(kit.n_features, -1.0, np.float32)
    x, asset = kit.inputs("asset", batch=4)
    h = nf.input_stage(model.input_stage, (a, b))(x.numpy(), asset.numpy())
    assert isinstance(h, nf.Folded) and h.shape == (4, model.stage_features)
    table = model.input_stage.embedding.weight.detach().numpy()
    want = np.concatenate([x.numpy() * a + b, table[asset.numpy()]], axis=1)
    np.testing.assert_allclose(np.asarray(h), want, rtol=0, atol=1e-6)
    w = np.random.default_rng(0).standard_normal((model.stage_features, 3)).astype(np.float32)
    np.testing.assert_allclose(h @ w, want @ w, rtol=0, atol=1e-5)


def test_blas_threads_sets_and_restores_openblas_threads():
    from mtl_bt.models import numpy_forward as nf

    calls = nf._openblas_thread_calls()
    if not calls:
        pytest.skip("no OpenBLAS loaded in this process")
    before = [get() for get, _ in calls]
    restore = nf.blas_threads(1)
    assert [get() for get, _ in calls] == [1] * len(calls)
    restore()
    assert [get() for get, _ in calls] == before
