"""Job functions for executor tests (imported by worker processes through sys.path)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def square(shared: dict[str, Any], workdir: Path, *, x: int, fail: bool = False) -> None:
    if fail:
        raise ValueError(f"job asked to fail (x={x})")
    value = x * x + shared.get("offset", 0)
    (workdir / "sub").mkdir()
    (workdir / "result.json").write_text(json.dumps({"value": value}))
    (workdir / "sub" / "pid.txt").write_text(str(os.getpid()))


def total(shared: dict[str, Any], workdir: Path, *, names: list[str]) -> None:
    """A dependent job: sums the values its inputs carry (``shared["values"]``)."""
    value = sum(shared["values"][n] for n in names) + shared.get("offset", 0)
    (workdir / "result.json").write_text(json.dumps({"value": value, "pid": os.getpid()}))
