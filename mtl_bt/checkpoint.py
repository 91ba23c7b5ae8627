"""One file per trained model: weights plus everything needed to rebuild and check it.

The file holds tensors and plain data only and is read with
``torch.load(weights_only=True)``: loading a checkpoint can never run code, so
a file from someone else cannot execute anything when opened. Writes go to a
temporary file first and are moved into place, so a crash never leaves a
half-written checkpoint under the final name.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_bt.atomic import atomic_write
from mtl_bt.errors import CheckpointError

FORMAT = "mtl-bt-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = (
    "state_dict",
    "architecture",
    "init_kwargs",
    "config",
    "feature_spec",
    "feature_columns",
    "tasks",
    "scaler",
    "symbols",
    "fold",
    "versions",
)


@dataclass
class Checkpoint:
    """A loaded checkpoint (plain data + the state dict)."""

    state_dict: dict[str, torch.Tensor]
    architecture: str
    init_kwargs: dict[str, Any]
    config: dict[str, Any]
    feature_spec: dict[str, Any]
    feature_columns: list[str]
    tasks: list[dict[str, Any]]  # TaskSpec fields as plain dicts
    scaler: dict[str, Any]
    symbols: list[str]
    fold: dict[str, Any]  # fold, train_start, train_end, test_start, test_end (ISO), purge, ...
    versions: dict[str, str]
    lookback: int = 1
    path: Path | None = field(default=None, compare=False)

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    def to_payload(self) -> dict[str, Any]:
        payload = {name: getattr(self, name) for name in _REQUIRED}
        payload.update(format=FORMAT, format_version=FORMAT_VERSION, lookback=self.lookback)
        return payload


def versions() -> dict[str, str]:
    """Versions that produced a model, recorded to explain a later mismatch."""
    from mtl_bt import __version__

    return {"mtl-bt": __version__, "torch": torch.__version__, "python": platform.python_version()}


def plain(value: Any, where: str = "checkpoint") -> Any:
    """``value`` as data ``weights_only`` loading accepts (numpy -> lists/floats).

    Anything else (an object, a dataclass, a function) is refused here, at save
    time, instead of producing a file that cannot be loaded.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):  # str subclasses (e.g. torch's TorchVersion) are globals
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise CheckpointError(f"{where}: key {k!r} is not a string")
            out[k] = plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(
        f"{where} holds a {type(value).__name__} ({value!r:.80}); a checkpoint stores only "
        "tensors and plain data (dict, list, str, int, float, bool, None)"
    )


def save(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file + os.replace)."""
    path = Path(path)
    payload = plain(checkpoint.to_payload())
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    checkpoint.path = path
    return path


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint safely; a missing, corrupt or foreign file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors, unsafe globals refused by weights_only
        reason = _reason(exc)
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is corrupt, truncated, not an mtl-bt "
            f"checkpoint, or holds objects other than tensors and plain data ({reason[:200]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mtl-bt checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload.get('format_version')!r}; this "
            f"mtl-bt reads version {FORMAT_VERSION}. Retrain with this version"
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}")
    fields = {k: payload[k] for k in _REQUIRED}
    return Checkpoint(**fields, lookback=int(payload.get("lookback", 1)), path=path)


def _reason(exc: Exception) -> str:
    """The informative line of a torch.load error (its first line is boilerplate)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = next(
        (ln for ln in lines if "WeightsUnpickler error" in ln or "Unsupported global" in ln),
        lines[0] if lines else type(exc).__name__,
    )
    return _without_advice(line)


#: torch's advice in load errors that a user must not follow here (it runs pickled code)
_UNSAFE_ADVICE = ("weights_only", "safe_globals", "please use", "re-running", "trust the source")


def _without_advice(text: str) -> str:
    """The error without torch's suggestions to loosen ``weights_only`` loading."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    kept = [s for s in sentences if not any(w in s.lower() for w in _UNSAFE_ADVICE)]
    return " ".join(kept).strip() or "it holds objects other than tensors and plain data"


def check_compatible(
    checkpoint: Checkpoint,
    feature_columns: Sequence[str] | None = None,
    task_names: Sequence[str] | None = None,
    in_features: int | None = None,
) -> None:
    """Raise CheckpointError describing how the checkpoint differs from what is given."""
    where = f"checkpoint {checkpoint.path}" if checkpoint.path else "checkpoint"
    problems = []
    if feature_columns is not None and list(feature_columns) != checkpoint.feature_columns:
        have, want = set(checkpoint.feature_columns), set(feature_columns)
        if have == want:
            problems.append("feature columns are in a different order")
        else:
            problems.append(
                f"features differ: checkpoint only {sorted(have - want)}, "
                f"given only {sorted(want - have)}"
            )
    if task_names is not None and list(task_names) != checkpoint.task_names:
        problems.append(
            f"tasks differ: checkpoint {checkpoint.task_names}, given {list(task_names)}"
        )
    width = len(checkpoint.feature_columns)
    if in_features is not None and in_features != width:
        problems.append(f"input width differs: checkpoint {width} features, given {in_features}")
    if problems:
        raise CheckpointError(
            f"{where} does not match: " + "; ".join(problems) + ". Use the config the model "
            "was trained with, or retrain"
        )
