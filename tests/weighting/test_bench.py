"""The benchmark script runs and reports every scheme (no timing asserts)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from mtl_bt import registry

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_weighting.py"


def test_bench_prints_a_ratio_per_scheme(capsys):
    spec = importlib.util.spec_from_file_location("bench_weighting", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--repeats", "2", "--warmup", "1", "--batch", "16", "--features", "4"]) == 0
    out = capsys.readouterr().out
    assert "threads" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    for name in registry.names("weighting"):
        labels = (
            [name]
            if name not in ("pcgrad", "mgda", "cagrad")
            else [f"{name}[loop]", f"{name}[batched]"]
        )
        for label in labels:
            assert label in rows, (label, out)
            assert math.isfinite(float(rows[label][2])) and float(rows[label][2]) > 0
    assert float(rows["equal"][2]) == 1.0
