"""Per-call cost of ``Predictor.predict`` for every built-in architecture: kernel vs
numpy vs torch.

The demo's model shape (24 features, hidden [32, 16], four tasks, a 4-wide asset
embedding over 5 assets) is built for each architecture, saved as a real
checkpoint and loaded back through ``Predictor.from_checkpoint`` three times: with
the compiled kernel (the default, ``mtl_bt.models.kernel``), with the numpy
closures (``MTL_BT_NO_KERNEL=1``) and with ``MTL_BT_TORCH_INFERENCE=1``.
Weights are random (cost does not depend on their values; equality with torch is
tested in ``tests/models/test_kernel.py`` and ``test_numpy_forward.py`` and checked
here on the rows timed). The paths are timed in alternating blocks in one process;
the reported number is the median block.
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
#: (label, extra model options): the plain input stage and the two sequence encoders
STAGES = [
    ("asset embedding", {"asset_embedding": 4}),
    ("gru lookback 16", {"encoder": "gru", "encoder_hidden": 16, "lookback": 16}),
    ("conv lookback 16", {"encoder": "conv", "encoder_hidden": 16, "lookback": 16}),
]
ROWS = (1, 5, 50)
GOAL_US = 25.0
N_FEATURES = 24


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
    """``Predictor(ckpt)`` loaded with ``env`` set (each path picks itself at load)."""
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


def measure(
    base: Any, calls: int = 400, blocks: int = 7, log: Callable[[str], None] = print
) -> list[dict]:
    rows_out = []
    if True:
        for stage, options in STAGES:
            for arch in ARCHITECTURES:
                ckpt = _checkpoint(base, arch, options)
                paths = {
                    "kernel": _load(ckpt, {}),
                    "numpy": _load(ckpt, {"MTL_BT_NO_KERNEL": "1"}),
                    "torch": _load(ckpt, {"MTL_BT_TORCH_INFERENCE": "1"}),
                }
                for name, p in paths.items():
                    assert p.backend == name, (name, p.backend)
                slow, fast = paths["torch"], paths["kernel"]
                row: dict[str, Any] = {"architecture": arch, "input stage": stage}
                worst = 0.0
                for n in ROWS:
                    rng = np.random.default_rng(n)
                    z = rng.standard_normal((n, *fast._shape))  # scaled features ~ N(0, 1)
                    x = ((z - fast._b_np) / fast._a_np).astype(np.float32)
                    ids = np.arange(n) % len(base.symbols) if fast._uses_asset() else None
                    want = slow.predict(x, ids)
                    for name in ("kernel", "numpy"):
                        got = paths[name].predict(x, ids)
                        for t in want:
                            worst = max(worst, float(np.max(np.abs(got[t] - want[t]))))
                    per: dict[str, list[float]] = {name: [] for name in paths}
                    for _ in range(blocks):  # alternate the paths block by block
                        for name, p in paths.items():
                            per[name].append(_timer(lambda p=p, x=x, i=ids: p.predict(x, i), calls))
                    for name in paths:
                        row[f"{name} {n} rows us"] = statistics.median(per[name])
                row["max abs diff"] = worst
                row["multiply-adds per row"] = fast._kernel.multiply_adds()
                row["worst kernel us"] = max(row[f"kernel {n} rows us"] for n in ROWS)
                row["worst numpy us"] = max(row[f"numpy {n} rows us"] for n in ROWS)
                log(
                    f"  inference {arch:<14} {stage:<17} "
                    + ", ".join(
                        f"{name} " + " / ".join(f"{row[f'{name} {n} rows us']:.1f}" for n in ROWS)
                        for name in paths
                    )
                    + f" us (1/5/50 rows), max |diff| {worst:.1e}"
                )
                rows_out.append(row)
    return rows_out


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    from benchmarks.common import set_threads
    from mtl_bt.models.numpy_forward import blas_threads

    set_threads()
    # as during a backtest (MTLStrategy's blas_threads=1): OpenBLAS threads only slow
    # products this small down, by up to 10x on a loaded machine
    restore_blas = blas_threads(1)
    try:
        return _run(quick, log)
    finally:
        restore_blas()


def _run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from benchmarks.bench_backtest import train_model

    calls, blocks = (100, 3) if quick else (400, 7)
    with tempfile.TemporaryDirectory() as tmp:
        predictor, info = train_model(tmp, bars=1500, epochs=1)
    base = predictor.checkpoint
    info = {
        "features": len(base.feature_columns),
        "tasks": list(base.task_names),
        "hidden": list(base.init_kwargs.get("hidden", [])),
        "assets": len(base.symbols),
    }
    rows = measure(base, calls, blocks, log=log)
    return {
        "goal_us": GOAL_US,
        "model": info,
        "numpy_op_us": numpy_op_us(),
        "matmul_peak_gmacs": matmul_peak_gmacs(),
        "rows": rows,
    }


def matmul_peak_gmacs(n: int = 1024, repeats: int = 5) -> float:
    """Billions of float32 multiply-adds a second in one large ``n x n`` product on one
    BLAS thread (the best of ``repeats``): what this core sustains at best, so
    ``rows x multiply-adds per row / peak`` is a floor no forward pass can beat."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    best = min(_timer(lambda: a @ a, 1) for _ in range(repeats))
    return n**3 / best / 1e3


def numpy_op_us(calls: int = 5000) -> float:
    """Microseconds of one tiny numpy call (``a + a`` on 5 x 32 float32) on this machine
    now: the unit a forward pass of a few dozen such calls is made of (a loaded machine
    inflates it)."""
    a = np.ones((5, 32), np.float32)
    return statistics.median(_timer(lambda: a + a, calls) for _ in range(7))


if __name__ == "__main__":
    run()
