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


def test_bench_runs_every_scheme_of_the_torchjd_pack_too(capsys, monkeypatch):
    """Issue #28: with the torchjd pack loaded (as after `pip install 'mtl-bt[torchjd]'`), the
    documented `python -m benchmarks.bench_weighting` crashed on torchjd_cagrad's required
    option `c`; every scheme that needs options gets the pack's example options."""
    import pytest

    pytest.importorskip("torchjd")
    monkeypatch.setenv("MTL_BT_LOAD_PLUGINS", "builtin,torchjd")
    registry.reset()
    try:
        spec = importlib.util.spec_from_file_location("bench_weighting", SCRIPT)
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        argv = ["--repeats", "1", "--warmup", "0", "--batch", "8", "--features", "4"]
        assert bench.main([*argv, "--grad-method", "loop"]) == 0
        names = registry.names("weighting")
    finally:
        registry.reset()
    rows = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]}
    assert {"torchjd_cagrad", "torchjd_constant", "torchjd_pbi"} <= set(names) and rows == set(
        names
    )
