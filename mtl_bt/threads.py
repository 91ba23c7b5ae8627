"""numpy's OpenBLAS thread count, set for a backtest's run and restored after it.

For the small products of a per-bar strategy, OpenBLAS's threads only cost: a
(800, 14) x (14, 48) product took 0.2-2.5 ms with its default 2 threads on a loaded
2-core machine and 34-52 us on one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _openblas_thread_calls() -> list[tuple[Any, Any]]:
    """``(get, set)`` thread-count functions of every OpenBLAS loaded in this process
    (numpy's wheels bundle ``scipy_openblas``), found through ``/proc/self/maps`` as
    threadpoolctl does; empty where there is none or no such file (not Linux)."""
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            paths = {
                line.split()[-1]
                for line in fh
                if "openblas" in line.lower() and line.split()[-1].startswith("/")
            }
    except OSError:
        return []
    calls = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    calls.append((get, put))
                    break
            else:
                continue
            break
    return calls


def blas_threads(n: int) -> Callable[[], None]:
    """Run numpy's OpenBLAS on ``n`` threads; returns the function that restores the
    previous counts."""
    calls = _openblas_thread_calls()
    before = [get() for get, _ in calls]
    for _, put in calls:
        put(int(n))

    def restore() -> None:
        for (_, put), k in zip(calls, before, strict=True):
            put(k)

    return restore
