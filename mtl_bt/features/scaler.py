"""Feature scaling fitted on a training slice only, saved as plain data.

The trainer fits one ``Scaler`` per walk-forward fold on that fold's training
rows (never validation/test rows, which would leak their distribution) and
stores ``to_dict()`` in the checkpoint (plain floats/lists, so
``torch.load(weights_only=True)`` reads it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_bt.errors import CheckpointError, DataError

KINDS = ("standard", "robust")
#: IQR of a standard normal: robust scale = IQR / this, comparable to a std.
_IQR_NORMAL = 1.3489795003921634


class Scaler:
    """``standard``: (x - mean) / std (ddof=0). ``robust``: (x - median) / (IQR/1.349).

    A column with (near-)zero spread gets scale 1, so it maps to a constant
    instead of dividing by zero; ``robust`` falls back to the std when the IQR
    is zero (e.g. mostly-constant columns with a few moves). ``clip`` (optional)
    bounds transformed values to [-clip, clip].
    """

    def __init__(self, kind: str = "standard", clip: float | None = None) -> None:
        if kind not in KINDS:
            raise DataError(f"unknown scaler {kind!r}; choose one of {', '.join(KINDS)}")
        if clip is not None and not (isinstance(clip, int | float) and clip > 0):
            raise DataError(f"scaler clip = {clip!r}: expected a number > 0 or None")
        self.kind = kind
        self.clip = None if clip is None else float(clip)
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.center_ is not None

    @property
    def n_features(self) -> int:
        if self.center_ is None:
            raise RuntimeError("scaler is not fitted")
        return len(self.center_)

    def fit(self, X: np.ndarray) -> Scaler:
        """Learn centre and scale per column from ``X`` (rows, features), all finite."""
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise DataError(f"scaler needs a non-empty 2-D array, got shape {X.shape}")
        if not np.isfinite(X).all():
            row, col = np.argwhere(~np.isfinite(X))[0]
            raise DataError(f"scaler input has a non-finite value at row {row}, column {col}")
        std = X.std(axis=0)
        if self.kind == "standard":
            center, scale = X.mean(axis=0), std
        else:
            q25, center, q75 = np.percentile(X, [25.0, 50.0, 75.0], axis=0)
            scale = (q75 - q25) / _IQR_NORMAL
            scale = np.where(_tiny(scale, center), std, scale)
        scale = np.where(_tiny(scale, center), 1.0, scale)
        self.center_, self.scale_ = center.astype("float64"), scale.astype("float64")
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("scaler is not fitted; call fit() on the training slice first")
        X = np.asarray(X, dtype="float64")
        if X.shape[-1] != len(self.center_):
            raise DataError(f"scaler was fitted on {len(self.center_)} features, got {X.shape[-1]}")
        out = (X - self.center_) / self.scale_
        if self.clip is not None:
            out = np.clip(out, -self.clip, self.clip)
        return out

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("scaler is not fitted")
        return np.asarray(Z, dtype="float64") * self.scale_ + self.center_

    # -- plain data ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("scaler is not fitted; nothing to save")
        return {
            "kind": self.kind,
            "clip": self.clip,
            "center": [float(v) for v in self.center_],
            "scale": [float(v) for v in self.scale_],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        try:
            scaler = cls(str(data["kind"]), data.get("clip"))
            center = np.asarray(data["center"], dtype="float64")
            scale = np.asarray(data["scale"], dtype="float64")
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise CheckpointError(f"saved scaler is malformed: {exc!r}") from None
        ok = (
            center.ndim == 1
            and center.shape == scale.shape
            and np.isfinite(center).all()
            and np.isfinite(scale).all()
            and (scale > 0).all()
        )
        if not ok:
            raise CheckpointError(
                "saved scaler is malformed: centre/scale lengths or values invalid"
            )
        scaler.center_, scaler.scale_ = center, scale
        return scaler


def _tiny(scale: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Spread too small to divide by (relative to the column's magnitude)."""
    return ~(scale > 1e-12 * np.maximum(1.0, np.abs(center))) | ~np.isfinite(scale)


__all__ = ["KINDS", "Scaler"]
