"""Inference from a checkpoint: per bar (Backtrader) and vectorised (whole frames).

``predict`` is called every bar with one row per asset, so it stays off pandas
and, when the architecture provides one, off torch too. The first of these that
exists and matches the torch model on probe rows at load runs (a mismatch warns):

1. the compiled kernel (``MTLModel.kernel_predict``, ``mtl_bt.models.kernel``; every
   built-in has one): scaling, clip, encoder, embedding and model as one numba call,
   each row computed on its own (a row's outputs do not depend on the batch);
2. the numpy forward pass (``MTLModel.numpy_predict``, ``mtl_bt.models.numpy_forward``):
   the saved scaler as two float32 arrays (``x * a + b``), a few dozen numpy calls;
3. one batched torch forward pass under ``torch.inference_mode``.

``Predictor.backend`` says which ("kernel", "numpy", "torch"). Set ``MTL_BT_NO_KERNEL=1``
to skip the kernel (numba is then never imported), ``MTL_BT_TORCH_INFERENCE=1`` to force
the torch path.
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


#: raw outputs a transform is checked on (the compiled steps and ``transform_numpy``)
_TRANSFORM_PROBE = np.concatenate(
    [np.linspace(-12, 12, 49, dtype=np.float32), np.float32([-60, -30, 30, 60])]
)


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
        self._a = torch.from_numpy(a)
        self._b = torch.from_numpy(b)
        clip = getattr(self.scaler, "clip", None)
        self._clip = float(clip) if clip else None
        self._asset_ids = {s: i for i, s in enumerate(self.symbols)}
        width = len(self.feature_columns)
        self._shape = (self.lookback, width) if self.lookback > 1 else (width,)
        #: tasks whose output transform the kernel runs (``Task.kernel_transform``)
        self._in_kernel: set[str] = set()
        #: the compiled program (``mtl_bt.models.kernel``), None: the numpy or torch path
        self._kernel = self._checked_kernel(where)
        #: the numpy forward pass (None: torch or the kernel); prescaled: it takes raw features
        self._fast, self._prescaled = (
            (None, False) if self._kernel is not None else self._checked_numpy_forward(where)
        )
        #: (name, numpy transform or None for the identity), in task order
        self._transforms = self._checked_transforms(where)
        #: (name, output column or column slice, transpose, transform) for the kernel path
        self._columns = (
            []
            if self._kernel is None
            else [
                (
                    name,
                    c if w == 1 else slice(c, c + w),
                    w > 1,
                    None if name in self._in_kernel else f,
                )
                for (name, c, w), (_, f) in zip(self._kernel.outputs, self._transforms, strict=True)
            ]
        )
        #: what ``predict`` runs: "kernel" (the compiled program), "numpy" (the model's
        #: numpy forward pass) or "torch"
        self.backend = (
            "kernel" if self._kernel is not None else "torch" if self._fast is None else "numpy"
        )

    def _checked_kernel(self, where: str) -> Any:
        """The model's compiled program, with the tasks' output transforms compiled in where
        their ``kernel_transform`` steps agree with ``transform`` (those tasks go to
        ``_in_kernel``), if it has one, numba runs here and it matches torch on probe rows
        (raw features, scaled and clipped as ``_predict_torch`` does); else None (a
        disagreement warns)."""
        if os.environ.get("MTL_BT_TORCH_INFERENCE", "") not in ("", "0"):
            return None
        from mtl_bt.models import kernel as kn

        if kn.runner() is None:  # disabled, or no working numba
            return None
        prog = self._kernel_program()
        if prog is None:
            return None
        steps = self._kernel_steps(where)
        for name, st in steps.items():
            if st:
                prog.transform(name, st)
        kernel = prog.compile()
        if kernel is None:
            return None
        if self._kernel_fits(kernel, set(steps)):
            self._in_kernel = set(steps)
            return kernel
        if any(steps.values()):  # the transforms' fault or the model's: try the bare model
            kernel = self._kernel_program().compile()
            if self._kernel_fits(kernel, set()):
                return kernel
        warnings.warn(
            f"{where}: architecture {self.checkpoint.architecture!r}'s compiled kernel "
            "disagrees with its torch model; using the numpy or torch path for inference",
            RuntimeWarning,
            stacklevel=3,
        )
        return None

    def _kernel_program(self) -> Any:
        """``model.kernel_program`` reading raw features (None: the model has none)."""
        try:
            return self.model.kernel_program(scale=(self._a_np, self._b_np), clip=self._clip)
        except TypeError:  # an override of kernel_program with another signature
            return None

    def _kernel_fits(self, kernel: Any, transformed: set[str]) -> bool:
        return [o[0] for o in kernel.outputs] == self.task_names and self._kernel_agrees(
            kernel, transformed
        )

    def _kernel_steps(self, where: str) -> dict[str, Any]:
        """``{task: kernel_transform steps}`` for the tasks whose steps equal ``transform``
        on probe values (a task whose steps disagree warns and keeps ``transform_numpy``)."""
        steps = {}
        for t in self.tasks:
            try:
                st = t.kernel_transform()
            except Exception:  # noqa: BLE001 - a broken opt-in is refused below, not fatal
                st = None
            if st is not None and self._steps_agree(t, st):
                steps[t.name] = st
            elif st is not None:
                warnings.warn(
                    f"{where}: task {t.name!r}: kernel_transform disagrees with transform; "
                    "using transform_numpy",
                    RuntimeWarning,
                    stacklevel=4,
                )
        return steps

    @staticmethod
    def _steps_agree(task: Any, steps: Any) -> bool:
        """``steps`` run by the kernel equal ``task.transform`` on probe outputs."""
        from mtl_bt.models import kernel as kn

        probe = _TRANSFORM_PROBE
        try:
            prog = kn.Program()
            prog.output(task.name, prog.input(1))
            prog.transform(task.name, steps)
            k = prog.compile()
            if k is None:
                return False
            got = k.raw(probe[:, None].copy(), None)[0]
        except Exception:  # noqa: BLE001
            return False
        want = task.transform(torch.from_numpy(probe.copy())).numpy()
        return got.shape == want.shape and bool(
            np.allclose(got, want, rtol=1e-5, atol=1e-7, equal_nan=True)
        )

    def _kernel_agrees(self, kernel: Any, transformed: set[str] = frozenset()) -> bool:
        """``kernel`` equals the torch model on probe raw rows (past the clip, if any); the
        ``transformed`` tasks' outputs against ``transform`` of the model's."""
        rng = np.random.default_rng(0)
        z = 2.0 * rng.standard_normal((7, *self._shape))
        x = ((z - self._b_np) / self._a_np).astype(np.float32)
        n_assets = int(getattr(self.model.input_stage, "n_assets", 1))
        ids = np.arange(7, dtype=np.int64) % n_assets if self._uses_asset() else None
        with torch.inference_mode():
            zt = torch.addcmul(self._b, torch.from_numpy(x), self._a)
            if self._clip is not None:
                zt = zt.clamp(-self._clip, self._clip)
            want = self.model(zt, None if ids is None else torch.from_numpy(ids))
        try:
            got = kernel(x, ids)
        except Exception:  # noqa: BLE001 - a broken kernel is refused, not fatal
            return False
        tasks = {t.name: t for t in self.tasks}
        for name in self.task_names:
            w = want[name]
            if name in transformed:
                w = tasks[name].transform(w)
            w, g = w.numpy(), np.asarray(got.get(name))
            if g.shape != w.shape or not np.allclose(g, w, rtol=1e-5, atol=1e-6):
                return False
        return True

    def _checked_numpy_forward(self, where: str) -> tuple[Any, bool]:
        """``(forward, prescaled)``: the model's numpy forward pass if it has one that matches
        torch on probe rows, and whether it takes raw features (the scaler folded into its
        first matmul: only without a clip, which is not affine)."""
        if os.environ.get("MTL_BT_TORCH_INFERENCE", "") not in ("", "0"):
            return None, False
        if self._clip is None:
            try:
                fast = self.model.numpy_forward(scale=(self._a_np, self._b_np))
            except TypeError:  # an override of numpy_forward without `scale`
                fast = None
            if fast is not None and self._agrees(fast, raw=True):
                return fast, True
        fast = self.model.numpy_forward()
        if fast is None:
            return None, False
        if self._agrees(fast, raw=False):
            return fast, False
        warnings.warn(
            f"{where}: architecture {self.checkpoint.architecture!r}'s numpy forward pass "
            "disagrees with its torch model; using torch for inference",
            RuntimeWarning,
            stacklevel=3,
        )
        return None, False

    def _agrees(self, fast: Any, raw: bool) -> bool:
        """``fast`` equals the torch model on probe rows (raw features when ``raw``)."""
        rng = np.random.default_rng(0)
        z = rng.standard_normal((7, *self._shape)).astype(np.float32)
        n_assets = int(getattr(self.model.input_stage, "n_assets", 1))
        ids = np.arange(7, dtype=np.int64) % n_assets if self._uses_asset() else None
        asset = None if ids is None else torch.from_numpy(ids)
        with torch.inference_mode():
            if raw:  # raw features that scale to z, scaled by torch as _predict_torch does
                x = ((z - self._b_np) / self._a_np).astype(np.float32)
                z = torch.addcmul(self._b, torch.from_numpy(x), self._a).numpy()
            want = self.model(torch.from_numpy(z), asset)
        try:
            got = fast((x if raw else z).copy(), ids)
        except Exception:  # noqa: BLE001 - a broken fast path is refused, not fatal
            return False
        for name in self.task_names:
            w, g = want[name].numpy(), np.asarray(got.get(name))
            if g.shape != w.shape or not np.allclose(g, w, rtol=1e-5, atol=1e-6):
                return False
        return True

    def _checked_transforms(self, where: str) -> list[tuple[str, Any]]:
        """``(task name, numpy transform or None for the identity)`` per task; a task whose
        ``transform_numpy`` disagrees with its ``transform`` on probe outputs runs the torch
        transform instead (with a warning), so predictions never depend on the path."""
        from mtl_bt.tasks.base import Task

        probe = _TRANSFORM_PROBE
        out = []
        for t in self.tasks:
            if (
                type(t).transform is Task.transform
                and type(t).transform_numpy is Task.transform_numpy
            ):
                out.append((t.name, None))
                continue
            want = t.transform(torch.from_numpy(probe.copy())).numpy()
            got = np.asarray(t.transform_numpy(probe.copy()))
            if got.shape != want.shape or not np.allclose(
                got, want, rtol=1e-5, atol=1e-7, equal_nan=True
            ):
                warnings.warn(
                    f"{where}: task {t.name!r}: transform_numpy disagrees with transform; "
                    "using the torch transform",
                    RuntimeWarning,
                    stacklevel=3,
                )
                out.append((t.name, lambda v, t=t: t.transform(torch.from_numpy(v)).numpy()))
            else:
                out.append((t.name, t.transform_numpy))
        return out

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
        """Transformed predictions per task for raw features ``x``.

        ``x``: (n, F), or (n, lookback, F) with a sequence encoder; rows oldest
        first in a window. ``asset_ids``: (n,) integer ids (see ``asset_ids``).
        """
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self._shape or x.ndim != len(self._shape) + 1:
            want = ", ".join(map(str, self._shape))
            raise ValueError(f"x must have shape (n, {want}), got {x.shape}")
        kernel = self._kernel
        if kernel is not None:  # one compiled call: scaling, clip, encoder, model, outputs
            return self._assemble(kernel.raw(x, asset_ids))
        if self._fast is None:
            return self._predict_torch(x, asset_ids)
        if self._prescaled:  # the scaler is folded into the first matmul
            z = x
        else:
            z = x * self._a_np
            z += self._b_np
            if self._clip is not None:  # np.clip costs several times more at this size
                np.maximum(z, -self._clip, out=z)
                np.minimum(z, self._clip, out=z)
        ids = None if asset_ids is None else np.asarray(asset_ids, dtype=np.int64)
        out = self._fast(z, ids)
        return {
            name: (out[name] if f is None else f(out[name])).astype(np.float64)
            for name, f in self._transforms
        }

    def _assemble(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """``{task: float64 prediction}`` from the kernel's float32 ``(columns, n)`` output.

        Equal to ``f(column).astype(float64)`` per task, with one float64 conversion for
        all of them: each transform's float32 result is written back over its columns
        first (a transform that returns another dtype is converted on its own).
        """
        own = {}
        for name, col, wide, f in self._columns:
            if f is None:
                continue
            v = raw[col].T if wide else raw[col]
            t = f(v)
            if type(t) is np.ndarray and t.dtype == np.float32 and t.shape == v.shape:
                raw[col] = t.T if wide else t
            else:
                own[name] = np.asarray(t).astype(np.float64)
        wide64 = raw.astype(np.float64)
        result = {}
        for name, col, wide, _ in self._columns:
            result[name] = own[name] if name in own else wide64[col].T if wide else wide64[col]
        return result

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
            z = torch.addcmul(self._b, xt, self._a)
            if self._clip is not None:
                z = z.clamp(-self._clip, self._clip)
            out = self.model(z, asset)
            return {t.name: t.transform(out[t.name]).numpy().astype(np.float64) for t in self.tasks}

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
