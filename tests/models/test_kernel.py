"""The compiled inference kernel (``mtl_bt.models.kernel``) equals the torch model for every
built-in architecture, input stage, scaling and clip; a row's outputs do not depend on the
batch it came in; numba missing or disabled falls back to the numpy closures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_bt.models import MTLModel
from mtl_bt.models import kernel as kn

ARCHS = ["shared_bottom", "soft_sharing", "cross_stitch", "mmoe", "ple", "hierarchical"]
STAGES = ["plain", "asset", "gru", "conv"]
#: options that change which ops the program must hold (norm: LayerNorm, BatchNorm, none)
VARIANTS = {
    "shared_bottom": [{"norm": "layer"}, {"norm": "batch"}, {"norm": "none"}],
    "soft_sharing": [{}],
    "cross_stitch": [{"alpha_self": 0.6}],
    "mmoe": [{"n_experts": 3}, {"n_experts": 2, "expert_hidden": [7, 5]}],
    "ple": [{"levels": 1}, {"levels": 3, "n_task_experts": 2}],
    "hierarchical": [{"detach": True}, {"detach": False}],
}
CASES = [(a, s, o) for a in ARCHS for s in STAGES for o in VARIANTS[a]]
#: the predictor's input scaling: none, x * a + b, x * a + b then a clip that binds
SCALINGS = ["none", "scale", "scale+clip"]


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


def scaling(
    kind: str, n_features: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, float | None]:
    rng = np.random.default_rng(5)
    a = rng.uniform(0.2, 3.0, n_features).astype(np.float32)
    b = rng.normal(0.0, 1.0, n_features).astype(np.float32)
    return (None if kind == "none" else (a, b)), (1.5 if kind == "scale+clip" else None)


def torch_reference(model, x: np.ndarray, asset, scale, clip) -> dict[str, np.ndarray]:
    """What ``Predictor._predict_torch`` computes before the task transforms."""
    z = torch.from_numpy(x)
    if scale is not None:
        z = torch.addcmul(torch.from_numpy(scale[1]), z, torch.from_numpy(scale[0]))
    if clip is not None:
        z = z.clamp(-clip, clip)
    with torch.inference_mode():
        return {k: v.numpy() for k, v in model(z, asset).items()}


def compiled(model, scale=None, clip=None) -> kn.Kernel:
    prog = model.kernel_program(scale=scale, clip=clip)
    assert prog is not None, f"{type(model).__name__} has no kernel program"
    kernel = prog.compile()
    assert kernel is not None, "numba did not compile the kernel"
    return kernel


@pytest.mark.parametrize(("arch", "stage", "options"), CASES)
@pytest.mark.parametrize("how", SCALINGS)
@pytest.mark.parametrize("batch", [1, 7, 50])
def test_kernel_equals_torch(arch, stage, options, how, batch, kit):
    model = trained_like(kit.make(arch, stage, **options))
    scale, clip = scaling(how, kit.n_features)
    kernel = compiled(model, scale, clip)
    x, asset = kit.inputs(stage, batch=batch)
    x = 2.0 * x.numpy()  # past the clip for a good share of the values
    want = torch_reference(model, x, asset, scale, clip)
    got = kernel(x.copy(), None if asset is None else asset.numpy())
    assert list(got) == list(want) == model.task_names
    for name in want:
        assert got[name].shape == want[name].shape and got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_clip_binds_in_the_clipped_cases(kit):
    """Guard of the test above: the clipped inputs differ from the unclipped ones."""
    scale, clip = scaling("scale+clip", kit.n_features)
    x, _ = kit.inputs("plain", batch=7)
    z = 2.0 * x.numpy() * scale[0] + scale[1]
    assert (np.abs(z) > clip).mean() > 0.2


@pytest.mark.parametrize(("arch", "stage", "options"), CASES)
def test_kernel_equals_the_numpy_closures(arch, stage, options, kit):
    model = trained_like(kit.make(arch, stage, **options))
    scale, _ = scaling("scale", kit.n_features)
    x, asset = kit.inputs(stage, batch=9)
    ids = None if asset is None else asset.numpy()
    raw = x.numpy()
    got = compiled(model, scale)(raw.copy(), ids)
    want = model.numpy_forward(scale=scale)(raw.copy(), ids)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arch=st.sampled_from(ARCHS),
    stage=st.sampled_from(STAGES),
    batch=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_a_rows_outputs_do_not_depend_on_its_batch(arch, stage, batch, seed, data, kit):
    """Property: predicting a batch, each row alone and any split of the batch give the same
    bits (live per-bar and precomputed whole-frame predictions are identical)."""
    model = trained_like(kit.make(arch, stage, seed=seed % 7), seed=seed)
    kernel = compiled(model, *scaling("scale+clip", kit.n_features))
    x, asset = kit.inputs(stage, batch=batch, seed=seed)
    x = x.numpy() * np.float32(1 + seed % 5)
    ids = None if asset is None else asset.numpy()
    whole = kernel(x, ids)
    cut = data.draw(st.integers(0, batch), label="cut")
    parts = [
        kernel(x[s], None if ids is None else ids[s]) for s in (slice(0, cut), slice(cut, None))
    ]
    for name, value in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), value)
        for i in data.draw(st.lists(st.integers(0, batch - 1), max_size=4), label="rows"):
            one = kernel(x[i : i + 1], None if ids is None else ids[i : i + 1])
            np.testing.assert_array_equal(one[name], value[i : i + 1])


def test_asset_ids_are_checked(kit):
    model = trained_like(kit.make("shared_bottom", "asset"))
    kernel = compiled(model)
    x, _ = kit.inputs("asset", batch=3)
    with pytest.raises(ValueError, match="pass asset ids"):
        kernel(x.numpy(), None)
    with pytest.raises(ValueError, match="3 asset ids for a batch of 2"):
        kernel(x.numpy()[:2], np.array([0, 1, 2]))
    for bad in ([0, 1, 3], [0, -1, 1]):
        with pytest.raises(ValueError, match="asset ids must be in 0..2"):
            kernel(x.numpy(), np.array(bad))


def test_the_kernel_does_not_modify_its_input(kit):
    model = trained_like(kit.make("ple", "gru"))
    x, _ = kit.inputs("gru", batch=5)
    arr = x.numpy().copy()
    compiled(model, *scaling("scale+clip", kit.n_features))(arr)
    np.testing.assert_array_equal(arr, x.numpy())


def test_the_conv_program_computes_only_the_steps_the_last_output_needs(kit):
    """Lookback 16 needs 4 layers (dilations 1, 2, 4, 8); the last output reads the top layer
    at step 15, which reads steps 15, 7 below, then 15, 11, 7, 3, then the odd steps: 15 of
    the 64 layer steps, and still the torch output."""
    model = trained_like(kit.make("shared_bottom", "conv", lookback=16))
    ops, _ = model.kernel_program().tables()
    assert [int(n) for n in ops[ops[:, 0] == kn.CONV][:, 7]] == [8, 4, 2, 1]
    x = torch.randn(4, 16, kit.n_features, generator=torch.Generator().manual_seed(0))
    want = torch_reference(model, x.numpy(), None, None, None)
    got = compiled(model)(x.numpy())
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_ops_refuse_slots_that_do_not_fit():
    prog = kn.Program()
    x = prog.input(4)
    with pytest.raises(ValueError, match="width 4 where 3"):
        prog.affine(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="overlap"):
        prog.copy(x.sub(0, 2), x.sub(1, 2))


def test_no_kernel_env_var_disables_it(monkeypatch, kit):
    model = trained_like(kit.make("mmoe", "plain"))
    monkeypatch.setenv("MTL_BT_NO_KERNEL", "1")
    assert kn.runner() is None and model.kernel_program().compile() is None
    monkeypatch.setenv("MTL_BT_NO_KERNEL", "0")
    assert kn.runner() is not None


def test_without_numba_compile_returns_none(monkeypatch, kit):
    import sys

    monkeypatch.setattr(kn, "_RUNNER", [])
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    assert kn.runner() is None
    assert trained_like(kit.make("ple", "plain")).kernel_program().compile() is None


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_parallel_towers_equal_each_tower(norm):
    """``Program.parallel`` fuses the towers' first layers into one op; every tower's output
    still equals torch's (LayerNorm and BatchNorm after the fused layer included)."""
    from mtl_bt.models.layers import mlp

    torch.manual_seed(0)
    towers = [trained_like(mlp(5, [8, 6], dropout=0.1, norm=norm), seed=k) for k in range(3)]
    prog = kn.Program()
    x = prog.input(5)
    for k, z in enumerate(prog.parallel(towers, x)):
        prog.output(f"t{k}", z)
    ops, _ = prog.tables()
    assert (ops[:, 0] == kn.AFFINE).sum() == 1 + 3  # one fused first layer, then one each
    rows = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    got = prog.compile()(rows)
    with torch.inference_mode():
        for k, tower in enumerate(towers):
            want = tower(torch.from_numpy(rows)).numpy()
            np.testing.assert_allclose(got[f"t{k}"], want, rtol=1e-5, atol=1e-6)


def _task_cases():
    from mtl_bt import registry

    return [
        registry.get("task", "return")(1),
        registry.get("task", "direction")(1),
        registry.get("task", "volatility")(1),
        registry.get("task", "volatility")(1, loss="log_mse"),
        registry.get("task", "volume")(1),
    ]


@pytest.mark.parametrize("task", _task_cases(), ids=lambda t: f"{t.name}-{t.kernel_transform()}")
def test_compiled_transform_steps_equal_each_tasks_transform(task):
    """Every built-in task's ``kernel_transform`` run by the kernel equals its torch
    ``transform`` (float32), past the volatility clamp both ways; NaN stays NaN."""
    steps = task.kernel_transform()
    assert steps is not None
    probe = np.concatenate(
        [np.linspace(-40, 40, 401, dtype=np.float32), np.float32([-80, 80, np.nan])]
    )
    prog = kn.Program()
    prog.output(task.name, prog.input(1))
    prog.transform(task.name, steps)
    got = prog.compile().raw(probe[:, None].copy(), None)[0]
    want = task.transform(torch.from_numpy(probe.copy())).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0, equal_nan=True)
    assert np.isnan(got[-1])


def test_transforms_leave_the_raw_outputs_other_ops_read(kit):
    """hierarchical feeds raw lower-task outputs to higher heads: with transforms compiled
    in, every output is the transform of the torch model's raw output."""
    from mtl_bt.tasks import task_from_spec
    from mtl_bt.tasks.base import TaskSpec

    specs = [
        TaskSpec("volatility@5", "volatility", 5, level=0),
        TaskSpec("direction@1", "direction", 1, level=1),
        TaskSpec("return@1", "return", 1, level=2),
    ]
    model = trained_like(kit.make("hierarchical", specs=specs))
    assert any(model.inputs[n] for n in model.task_names)  # a raw output feeds a head
    tasks = {s.name: task_from_spec(s) for s in specs}
    prog = model.kernel_program()
    for name in model.task_names:
        prog.transform(name, tasks[name].kernel_transform())
    x = np.random.default_rng(1).standard_normal((9, kit.n_features)).astype(np.float32)
    got = prog.compile()(x)
    with torch.no_grad():
        raw = model(torch.from_numpy(x))
    for name in model.task_names:
        want = tasks[name].transform(raw[name]).numpy()
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_transform_step_outside_the_vocabulary_is_refused():
    prog = kn.Program()
    prog.output("t", prog.input(1))
    with pytest.raises(ValueError, match="unknown transform step"):
        prog.transform("t", [("softplus",)])
    with pytest.raises(ValueError, match="unknown transform step"):
        prog.transform("t", [("scale",)])  # its constant missing
    with pytest.raises(ValueError, match="no output"):
        prog.transform("u", [("exp",)])


@pytest.mark.parametrize(("arch", "stage", "options"), CASES, ids=str)
def test_multiply_adds_are_the_products_torch_runs(arch, stage, options, kit):
    """``Kernel.multiply_adds`` counts what torch's FLOP counter counts for the model (its
    matrix products, mixes and GRU steps). The causal conv runs only the taps the last
    output depends on that fall inside the sequence, where torch convolves every step of
    the zero-padded input: those are counted here by walking back from the last step."""
    from torch.utils.flop_counter import FlopCounterMode

    model = trained_like(kit.make(arch, stage, **options))
    batch = 7
    x, asset = kit.inputs(stage, batch=batch)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x, asset)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    want = (counter.get_total_flops() - flops.get("aten.convolution", 0)) / 2 / batch
    if stage == "conv":
        steps = x.shape[1]
        need = {steps - 1}  # steps of the current layer's output the next layer reads
        for conv in reversed(list(model.input_stage.encoder.convs)):
            c_out, c_in, k = conv.weight.shape
            d = conv.dilation[0]
            taps = [(t, t - j * d) for t in need for j in range(k) if t - j * d >= 0]
            want += len(taps) * c_in * c_out
            need = {s for _, s in taps}
    assert compiled(model).multiply_adds() == want
