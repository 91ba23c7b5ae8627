"""A trained model with its input stage, exported to ONNX and run by ONNX Runtime.

``InferenceGraph`` is the whole per-bar computation as one torch module: the saved
scaler (``x * a + b``), the clip, the model (sequence encoder, asset embedding,
architecture) and, optionally, the tasks' output transforms. The predictor's torch
path runs it as it is; ``export`` traces it once (``torch.onnx.export``, TorchScript
exporter) and ``Session`` runs the result in an ONNX Runtime session on one thread.
Any architecture whose ``forward`` traces exports, plugins included: nothing is
written per architecture. The exported bytes are cached in mtl-bt's cache folder, keyed
by the checkpoint's sha256 (``cache_key``), so a backtest does not export again.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: bump when the graph or its inputs change: cached exports of older versions are redone
EXPORT_VERSION = "1"
#: ONNX opset the exporter targets (ORT 1.2x supports it; every op used here is in it)
OPSET = 17
#: batches up to this many rows run on bound buffers (``Session.few``): a decision's assets
FEW = 16


class InferenceGraph(nn.Module):
    """Raw features -> predictions: scale, clip, model, then each task's transform.

    ``transforms[i]`` is task ``names[i]``'s transform (None: the raw output). The
    outputs are a tuple in ``names`` order (ONNX outputs are positional).
    """

    def __init__(
        self,
        model: nn.Module,
        a: np.ndarray,
        b: np.ndarray,
        clip: float | None,
        names: Sequence[str],
        transforms: Sequence[Callable[[torch.Tensor], torch.Tensor] | None],
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("a", torch.from_numpy(np.asarray(a, dtype=np.float32).copy()))
        self.register_buffer("b", torch.from_numpy(np.asarray(b, dtype=np.float32).copy()))
        self.clip = clip
        self.names = list(names)
        self.transforms = list(transforms)

    def forward(
        self, x: torch.Tensor, asset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        z = torch.addcmul(self.b, x, self.a)
        if self.clip is not None:
            z = z.clamp(-self.clip, self.clip)
        out = self.model(z, asset)
        return tuple(
            out[n] if f is None else f(out[n])
            for n, f in zip(self.names, self.transforms, strict=True)
        )


def export(graph: InferenceGraph, example: torch.Tensor, asset: torch.Tensor | None) -> bytes:
    """``graph`` as ONNX bytes, the batch dimension dynamic.

    The TorchScript exporter traces one call: Python control flow runs once, on the
    example's values (a data-dependent branch is frozen into the graph, which the
    predictor's probe check then catches). Raises whatever the exporter raises.
    """
    names = ["x"] + ([] if asset is None else ["asset"])
    outputs = [f"out{i}" for i in range(len(graph.names))]
    args: tuple[Any, ...] = (example,) if asset is None else (example, asset)
    buffer = io.BytesIO()
    # the exporter prints its whole IR graph to stderr when an op does not export (a
    # debugging dump, logged whatever the settings): the predictor's warning says why
    log, torch._C._jit_onnx_log = torch._C._jit_onnx_log, _quiet
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about the input checks
            torch.onnx.export(
                graph,
                args,
                buffer,
                input_names=names,
                output_names=outputs,
                dynamic_axes={n: {0: "batch"} for n in names + outputs},
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        torch._C._jit_onnx_log = log
    return buffer.getvalue()


def _quiet(*args: Any) -> None:
    return None


def check_export(
    model: nn.Module, x: torch.Tensor, asset: torch.Tensor | None = None
) -> dict[str, float]:
    """Export ``model`` (an ``MTLModel`` in eval mode) as the predictor does, run it in
    ONNX Runtime on ``x`` (and ``asset`` ids) and return each task's largest absolute
    difference from torch. For plugin authors' tests; raises what the exporter raises."""
    names = list(model.task_names)
    n = int(x.shape[-1])
    graph = InferenceGraph(
        model, np.ones(n, np.float32), np.zeros(n, np.float32), None, names, [None] * len(names)
    ).eval()
    example = torch.zeros((2, *x.shape[1:]))
    ids = None if asset is None else torch.zeros(2, dtype=torch.long)
    session = Session(export(graph, example, ids))
    got = session(x.numpy().astype(np.float32), None if asset is None else asset.numpy())
    with torch.inference_mode():
        want = graph(x, asset)
    return {
        name: float(np.max(np.abs(g - w.numpy()), initial=0.0))
        for name, g, w in zip(names, got, want, strict=True)
    }


class Session:
    """One ONNX Runtime session over an exported ``InferenceGraph``.

    One intra-op thread, sequential execution: a bar's handful of rows is far too
    little work to share, and a backtest runs beside other processes. A single row is
    run as a batch of two copies: ONNX Runtime's matrix products take another code path
    for one row (MLAS's M=1 kernels, reached through ``Einsum``/batched ``MatMul``), which
    rounds differently, so an MMoE row alone would differ in its last bits from the same
    row in a batch; from two rows on, a row's result does not depend on the batch.
    """

    def __init__(self, onnx: bytes) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: no warnings on stderr per session
        self.session = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self._outputs = outputs
        #: the buffers of ``one`` (two rows) and ``few`` (per batch size), bound on first
        #: use (False: outputs that cannot be bound ahead)
        self._bound: dict[int, tuple[Any, ...] | bool] = {}
        self._one_lock = threading.Lock()
        inner, options = getattr(self.session, "_sess", None), ort.RunOptions()
        self._options = options
        if callable(getattr(inner, "run", None)):
            # the binding ``InferenceSession.run`` wraps, called as it calls it: the wrapper's
            # checks of the feed cost about a third of a small model's call
            self._run: Callable[[dict[str, np.ndarray]], list[np.ndarray]] = lambda feed: inner.run(
                outputs, feed, options
            )
        else:  # pragma: no cover - an onnxruntime without the binding attribute
            self._run = lambda feed: self.session.run(None, feed)

    def __call__(self, x: np.ndarray, asset: np.ndarray | None) -> list[np.ndarray]:
        if len(x) == 1:  # one row runs as two: see the class docstring
            x = np.concatenate((x, x))
            asset = None if asset is None else np.concatenate((asset, asset))
            feed = {"x": x} if asset is None else {"x": x, "asset": asset}
            return [o[:1] for o in self._run(feed)]
        return self._run({"x": x} if asset is None else {"x": x, "asset": asset})

    def one(self, row: np.ndarray, asset: int | None) -> list[float]:
        """The outputs for one input row (float32, the model's row shape) as Python floats:
        the same bits as ``self(row[None], ...)`` (the same batch of two copies), run on
        input and output buffers bound to the session once (ONNX Runtime's IOBinding), so
        a call allocates no arrays and builds no feed: about a third of the time of the
        general call on a small model. One call at a time: a call that finds the buffers
        in use (another thread) takes the general path."""
        bound = self._buffers(2, row.shape, asset is not None)
        if not bound or not self._one_lock.acquire(blocking=False):
            ids = None if asset is None else np.array([asset], dtype=np.int64)
            return [float(o[0]) for o in self(row[None], ids)]
        try:
            x, ids, outs, run = bound
            x[0] = row
            x[1] = row
            if ids is not None:
                ids[0] = ids[1] = asset
            run()
            return [float(o[0]) for o in outs]
        finally:
            self._one_lock.release()

    def few(self, x: np.ndarray, asset: np.ndarray | None) -> np.ndarray:
        """``self(x, asset)`` for a batch of 2 to ``FEW`` rows as one ``(rows, outputs)``
        float64 matrix, run on buffers bound once per batch size (as ``one``): the same
        bits as the general call's outputs side by side."""
        n = len(x)
        bound = self._buffers(n, x.shape[1:], asset is not None) if 2 <= n <= FEW else False
        if not bound or not self._one_lock.acquire(blocking=False):
            return np.column_stack([o.astype(np.float64) for o in self(x, asset)])
        try:
            xb, ids, outs, run = bound
            xb[...] = x
            if ids is not None:
                ids[...] = asset
            run()
            m = np.empty((n, len(outs)), dtype=np.float64)
            for j, o in enumerate(outs):
                m[:, j] = o
            return m
        finally:
            self._one_lock.release()

    def _buffers(self, n: int, shape: tuple[int, ...], with_ids: bool) -> Any:
        """The bound buffers of a batch of ``n`` rows of ``shape`` (bound on first use)."""
        bound = self._bound.get(n)
        if bound is None or (bound and bound[0].shape[1:] != shape):
            bound = self._bound[n] = self._bind(n, shape, with_ids)
        return bound

    def _bind(self, n: int, shape: tuple[int, ...], with_ids: bool) -> tuple[Any, ...] | bool:
        """Buffers for a batch of ``n`` rows, and a call that runs the session on them; False
        when an output is not one float per row (it could not be bound ahead)."""
        metas = self.session.get_outputs()
        kinds = {"tensor(float)": np.float32, "tensor(double)": np.float64}
        if any(len(m.shape) != 1 or m.type not in kinds for m in metas):
            return False
        x = np.zeros((n, *shape), dtype=np.float32)
        ids = np.zeros(n, dtype=np.int64) if with_ids else None
        binding = self.session.io_binding()
        binding.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
        if ids is not None:
            binding.bind_input("asset", "cpu", 0, np.int64, [n], ids.ctypes.data)
        outs = []
        for name, meta in zip(self._outputs, metas, strict=True):
            dtype = kinds[meta.type]
            out = np.zeros(n, dtype=dtype)
            binding.bind_output(name, "cpu", 0, dtype, [n], out.ctypes.data)
            outs.append(out)
        inner = getattr(self.session, "_sess", None)
        if callable(getattr(inner, "run_with_iobinding", None)):
            raw, options = binding._iobinding, self._options

            def run() -> None:
                inner.run_with_iobinding(raw, options)
        else:  # pragma: no cover - an onnxruntime without the binding attribute
            options = self._options

            def run() -> None:
                self.session.run_with_iobinding(binding, options)

        return x, ids, outs, run


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(checkpoint_sha256: str, variant: str) -> str:
    """The name a cached export goes by: a hash of the checkpoint's sha256, what was
    exported (``variant``: with or without the transforms), the exporter and this module."""
    key = f"{checkpoint_sha256}:{variant}:{EXPORT_VERSION}:{OPSET}:torch {torch.__version__}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def cache_path(key: str) -> Path:
    """Where an export is cached: mtl-bt's cache folder (``$MTL_BT_CACHE_DIR`` or the
    user cache dir), ``onnx/<key>.onnx``. Not beside the checkpoint: a run folder's
    manifest lists every file it holds, and reading a run (a backtest, a paper start)
    must not change it; nor does a read-only run folder need a fallback."""
    from mtl_bt.data.cache import cache_dir

    return cache_dir() / "onnx" / f"{key}.onnx"


def read_cached(path: Path) -> bytes | None:
    """The cached export at ``path`` (None: none, or unreadable)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def write_cached(path: Path, onnx: bytes) -> bool:
    """Write ``onnx`` to ``path`` atomically; False when it cannot be written (the export
    then lives in memory only: correct, exported again next time)."""
    from mtl_bt.atomic import write_bytes

    try:
        write_bytes(path, onnx)
    except OSError:
        return False
    return True
