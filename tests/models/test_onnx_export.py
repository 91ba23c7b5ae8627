"""Every built-in architecture, input stage and layer-changing option exports to ONNX
(with the scaler, clip and the tasks' transforms, as the predictor exports it) and
ONNX Runtime equals torch; a row's outputs do not depend on the batch it came in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_bt.models import onnx_runtime as rt
from mtl_bt.tasks import task_from_spec

ARCHS = ["shared_bottom", "soft_sharing", "cross_stitch", "mmoe", "ple", "hierarchical"]
STAGES = ["plain", "asset", "gru", "conv"]
#: options that change the layers of the exported graph
VARIANTS = {
    "shared_bottom": [{"norm": "layer"}, {"norm": "batch"}],
    "soft_sharing": [{}],
    "cross_stitch": [{"alpha_self": 0.6}],
    "mmoe": [{"n_experts": 3}],
    "ple": [{"levels": 1}, {"levels": 3, "n_task_experts": 2}],
    "hierarchical": [{"detach": True}],
}
CASES = [(a, s, o) for a in ARCHS for s in STAGES for o in VARIANTS[a]]


def trained_like(model, seed: int = 3):
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


def graph_of(model, kit, clip=3.0):
    """The predictor's graph: a per-column scaler, a clip, the tasks' transforms."""
    rng = np.random.default_rng(5)
    a = rng.uniform(0.5, 2.0, kit.n_features).astype(np.float32)
    b = rng.uniform(-1.0, 1.0, kit.n_features).astype(np.float32)
    tasks = [task_from_spec(s) for s in kit.specs]
    return rt.InferenceGraph(model, a, b, clip, kit.names, [t.transform for t in tasks]).eval()


def session_of(graph, kit, stage):
    x, asset = kit.inputs(stage, batch=2)
    return rt.Session(rt.export(graph, torch.zeros_like(x), None if asset is None else asset))


@pytest.mark.parametrize(("arch", "stage", "options"), CASES)
def test_onnx_runtime_equals_torch_and_rows_do_not_depend_on_the_batch(arch, stage, options, kit):
    graph = graph_of(trained_like(kit.make(arch, stage, **options)), kit)
    session = session_of(graph, kit, stage)
    x, asset = kit.inputs(stage, batch=50)
    x = 2.0 * x  # past the clip now and then
    ids = None if asset is None else asset.numpy()
    with torch.inference_mode():
        want = [w.numpy() for w in graph(x, asset)]
    whole = session(x.numpy(), ids)
    for name, g, w in zip(kit.names, whole, want, strict=True):
        assert g.shape == w.shape and g.dtype == np.float32, name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)
    for lo, hi in [(0, 1), (7, 8), (49, 50), (0, 2), (3, 10)]:
        part = session(x.numpy()[lo:hi], None if ids is None else ids[lo:hi])
        for name, p, g in zip(kit.names, part, whole, strict=True):
            np.testing.assert_array_equal(p, g[lo:hi], err_msg=f"{name} rows {lo}:{hi}")


def test_a_single_row_runs_as_two_so_it_rounds_as_in_a_batch(kit):
    """MMoE's experts are an Einsum, which ONNX Runtime computes through another kernel
    for one row: without the padding, a row alone differs in its last bits."""
    graph = graph_of(trained_like(kit.make("mmoe", "plain", n_experts=3)), kit, clip=None)
    session = session_of(graph, kit, "plain")
    x, _ = kit.inputs("plain", batch=50)
    x = x.numpy()
    whole = session(x, None)
    run = session._run
    alone = [run({"x": x[i : i + 1]}) for i in range(50)]
    differs = sum(
        not np.array_equal(a[k], whole[k][i : i + 1])
        for i, a in enumerate(alone)
        for k in range(len(whole))
    )
    assert differs > 0  # the reason for the padding (if this fails, ORT changed)
    for i in range(50):
        for k, w in enumerate(whole):
            np.testing.assert_array_equal(session(x[i : i + 1], None)[k], w[i : i + 1])


def test_check_export_reports_the_difference_from_torch(kit):
    model = trained_like(kit.make("ple", "gru"))
    x, _ = kit.inputs("gru", batch=9)
    diff = rt.check_export(model, x)
    assert list(diff) == kit.names and max(diff.values()) < 1e-5
