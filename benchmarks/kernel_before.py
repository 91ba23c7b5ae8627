"""Re-measure docs/benchmarks.md's "kernel before" table (issue 27): the removed numba
kernel vs ONNX Runtime (as main runs it now) vs torch, per call, in one process.

It cannot run on main (the kernel is gone): run it with the interpreter of a checkout of
commit f270134 that has its own environment (``make install`` there), from anywhere,
naming main's checkout (read with ``git show``, nothing written to it):

    nice -n 19 <f270134 checkout>/.venv/bin/python benchmarks/kernel_before.py \
        --main . --out benchmarks/kernel_before.json [--calls 300 --blocks 5]

What each column is:
- "kernel": f270134's ``Predictor.predict`` with the compiled numba kernel (its default
  backend; asserted ``backend == "kernel"`` with a compiled program).
- "ort": main's ``Predictor`` (``mtl_bt/predictor.py`` and ``mtl_bt/models/onnx_runtime.py``
  read from main's git HEAD, ``git show``, and run as standalone modules inside f270134's
  package: nothing is written to either checkout), which exports the same model with its
  input stage (scaler ``a, b``, clip) and the tasks' transforms inside the ONNX graph and
  checks it against torch at load, as main does. Timed through the calls main's live
  path makes (``mtl_bt/indicators/engine.py`` ``predict_rows``): 1 row ``predict_row``
  (-> ``Session.one``), 5 rows ``predict_matrix`` (-> ``Session.few``), 50 rows
  ``predict`` (-> ``Session.__call__`` and the float64 conversion per task). Which
  Session entry each call really reached is observed once per model and recorded.
- "torch": f270134's ``Predictor`` loaded with ``MTL_BT_TORCH_INFERENCE=1`` (one batched
  forward under ``torch.inference_mode``), torch on 1 thread.

The models are benchmarks.bench_inference's at f270134: the 6 built-in architectures x
3 input stages, built from one really trained checkpoint (``train_model``, 1500 bars,
1 epoch), random weights at seed 0. Per model and row count, the three backends are
timed in alternating blocks (``--calls`` calls a block, ``--blocks`` blocks, the
backends interleaved block by block); each figure is the median block's per-call
microseconds. Agreement: every row timed is also compared with torch (largest absolute
difference over the tasks and the 1/5/50-row inputs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BEFORE = Path(__file__).resolve().parent.parent / "wt" / "before"
MAIN_FILES = {
    "mtl_bt.models.onnx_runtime": "mtl_bt/models/onnx_runtime.py",
    "mtl_bt_main_predictor": "mtl_bt/predictor.py",
}
ROWS = (1, 5, 50)
BACKENDS = ("kernel", "ort", "torch")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _main_modules(main: Path, rev: str) -> tuple[str, Any]:
    """Main's ``onnx_runtime`` and ``predictor`` at ``rev``, loaded as modules beside f270134's
    ``mtl_bt`` (the runtime under its own name, which main's predictor imports lazily).
    Returns (commit, main's Predictor class)."""
    import mtl_bt.models

    sha = _git(main, "rev-parse", rev).strip()
    mods = {}
    for name, path in MAIN_FILES.items():
        src = _git(main, "show", f"{sha}:{path}")
        mod = types.ModuleType(name)
        mod.__file__ = f"{main}@{sha[:7]}:{path}"
        sys.modules[name] = mod
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - main's own code
        mods[name] = mod
    mtl_bt.models.onnx_runtime = mods["mtl_bt.models.onnx_runtime"]  # type: ignore[attr-defined]
    return sha, mods["mtl_bt_main_predictor"].Predictor


def _load(cls: Any, ckpt: Any, torch_only: bool) -> Any:
    """``cls(ckpt)`` with ``MTL_BT_TORCH_INFERENCE`` set or not and ``MTL_BT_NO_KERNEL`` unset."""
    keys = ("MTL_BT_TORCH_INFERENCE", "MTL_BT_NO_KERNEL")
    saved = {k: os.environ.pop(k, None) for k in keys}
    if torch_only:
        os.environ["MTL_BT_TORCH_INFERENCE"] = "1"
    try:
        return cls(ckpt)
    finally:
        for k in keys:
            os.environ.pop(k, None)
            if saved[k] is not None:
                os.environ[k] = saved[k]


def _timer(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _ort_call(p: Any, n: int, x: np.ndarray, ids: np.ndarray | None) -> Callable[[], Any]:
    """The call main's live path makes for ``n`` rows (engine.predict_rows)."""
    if n == 1:
        x0, a0 = x[0], None if ids is None else int(ids[0])
        return lambda: p.predict_row(x0, a0)
    if n <= 16:
        return lambda: p.predict_matrix(x, ids)
    return lambda: p.predict(x, ids)


def _as_matrix(out: Any, names: list[str]) -> np.ndarray:
    """Any backend's result as a float64 (rows, tasks) matrix in ``names`` order."""
    if isinstance(out, dict):
        return np.column_stack([np.asarray(out[t], dtype=np.float64) for t in names])
    m = np.asarray(out, dtype=np.float64)
    return m[None] if m.ndim == 1 else m


def _sessions_reached(rt: Any, fn: Callable[[], Any]) -> str:
    """Which ``Session`` entry points ``fn`` reaches first (counted by wrapping the class's
    methods for this one call, then restored)."""
    hits: list[str] = []
    originals = {name: getattr(rt.Session, name) for name in ("one", "few", "__call__")}

    def wrap(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def counted(self: Any, *a: Any, **k: Any) -> Any:
            hits.append(name)
            return f(self, *a, **k)

        return counted

    try:
        for name, f in originals.items():
            setattr(rt.Session, name, wrap(name, f))
        fn()
    finally:
        for name, f in originals.items():
            setattr(rt.Session, name, f)
    first = hits[0] if hits else "none"
    label = f"Session.{first}"
    if len(hits) > 1:
        label += f" (+{len(hits) - 1} more Session calls)"
    return label


def measure(base: Any, main_predictor: Any, calls: int, blocks: int) -> list[dict[str, Any]]:
    import mtl_bt.models.onnx_runtime as rt
    from benchmarks.bench_inference import ARCHITECTURES, STAGES, _checkpoint
    from mtl_bt.predictor import Predictor

    n_assets = len(base.symbols)
    out = []
    for stage, options in STAGES:
        for arch in ARCHITECTURES:
            ckpt = _checkpoint(base, arch, options)
            kern = _load(Predictor, ckpt, torch_only=False)
            slow = _load(Predictor, ckpt, torch_only=True)
            ort = _load(main_predictor, ckpt, torch_only=False)
            assert kern.backend == "kernel" and kern._kernel is not None, (arch, kern.backend)
            assert slow.backend == "torch", (arch, slow.backend)
            assert ort.backend == "onnxruntime", (arch, ort.backend, ort.backend_reason)
            assert not ort._transform_after, (arch, "transforms did not go inside the graph")
            names = list(kern.task_names)
            assert list(ort.task_names) == names == list(slow.task_names)
            row: dict[str, Any] = {"architecture": arch, "input stage": stage}
            worst = {"kernel": 0.0, "ort": 0.0}
            paths = []
            per_n: dict[int, dict[str, float]] = {}
            for n in ROWS:
                rng = np.random.default_rng(n)
                z = rng.standard_normal((n, *kern._shape))  # scaled features ~ N(0, 1)
                x = ((z - kern._b_np) / kern._a_np).astype(np.float32)
                ids = np.arange(n, dtype=np.int64) % n_assets if kern._uses_asset() else None
                fns = {
                    "kernel": lambda p=kern, x=x, i=ids: p.predict(x, i),
                    "ort": _ort_call(ort, n, x, ids),
                    "torch": lambda p=slow, x=x, i=ids: p.predict(x, i),
                }
                want = _as_matrix(fns["torch"](), names)
                for name in ("kernel", "ort"):
                    got = _as_matrix(fns[name](), names)
                    assert got.shape == want.shape, (arch, stage, n, name, got.shape)
                    worst[name] = max(worst[name], float(np.max(np.abs(got - want))))
                paths.append(f"{n}: {_sessions_reached(rt, fns['ort'])}")
                times: dict[str, list[float]] = {b: [] for b in BACKENDS}
                for _ in range(blocks):  # the backends interleaved block by block
                    for b in BACKENDS:
                        times[b].append(_timer(fns[b], calls))
                per_n[n] = {b: statistics.median(v) for b, v in times.items()}
            for n in ROWS:
                for b in BACKENDS:
                    row[f"{b} {n} rows us"] = round(per_n[n][b], 1)
            row["batch invariant"] = not ort._row_by_row
            row["kernel max abs diff"] = worst["kernel"]
            row["ort max abs diff"] = worst["ort"]
            row["ort path"] = "; ".join(paths)
            print(
                f"{arch:<14} {stage:<17} "
                + ", ".join(
                    f"{b} " + " / ".join(f"{row[f'{b} {n} rows us']:.1f}" for n in ROWS)
                    for b in BACKENDS
                )
                + f" us (1/5/50 rows); |diff| kernel {worst['kernel']:.1e} ort {worst['ort']:.1e}"
                + f"; batch invariant {row['batch invariant']}; {row['ort path']}",
                flush=True,
            )
            out.append(row)
    return out


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="where the JSON goes")
    ap.add_argument("--calls", type=int, default=300, help="calls per timed block")
    ap.add_argument("--blocks", type=int, default=5, help="alternating blocks per backend")
    ap.add_argument(
        "--main", type=Path, default=Path(__file__).resolve().parents[1], help="main's checkout"
    )
    ap.add_argument("--main-rev", default="HEAD", help="main's commit to take the ORT path from")
    args = ap.parse_args()

    nice = os.nice(0)
    command = shlex.join([sys.executable, *sys.argv])
    if nice:
        command = f"nice -n {nice} {command}"
    load0 = os.getloadavg()
    t0 = dt.datetime.now(dt.UTC)
    before_sha = _git(BEFORE, "rev-parse", "HEAD").strip()
    dirty = _git(BEFORE, "status", "--porcelain", "--untracked-files=no").strip()
    if dirty:
        sys.exit(f"{BEFORE} has changes to tracked files: measure f270134 as committed")
    sys.path.insert(0, str(BEFORE))  # f270134's benchmarks package

    import numba
    import onnxruntime
    import torch

    import mtl_bt
    from benchmarks.common import set_threads
    from mtl_bt.models.numpy_forward import blas_threads

    if not Path(mtl_bt.__file__).resolve().is_relative_to(BEFORE):
        sys.exit(f"mtl_bt comes from {mtl_bt.__file__}: run with {BEFORE}/.venv/bin/python")
    main_sha, main_predictor = _main_modules(args.main, args.main_rev)
    threads = set_threads(1)
    restore_blas = blas_threads(1)  # as f270134's bench and a backtest did
    try:
        from benchmarks.bench_backtest import train_model

        with tempfile.TemporaryDirectory() as tmp:
            predictor, _ = train_model(tmp, bars=1500, epochs=1)
        rows = measure(predictor.checkpoint, main_predictor, args.calls, args.blocks)
    finally:
        restore_blas()
    t1 = dt.datetime.now(dt.UTC)
    load1 = os.getloadavg()
    doc = {
        "measured": (
            f"{t0:%Y-%m-%d %H:%M}-{t1:%H:%M} UTC, one process: kernel and torch are "
            f"commit {before_sha[:7]}'s Predictor, ORT is main {main_sha[:7]}'s Predictor and "
            f"onnx_runtime.py (live calls: 1 row predict_row, 5 predict_matrix, 50 predict); "
            f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__} on "
            f"{threads} thread, numba {numba.__version__}; {args.calls} calls x {args.blocks} "
            f"alternating blocks, median block"
        ),
        "command": command,
        "load": (
            f"load average (1/5/15 min) {' '.join(f'{v:.2f}' for v in load0)} at the start, "
            f"{' '.join(f'{v:.2f}' for v in load1)} at the end, on {os.cpu_count()} cores"
        ),
        "rows": rows,
    }
    _write(args.out, doc)
    print(f"wrote {args.out} ({(t1 - t0).total_seconds():.0f} s)")


if __name__ == "__main__":
    main()
