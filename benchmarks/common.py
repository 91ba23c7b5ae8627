"""Shared helpers: machine info, fixed torch threads, alternating timed repeats."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

#: torch intra-op threads used by every benchmark (recorded in the output)
THREADS = 1


def set_threads(n: int = THREADS) -> int:
    """Pin torch threads so numbers do not depend on the core count; returns the setting."""
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def machine_info() -> dict[str, Any]:
    """Cores, load, torch threads and versions: what a reader needs to compare numbers."""
    import backtrader
    import numpy
    import pandas
    import torch

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "backtrader": backtrader.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def fresh_heap() -> None:
    """A full garbage collection before a timed run (not timed). Without it, whether a
    run pays for a full collection of the process's ~500k tracked objects (0.3-0.5 s,
    a fifth of a 1-asset backtest) depended on the garbage earlier runs left, so the
    same variant's time jumped by that much from one run to the next."""
    gc.collect()


def alternate(
    runs: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 0
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time each callable ``repeats`` times, round-robin (a load change hits all alike).

    Returns ``({name: [seconds, ...]}, {name: last return value})``. The order of
    the callables is rotated each round so none always runs first. Every run starts
    from a collected heap (``fresh_heap``, untimed).
    """
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, Any] = {}
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fresh_heap()
            t0 = time.perf_counter()
            last[name] = runs[name]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return times, last


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
