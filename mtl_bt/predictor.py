"""Inference from a checkpoint: per bar (Backtrader) and vectorised (whole frames).

``predict`` is called every bar with one row per asset, so it stays off pandas and off
torch's eager dispatch: when the checkpoint loads, the model with its input stage (the
saved scaler, the clip, the sequence encoder, the asset embedding) and the tasks' output
transforms is exported to ONNX once (``mtl_bt.models.onnx_runtime``) and run by an ONNX
Runtime session on one thread. Nothing is written per architecture: a plugin's model
runs the same way. At load the session's outputs are checked against the torch model on
probe rows (``RTOL``/``ATOL``); a model that does not export, or whose export disagrees,
runs on torch, with one warning naming the architecture and the reason.

``Predictor.backend`` says which ("onnxruntime" or "torch"; ``backend_reason`` says why
torch). ``MTL_BT_TORCH_INFERENCE=1`` forces torch. The export is cached in mtl-bt's cache
folder (``onnx/<key>.onnx``, keyed by the checkpoint file's sha256), so a backtest or a
paper start does not export again.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtl_bt import checkpoint as ckpt_mod
from mtl_bt import registry
from mtl_bt.checkpoint import Checkpoint
from mtl_bt.errors import CheckpointError


def scaler_affine(scaler: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` with ``scaler.transform(x) == x * a + b`` for a per-column affine scaler.

    Uses the scaler's ``center_``/``scale_`` when it has them; otherwise reads
    the map off by transforming rows of zeros and ones.
    """
    center, scale = getattr(scaler, "center_", None), getattr(scaler, "scale_", None)
    if center is not None and scale is not None and len(center) == n_features:
        a = 1.0 / np.asarray(scale, dtype=np.float64)
        b = -np.asarray(center, dtype=np.float64) * a
    else:
        b = _transform(scaler, np.zeros((1, n_features), dtype=np.float64))
        a = _transform(scaler, np.ones((1, n_features), dtype=np.float64)) - b
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise CheckpointError("the saved scaler is not finite (a constant feature?)")
    return a.astype(np.float32), b.astype(np.float32)


def scale_array(scaler: Any, x: np.ndarray) -> np.ndarray:
    """``x`` (..., F) scaled as float32 exactly as ``Predictor.predict`` scales it."""
    a, b = scaler_affine(scaler, x.shape[-1])
    out = x.astype(np.float32) * a + b
    clip = getattr(scaler, "clip", None)
    return np.clip(out, -clip, clip) if clip else out


def _transform(scaler: Any, x: np.ndarray) -> np.ndarray:
    columns = getattr(scaler, "columns", None)
    if columns is not None and len(columns) == x.shape[1]:
        out = scaler.transform(pd.DataFrame(x, columns=list(columns)))
    else:
        out = scaler.transform(x)
    return np.asarray(out, dtype=np.float64).reshape(x.shape)[0]


#: tolerance of the load-time check of an exported model against torch (both float32: the
#: differences are reordered sums, a few 1e-7 on the built-ins)
RTOL, ATOL = 1e-5, 1e-6
#: rows of the load-time check
PROBE_ROWS = 7


class Predictor:
    """A trained fold model ready for inference."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        from mtl_bt.features import FeatureSpec, Scaler

        self.checkpoint = checkpoint
        where = f"checkpoint {checkpoint.path}" if checkpoint.path else "checkpoint"
        self.feature_spec = FeatureSpec.from_dict(checkpoint.feature_spec)
        self.feature_columns: list[str] = list(checkpoint.feature_columns)
        self._check_features(checkpoint, where)
        self.symbols: list[str] = list(checkpoint.symbols)
        self.lookback: int = int(checkpoint.lookback)
        self.fold: dict[str, Any] = dict(checkpoint.fold)
        from mtl_bt.tasks import task_from_spec

        self.tasks = [task_from_spec(spec) for spec in checkpoint.tasks]
        self.task_names: list[str] = [t.name for t in self.tasks]
        if self.task_names != checkpoint.task_names:
            raise CheckpointError(
                f"{where}: tasks rebuilt as {self.task_names}, saved as {checkpoint.task_names}"
            )
        self.horizons: dict[str, int] = {t.name: t.horizon for t in self.tasks}
        model = registry.get("architecture", checkpoint.architecture)(**checkpoint.init_kwargs)
        try:
            model.load_state_dict(checkpoint.state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{where}: weights do not fit the architecture: {exc}") from None
        model.eval()
        self.model = model
        self.scaler = Scaler.from_dict(checkpoint.scaler)
        a, b = scaler_affine(self.scaler, len(self.feature_columns))
        self._a_np, self._b_np = a, b
        clip = getattr(self.scaler, "clip", None)
        self._clip = float(clip) if clip else None
        self._asset_ids = {s: i for i, s in enumerate(self.symbols)}
        self._n_assets = int(getattr(model.input_stage, "n_assets", 1))
        self._with_ids = self._uses_asset()
        width = len(self.feature_columns)
        self._shape = (self.lookback, width) if self.lookback > 1 else (width,)
        #: the whole computation as one torch module: the torch path and what is exported
        self._graph = self._inference_graph(transformed=True)
        self._row_by_row = False  # set by the load check: see _batch_invariant
        self._sha256: str | None = None  # the checkpoint file's, read once if needed
        #: why the torch path runs (None: ONNX Runtime does)
        self.backend_reason: str | None = None
        #: the ONNX Runtime session (None: torch), and whether the tasks' transforms run
        #: after it (in torch: they did not export, or disagreed, inside the graph)
        self._session, self._transform_after = self._checked_session(where)
        #: what ``predict`` runs: "onnxruntime" or "torch"
        self.backend = "torch" if self._session is None else "onnxruntime"

    def _inference_graph(self, transformed: bool) -> Any:
        from mtl_bt.models.onnx_runtime import InferenceGraph

        transforms = [t.transform if transformed else None for t in self.tasks]
        return InferenceGraph(
            self.model, self._a_np, self._b_np, self._clip, self.task_names, transforms
        ).eval()

    # -- the ONNX Runtime session ------------------------------------------
    def _checked_session(self, where: str) -> tuple[Any, bool]:
        """``(session, transform_after)``: the exported graph with the transforms inside,
        else without them (run in torch after), each checked against torch on probe rows;
        ``(None, False)`` with one warning when neither exports and agrees."""
        if os.environ.get("MTL_BT_TORCH_INFERENCE", "") not in ("", "0"):
            self.backend_reason = "MTL_BT_TORCH_INFERENCE is set"
            return None, False
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return self._torch_instead(where, f"onnxruntime does not import ({exc})"), False
        reasons = []
        for transformed in (True, False):
            session, reason = self._session(transformed)
            if session is not None:
                return session, not transformed
            reasons.append(reason)
        why = (
            reasons[-1]
            if reasons[0] == reasons[-1]
            else f"{reasons[0]}; without them, {reasons[-1]}"
        )
        return self._torch_instead(where, why), False

    def _torch_instead(self, where: str, reason: str) -> None:
        self.backend_reason = reason
        warnings.warn(
            f"{where}: architecture {self.checkpoint.architecture!r} runs on torch, not ONNX "
            f"Runtime (slower per bar): {reason}",
            RuntimeWarning,
            stacklevel=4,
        )
        return None

    def _session(self, transformed: bool) -> tuple[Any, str]:
        """A checked session over the graph (with or without the transforms) and, when
        there is none, why. A cached export is used when it passes the check, else the
        graph is exported again (and the cache rewritten)."""
        from mtl_bt.models import onnx_runtime as rt

        what = "with the tasks' transforms" if transformed else "the model alone"
        graph = self._graph if transformed else self._inference_graph(transformed=False)
        path = self._cache_path("transformed" if transformed else "raw")
        cached = rt.read_cached(path) if path else None
        if cached is not None:
            session, _ = self._load_checked(cached, graph)
            if session is not None:
                return session, ""
        try:
            example = torch.zeros((2, *self._shape))
            ids = torch.zeros(2, dtype=torch.long) if self._with_ids else None
            onnx = rt.export(graph, example, ids)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means "torch"
            return None, f"the ONNX export ({what}) failed: {_first_line(exc)}"
        session, reason = self._load_checked(onnx, graph)
        if session is None:
            return None, f"the ONNX export ({what}) {reason}"
        if path:
            rt.write_cached(path, onnx)
        return session, ""

    def _load_checked(self, onnx: bytes, graph: Any) -> tuple[Any, str]:
        """A session over ``onnx`` if it equals ``graph`` in torch on probe rows; else None
        and what went wrong. Also decides ``_row_by_row`` (see ``_batch_invariant``)."""
        from mtl_bt.models.onnx_runtime import Session

        try:
            session = Session(onnx)
            if session.inputs != (["x", "asset"] if self._with_ids else ["x"]):
                return None, f"has inputs {session.inputs}"
            x, ids = self._probe()
            with torch.inference_mode():
                want = graph(torch.from_numpy(x), None if ids is None else torch.from_numpy(ids))
            got = session(x, ids)
        except Exception as exc:  # noqa: BLE001 - a session that does not run is refused
            return None, f"does not run in ONNX Runtime: {_first_line(exc)}"
        for name, w, g in zip(self.task_names, want, got, strict=True):
            w = w.numpy()
            if g.shape != w.shape:
                return None, f"gives {name!r} shape {g.shape}, torch {w.shape}"
            if not np.allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True):
                worst = float(np.nanmax(np.abs(g.astype(np.float64) - w)))
                return None, f"disagrees with torch on {name!r} by {worst:.2g} on probe rows"
        self._row_by_row = not self._batch_invariant(session, x, ids, got)
        return session, ""

    @staticmethod
    def _batch_invariant(
        session: Any, x: np.ndarray, ids: np.ndarray | None, got: list[np.ndarray]
    ) -> bool:
        """Each probe row predicted alone (as ``predict`` runs one row: padded to two, see
        ``Session``) and in a batch of three is the same bits as in the batch of all: then
        live per-bar predictions equal the precomputed whole-frame ones exactly."""
        for lo, hi in [(i, i + 1) for i in range(len(x))] + [(2, 5)]:
            part = session(x[lo:hi], None if ids is None else ids[lo:hi])
            if any(not np.array_equal(p, g[lo:hi]) for p, g in zip(part, got, strict=True)):
                return False
        return True

    def _probe(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw feature rows that scale to 2 N(0, 1) (past the clip, if any), and asset ids."""
        rng = np.random.default_rng(0)
        z = 2.0 * rng.standard_normal((PROBE_ROWS, *self._shape))
        x = ((z - self._b_np) / self._a_np).astype(np.float32)
        ids = np.arange(PROBE_ROWS, dtype=np.int64) % self._n_assets if self._with_ids else None
        return x, ids

    def _cache_path(self, variant: str) -> Any:
        """Where this checkpoint's export is cached (None for a checkpoint without a file)."""
        from mtl_bt.models import onnx_runtime as rt

        path = self.checkpoint.path
        if path is None:
            return None
        try:
            self._sha256 = self._sha256 or rt.file_sha256(path)
        except OSError:
            return None
        return rt.cache_path(rt.cache_key(self._sha256, variant))

    def _check_features(self, checkpoint: Checkpoint, where: str) -> None:
        """The saved feature spec, columns, scaler and model input must describe one model."""
        computed = self.feature_spec.columns()
        missing = [c for c in self.feature_columns if c not in computed]
        if missing:
            raise CheckpointError(
                f"{where} is inconsistent: its feature spec does not compute {missing} "
                f"(it computes {computed}); the file was edited or mixes two runs. Retrain"
            )
        width = len(self.feature_columns)
        center = (checkpoint.scaler or {}).get("center")
        scaler_width = len(center) if isinstance(center, list | tuple) else None
        if scaler_width is not None and scaler_width != width:
            raise CheckpointError(
                f"{where} is inconsistent: its scaler was fitted on {scaler_width} features, "
                f"but it lists {width} feature columns. Retrain"
            )
        in_features = checkpoint.init_kwargs.get("in_features")
        if in_features is not None and int(in_features) != width:
            raise CheckpointError(
                f"{where} is inconsistent: the model takes {in_features} inputs, "
                f"but it lists {width} feature columns. Retrain"
            )

    @classmethod
    def from_checkpoint(cls, source: str | os.PathLike[str] | Checkpoint) -> Predictor:
        if not isinstance(source, Checkpoint):
            source = ckpt_mod.load(source)
        return cls(source)

    # -- features ----------------------------------------------------------
    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw causal features of one symbol's bars (NaN during the warm-up)."""
        from mtl_bt.features import compute

        return compute(frame, self.feature_spec)[self.feature_columns]

    def asset_ids(self, symbols: list[str]) -> np.ndarray:
        """Asset ids in the training order; unknown symbols are an error."""
        unknown = [s for s in symbols if s not in self._asset_ids]
        if unknown:
            raise CheckpointError(
                f"symbols {unknown} were not in this model's training set {self.symbols}"
            )
        return np.array([self._asset_ids[s] for s in symbols], dtype=np.int64)

    # -- inference ---------------------------------------------------------
    def predict(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Transformed predictions per task (float64) for raw features ``x``.

        ``x``: (n, F), or (n, lookback, F) with a sequence encoder; rows oldest
        first in a window. ``asset_ids``: (n,) integer ids (see ``asset_ids``).
        A row's predictions do not depend on the other rows of the batch.
        """
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self._shape or x.ndim != len(self._shape) + 1:
            want = ", ".join(map(str, self._shape))
            raise ValueError(f"x must have shape (n, {want}), got {x.shape}")
        session = self._session
        if session is None or not len(x):
            return self._predict_torch(x, asset_ids)
        ids = self._checked_ids(asset_ids, len(x)) if self._with_ids else None
        out = session(x, ids) if not self._row_by_row else self._rows_alone(x, ids)
        if self._transform_after:
            return {
                t.name: t.transform(torch.from_numpy(o)).numpy().astype(np.float64)
                for t, o in zip(self.tasks, out, strict=True)
            }
        return {name: o.astype(np.float64) for name, o in zip(self.task_names, out, strict=True)}

    def predict_row(self, x: np.ndarray, asset_id: int | None = None) -> list[float]:
        """One row's transformed predictions, in ``task_names`` order, as Python floats: the
        same numbers as ``predict(x[None], [asset_id])`` (tested bit for bit). ``x``: one
        row's raw features (F,), or (lookback, F). The per-decision call of a live backtest:
        on ONNX Runtime it runs on buffers bound once (``Session.one``), no arrays or dicts
        built per call; other backends go through ``predict``."""
        session = self._session
        if session is None or self._transform_after or x.shape != self._shape:
            ids = None if asset_id is None else np.array([asset_id], dtype=np.int64)
            out = self.predict(x[None] if x.ndim == len(self._shape) else x, ids)
            return [float(out[t][0]) for t in self.task_names]
        if self._with_ids:
            if asset_id is None:
                self._checked_ids(None, 1)  # raises: this model needs asset ids
            a = int(asset_id)  # type: ignore[arg-type]
            if not 0 <= a < self._n_assets:
                self._checked_ids(np.array([a], dtype=np.int64), 1)  # raises naming the range
            return session.one(x, a)
        return session.one(x, None)

    def predict_matrix(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> np.ndarray:
        """``predict`` as one ``(rows, tasks)`` float64 matrix, columns in ``task_names``
        order (the same numbers, tested bit for bit): a live decision over a few assets.
        On ONNX Runtime a batch of up to ``FEW`` rows runs on buffers bound once
        (``Session.few``)."""
        from mtl_bt.models.onnx_runtime import FEW

        session = self._session
        n = len(x)
        if (
            session is None
            or self._transform_after
            or self._row_by_row
            or not 2 <= n <= FEW
            or type(x) is not np.ndarray
            or x.shape[1:] != self._shape
        ):
            out = self.predict(x, asset_ids)
            return np.column_stack([out[t] for t in self.task_names])
        ids = self._checked_ids(asset_ids, n) if self._with_ids else None
        return session.few(x, ids)

    def _checked_ids(self, asset_ids: np.ndarray | None, n: int) -> np.ndarray:
        """``asset_ids`` as int64 (n,), every id a known asset (ONNX's Gather would read
        a negative id from the end instead of refusing it)."""
        if asset_ids is None:
            raise ValueError(
                "this model has an asset embedding: pass asset ids (batch,) as `asset`"
            )
        ids = asset_ids
        if type(ids) is not np.ndarray or ids.dtype != np.int64:
            ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            ids = ids.reshape(-1)
            if len(ids) != n:
                raise ValueError(f"got {len(ids)} asset ids for a batch of {n} rows")
        if len(ids) <= 64:  # Python's min/max of a short list beat numpy's calls
            values = ids.tolist()
            bad = min(values) < 0 or max(values) >= self._n_assets
        else:
            bad = bool(ids.min() < 0 or ids.max() >= self._n_assets)
        if bad:
            raise ValueError(
                f"asset ids must be in 0..{self._n_assets - 1} (n_assets={self._n_assets}); "
                f"got {int(ids.min())}..{int(ids.max())}"
            )
        return ids

    def _rows_alone(self, x: np.ndarray, ids: np.ndarray | None) -> list[np.ndarray]:
        """The session's outputs for ``x`` computed one row at a time (a model whose ONNX
        Runtime kernels round a row differently in another batch, see ``_batch_invariant``)."""
        assert self._session is not None
        parts = [
            self._session(x[i : i + 1], None if ids is None else ids[i : i + 1])
            for i in range(len(x))
        ]
        return [np.concatenate(cols) for cols in zip(*parts, strict=True)]

    def predict_torch(
        self, x: np.ndarray, asset_ids: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """``predict`` through the torch model, whatever ``backend`` is (the reference path)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self._shape or x.ndim != len(self._shape) + 1:
            want = ", ".join(map(str, self._shape))
            raise ValueError(f"x must have shape (n, {want}), got {x.shape}")
        return self._predict_torch(x, asset_ids)

    def _predict_torch(self, x: np.ndarray, asset_ids: np.ndarray | None) -> dict[str, np.ndarray]:
        xt = torch.from_numpy(np.ascontiguousarray(x))
        asset = (
            None if asset_ids is None else torch.from_numpy(np.asarray(asset_ids, dtype=np.int64))
        )
        with torch.inference_mode():
            out = self._graph(xt, asset)
        return {
            name: o.numpy().astype(np.float64) for name, o in zip(self.task_names, out, strict=True)
        }

    def predict_frame(self, features_by_symbol: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Predictions for every row of every symbol: columns datetime, symbol, tasks.

        Rows without complete features (warm-up) or, with a sequence encoder,
        without ``lookback`` complete rows before them get NaN predictions.
        """
        frames = []
        for symbol, feats in features_by_symbol.items():
            values = feats[self.feature_columns].to_numpy(np.float32)
            n = len(values)
            ok = np.isfinite(values).all(axis=1)
            if self.lookback > 1:
                # a window is complete when its last `lookback` rows are all finite
                run = np.convolve(ok.astype(np.int64), np.ones(self.lookback, dtype=np.int64))[:n]
                ok = run == self.lookback
            rows = np.flatnonzero(ok)
            out = {name: np.full(n, np.nan) for name in self.task_names}
            if len(rows):
                if self.lookback > 1:
                    x = values[rows[:, None] + np.arange(1 - self.lookback, 1)[None, :]]
                else:
                    x = values[rows]
                ids = np.full(len(rows), self._asset_ids.get(symbol, -1), dtype=np.int64)
                asset = None
                if symbol in self._asset_ids:
                    asset = ids
                elif self._uses_asset():
                    self.asset_ids([symbol])  # raises naming the symbol
                for start in range(0, len(rows), 8192):
                    chunk = slice(start, start + 8192)
                    pred = self.predict(x[chunk], None if asset is None else asset[chunk])
                    for name, v in pred.items():
                        out[name][rows[chunk]] = v
            frame = pd.DataFrame(out, index=feats.index)
            frame.insert(0, "symbol", symbol)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["datetime", "symbol", *self.task_names])
        result = pd.concat(frames)
        result.index.name = "datetime"
        return (
            result.reset_index()
            .sort_values(["datetime", "symbol"], kind="stable")
            .reset_index(drop=True)
        )

    def _uses_asset(self) -> bool:
        return bool(self.checkpoint.init_kwargs.get("asset_embedding") or 0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
