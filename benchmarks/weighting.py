"""Weighting cost: runs ``benchmarks.bench_weighting`` (owned by the weighting helper).

Time per training step of every registered scheme relative to ``equal``, K = 4
tasks, shared_bottom; both ways of computing per-task gradients of the
gradient-level schemes ("loop": one backward per task; "batched": the
weighting package's batched path).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import loadavg

#: schemes that work on per-task gradients (goal: <= 2x equal)
GRADIENT_LEVEL = ("gradnorm", "pcgrad", "mgda", "cagrad")


def measure(
    repeats: int = 200,
    warmup: int = 20,
    methods: tuple[str, ...] = ("loop", "batched"),
    features: int = 32,
    hidden: tuple[int, ...] = (64, 32),
    batch: int = 256,
    log: Any = print,
) -> dict[str, Any]:
    from benchmarks import bench_weighting
    from mtl_bt import registry

    schemes = registry.names("weighting")
    out: dict[str, Any] = {
        "tasks": list(bench_weighting.TASKS),
        "features": features,
        "hidden": list(hidden),
        "batch": batch,
        "repeats": repeats,
        "warmup": warmup,
        "gradient_level": [s for s in GRADIENT_LEVEL if s in schemes],
        "methods": {},
        "load_average": [loadavg()],
    }
    for method in methods:
        times = bench_weighting.measure(
            schemes, features, list(hidden), batch, repeats, warmup, method
        )
        base = times["equal"]
        out["methods"][method] = {
            "seconds_per_step": times,
            "ratio": {k: v / base for k, v in times.items()},
        }
        worst = max((times[s] / base, s) for s in out["gradient_level"])
        log(f"  weighting ({method}): worst gradient-level {worst[1]} {worst[0]:.2f}x equal")
    out["load_average"].append(loadavg())
    return out
