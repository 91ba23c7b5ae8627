"""Per-call cost of ``Predictor.predict`` for every built-in architecture and a plugin
architecture: ONNX Runtime (the default) vs torch.

The demo's model shape (24 features, hidden [32, 16], four tasks, a 4-wide asset
embedding over 5 assets) is built for each architecture, put in a real checkpoint and
loaded through ``Predictor`` twice: as it loads by default (the model exported to ONNX,
run by ONNX Runtime) and with ``MTL_BT_TORCH_INFERENCE=1``. ``PluginNet`` stands for a
third-party architecture: defined here only, nothing but torch. Weights are random
(cost does not depend on their values; equality with torch is tested in
``tests/models/test_onnx_export.py`` and checked here on the rows timed). The paths are
timed in alternating blocks in one process; the reported number is the median block.
``frame`` times one whole-frame chunk (``predict_frame``'s 8192 rows) on both paths.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ARCHITECTURES = ["shared_bottom", "soft_sharing", "cross_stitch", "mmoe", "ple", "hierarchical"]
#: registered for the run only: a plugin architecture with no per-architecture code
PLUGIN = "plugin_net"
#: (label, extra model options): the plain input stage and the two sequence encoders
STAGES = [
    ("asset embedding", {"asset_embedding": 4}),
    ("gru lookback 16", {"encoder": "gru", "encoder_hidden": 16, "lookback": 16}),
    ("conv lookback 16", {"encoder": "conv", "encoder_hidden": 16, "lookback": 16}),
]
ROWS = (1, 5, 50)
FRAME_ROWS = 8192
PATHS = ("onnxruntime", "torch")
N_FEATURES = 24


def _plugin_class() -> Any:
    import torch
    from torch import nn

    from mtl_bt.models import MTLModel

    class PluginNet(MTLModel):
        """Shared-bottom-sized: gated GELU body with a LayerNorm, one linear head a task."""

        architecture = PLUGIN

        def __init__(self, in_features: int, tasks: Any, **common: Any) -> None:
            super().__init__(in_features, tasks, **common)
            widths = [self.stage_features, *self.hidden]
            layers: list[nn.Module] = []
            for a, b in zip(widths, widths[1:], strict=False):
                layers += [nn.Linear(a, b), nn.GELU(), nn.LayerNorm(b)]
            self.body = nn.Sequential(*layers)
            self.gate = nn.Linear(self.stage_features, widths[-1])
            self.heads = nn.ModuleDict({t.name: nn.Linear(widths[-1], 1) for t in self.tasks})

        def predict(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
            z = self.body(h) * torch.sigmoid(self.gate(h))
            return {n: self._out(head(z)) for n, head in self.heads.items()}

        def task_modules(self, name: str) -> list[nn.Module]:
            return [self.heads[name]]

    return PluginNet


class _Register:
    def __init__(self) -> None:
        from mtl_bt import hookimpl

        cls = _plugin_class()

        class Hooks:
            @hookimpl
            def register_architectures(self, register: Any) -> None:
                register(PLUGIN, cls, "benchmark stand-in for a third-party architecture")

        self.hooks = Hooks()

    def __enter__(self) -> None:
        from mtl_bt import registry

        registry.register_plugin(self.hooks, "bench_plugin_net")

    def __exit__(self, *exc: object) -> None:
        from mtl_bt import registry

        registry.unregister_plugin("bench_plugin_net")


def _checkpoint(base: Any, arch: str, options: dict[str, Any]) -> Any:
    """``base`` (a real trained checkpoint) with ``arch``'s model in place of its own."""
    import dataclasses

    import torch

    from mtl_bt import registry

    torch.manual_seed(0)
    opts = {**base.init_kwargs}
    tasks, in_features = opts.pop("tasks"), opts.pop("in_features")
    keep = {"hidden", "dropout", "n_assets", "asset_embedding"}
    opts = {k: v for k, v in opts.items() if k in keep} | {
        "asset_embedding": 0,
        "n_assets": len(base.symbols),
        **options,
    }
    model = registry.get("architecture", arch)(in_features, tasks, **opts).eval()
    return dataclasses.replace(
        base,
        state_dict=model.state_dict(),
        architecture=arch,
        init_kwargs=model.init_kwargs,
        lookback=int(options.get("lookback") or 1),
        path=None,
    )


def _load(ckpt: Any, env: dict[str, str]) -> Any:
    """``Predictor(ckpt)`` loaded with ``env`` set (the path is picked at load)."""
    from mtl_bt.predictor import Predictor

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Predictor(ckpt)
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def _timer(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _inputs(p: Any, n: int, n_assets: int) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(n)
    z = rng.standard_normal((n, *p._shape))  # scaled features ~ N(0, 1)
    x = ((z - p._b_np) / p._a_np).astype(np.float32)
    ids = np.arange(n) % n_assets if p._uses_asset() else None
    return x, ids


def measure(
    base: Any,
    calls: int = 400,
    blocks: int = 7,
    frame_calls: int = 3,
    log: Callable[[str], None] = print,
) -> list[dict]:
    rows_out = []
    with _Register():
        for stage, options in STAGES:
            for arch in [*ARCHITECTURES, PLUGIN]:
                ckpt = _checkpoint(base, arch, options)
                t0 = time.perf_counter()
                fast = _load(ckpt, {})
                load_s = time.perf_counter() - t0
                paths = {"onnxruntime": fast, "torch": _load(ckpt, {"MTL_BT_TORCH_INFERENCE": "1"})}
                for name, p in paths.items():
                    assert p.backend == name, (name, p.backend, p.backend_reason)
                row: dict[str, Any] = {
                    "architecture": arch,
                    "input stage": stage,
                    "load s": load_s,
                }
                worst = 0.0
                for n in ROWS:
                    x, ids = _inputs(fast, n, len(base.symbols))
                    want, got = paths["torch"].predict(x, ids), fast.predict(x, ids)
                    for t in want:
                        worst = max(worst, float(np.max(np.abs(got[t] - want[t]))))
                    per: dict[str, list[float]] = {name: [] for name in paths}
                    for _ in range(blocks):  # alternate the paths block by block
                        for name, p in paths.items():
                            per[name].append(_timer(lambda p=p, x=x, i=ids: p.predict(x, i), calls))
                    for name in paths:
                        row[f"{name} {n} rows us"] = statistics.median(per[name])
                x, ids = _inputs(fast, FRAME_ROWS, len(base.symbols))
                for name, p in paths.items():
                    per_call = [
                        _timer(lambda p=p, x=x, i=ids: p.predict(x, i), 1)
                        for _ in range(frame_calls)
                    ]
                    row[f"{name} frame ms"] = statistics.median(per_call) / 1e3
                row["max abs diff"] = worst
                log(
                    f"  inference {arch:<14} {stage:<17} "
                    + ", ".join(
                        f"{name} " + " / ".join(f"{row[f'{name} {n} rows us']:.1f}" for n in ROWS)
                        for name in paths
                    )
                    + f" us (1/5/50 rows); {FRAME_ROWS} rows "
                    + " / ".join(f"{row[f'{name} frame ms']:.1f}" for name in paths)
                    + f" ms; max |diff| {worst:.1e}"
                )
                rows_out.append(row)
    return rows_out


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    from benchmarks.common import set_threads
    from mtl_bt.threads import blas_threads

    set_threads()
    # as during a backtest (MTLStrategy's blas_threads=1)
    restore_blas = blas_threads(1)
    try:
        return _run(quick, log)
    finally:
        restore_blas()


def _run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from benchmarks.bench_backtest import train_model
    from benchmarks.common import loadavg

    calls, blocks, frame_calls = (100, 3, 1) if quick else (400, 7, 3)
    with tempfile.TemporaryDirectory() as tmp:
        predictor, info = train_model(tmp, bars=1500, epochs=1)
    base = predictor.checkpoint
    info = {
        "features": len(base.feature_columns),
        "tasks": list(base.task_names),
        "hidden": list(base.init_kwargs.get("hidden", [])),
        "assets": len(base.symbols),
    }
    load = [loadavg()]
    rows = measure(base, calls, blocks, frame_calls, log=log)
    load.append(loadavg())
    return {
        "model": info,
        "frame_rows": FRAME_ROWS,
        "rows": rows,
        "load_average": load,
        "cores": os.cpu_count(),
        "calls_blocks": [calls, blocks],
    }


if __name__ == "__main__":
    run()
