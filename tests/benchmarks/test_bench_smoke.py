"""The benchmark harness runs at toy sizes and returns well-formed results.

Benchmarks are not tests: nothing here checks a time or a ratio against a goal.
These tests prove each harness function really runs the real components
(trained checkpoint, Backtrader runs, trainer, weighting schemes, the pipeline)
and that what it returns, and the page written from it, hang together.
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest

from benchmarks import bench_backtest, bench_scale, bench_training, report, weighting
from benchmarks.common import alternate, machine_info


def _finite_positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    pred, info = bench_backtest.train_model(tmp_path_factory.mktemp("model"), bars=1500, epochs=1)
    assert info["epochs_run"] == 1 and info["checkpoint_bytes"] > 0
    return pred


@pytest.fixture(scope="module")
def backtest_rows(predictor):
    return bench_backtest.measure(predictor, [(2, 160, 1)], log=lambda _m: None)


def test_alternate_rotates_and_times_every_run():
    order: list[str] = []
    runs = {k: (lambda k=k: order.append(k) or k) for k in "abc"}
    times, last = alternate(runs, repeats=3)
    assert order == list("abcbcacab")
    assert last == {"a": "a", "b": "b", "c": "c"}
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in times.values())


def test_backtest_rows_are_well_formed(backtest_rows):
    (row,) = backtest_rows
    assert (row["assets"], row["bars"], row["repeats"]) == (2, 160, 1)
    assert set(row["seconds"]) == set(bench_backtest.VARIANTS)
    assert all(_finite_positive(v) for v in row["seconds"].values())
    for k in ("mtl_live", "mtl_precomputed", "empty_fast", "same_orders"):
        assert row[f"ratio_{k}"] == pytest.approx(
            row["seconds"][k] / row["seconds"]["empty_pandas"]
        )
    live, pre = row["mtl_live_counts"], row["mtl_precomputed_counts"]
    # the strategy decided on bars and traded; both modes give the same orders
    assert live["decisions"] > 0 and live["orders"] > 0
    assert live == pre
    # the replay strategy placed exactly the MTL run's orders
    assert row["same_orders_orders"] == live["submitted"] >= live["orders"]
    assert row["empty_bars"] == 160


def test_profile_parts_cover_the_run(predictor):
    prof = bench_backtest.profile_live(predictor, 2, 120)
    assert prof["total_seconds"] > 0
    assert all(v >= 0 for v in prof["parts"].values())
    assert sum(prof["parts"].values()) == pytest.approx(prof["total_seconds"], rel=0.05)
    assert prof["parts"]["inference (Predictor.predict)"] > 0
    micro = bench_backtest.inference_micro(predictor, calls=25)
    assert _finite_positive(micro["predict_1_row_us"])
    assert _finite_positive(micro["model_forward_1_row_us"])


def test_training_harness_runs_both_loops_on_the_same_rows():
    prep = bench_training.prepare(n_assets=2, bars=1500)
    n = len(prep["train"])
    assert n > 0 and len(prep["val"]) == 0
    assert bench_training.run_trainer(prep, 1) == bench_training.run_hand(prep, 1) == n
    out = bench_training.measure(n_assets=2, bars=1500, epochs=1, repeats=1, log=lambda _m: None)
    assert out["rows"] == n
    assert all(_finite_positive(v) for v in out["samples_per_second"].values())
    assert out["overhead"] == pytest.approx(
        out["seconds"]["trainer"] / out["seconds"]["hand_loop"] - 1.0
    )


def test_weighting_collects_every_registered_scheme():
    from mtl_bt import registry

    out = weighting.measure(repeats=2, warmup=1, methods=("loop",), log=lambda _m: None)
    res = out["methods"]["loop"]
    assert set(res["seconds_per_step"]) == set(registry.names("weighting"))
    assert res["ratio"]["equal"] == 1.0
    assert all(_finite_positive(v) for v in res["seconds_per_step"].values())
    assert set(out["gradient_level"]) <= set(registry.names("weighting"))


def test_scale_child_runs_the_pipeline_and_restores_patches():
    import mtl_bt.features
    import mtl_bt.training.pipeline

    compute, fit = mtl_bt.features.compute, mtl_bt.training.pipeline.fit
    row = bench_scale.child(
        {"label": "t", "kind": "synthetic", "assets": 1, "bars": 1700, "epochs": 1, "report": False}
    )
    assert mtl_bt.features.compute is compute and mtl_bt.training.pipeline.fit is fit
    assert row["folds"] >= 1 and row["train_rows"] > 0
    st = row["stages"]
    assert st["training"] > 0 and st["features"] > 0 and st["inference"] > 0
    assert sum(st.values()) == pytest.approx(row["wall_seconds"])
    assert row["peak_rss_mb"] >= row["rss_before_run_mb"] > 0


def test_page_and_json_from_real_results(backtest_rows, predictor, tmp_path):
    results = {
        "generated": "now",
        "quick": True,
        "only": ["backtest"],
        "threads": 1,
        "machine": machine_info(),
        "errors": {},
        "total_seconds": 1.0,
        "backtest": {
            "model": {
                "how": "x",
                "architecture": "shared_bottom",
                "hidden": [8],
                "tasks": predictor.task_names,
                "features": len(predictor.feature_columns),
                "train_assets": 2,
                "train_bars_per_asset": 1500,
                "epochs_run": 1,
                "train_seconds": 1.0,
                "checkpoint_bytes": 1,
            },
            "rows": backtest_rows,
        },
        "nan_value": float("nan"),
    }
    page = report.markdown(results, None)
    ratio = backtest_rows[0]["ratio_mtl_live"]
    assert "## 1. Backtest overhead" in page and f"**{ratio:.2f}**" in page
    assert "2 x 160" in page
    path = tmp_path / "r.json"
    report.write_json(path, results)
    back = json.loads(path.read_text())  # strict JSON: NaN became null
    assert back["nan_value"] is None
    assert back["backtest"]["rows"][0]["seconds"] == backtest_rows[0]["seconds"]


def test_page_lists_what_was_fixed_and_what_was_tried():
    """Both lists reach the page, each under its own heading, even when one is empty."""
    from benchmarks.__main__ import FIXED, TRIED

    base = {"generated": "now", "quick": True, "only": [], "threads": 1, "errors": {}}
    base["total_seconds"] = 1.0
    base["machine"] = machine_info()
    page = report.markdown({**base, "fixed": FIXED, "tried": TRIED}, None)
    fixed_at, tried_at = page.index("## What was fixed"), page.index("## Tried, measured, not kept")
    assert fixed_at < tried_at
    assert all(f"- {t}" in page[tried_at:] for t in TRIED)
    only_tried = report.markdown({**base, "fixed": [], "tried": TRIED[:1]}, None)
    assert "## What was fixed" not in only_tried and f"- {TRIED[0]}" in only_tried


def test_inference_harness_times_every_path_with_equal_outputs(predictor):
    from benchmarks import bench_inference

    rows = bench_inference.measure(
        predictor.checkpoint, calls=2, blocks=1, frame_calls=1, log=lambda _m: None
    )
    archs = {r["architecture"] for r in rows}
    assert archs == {*bench_inference.ARCHITECTURES, bench_inference.PLUGIN}
    assert len(rows) == (len(bench_inference.ARCHITECTURES) + 1) * len(bench_inference.STAGES)
    for r in rows:
        assert r["max abs diff"] <= 1e-6
        for n in bench_inference.ROWS:
            assert _finite_positive(r[f"onnxruntime {n} rows us"])
            assert _finite_positive(r[f"torch {n} rows us"])
        assert _finite_positive(r["onnxruntime frame ms"]) and _finite_positive(r["torch frame ms"])
    base = {"generated": "now", "quick": True, "only": [], "threads": 1, "errors": {}}
    base.update(total_seconds=1.0, machine=machine_info())
    inf = {"rows": rows, "frame_rows": bench_inference.FRAME_ROWS}
    inf["model"] = {"features": 3, "tasks": predictor.task_names, "hidden": [8], "assets": 2}
    page = report.markdown({**base, "inference": inf}, None)
    assert "## 2b. Inference" in page and "`hierarchical`" in page and "`plugin_net`" in page
    assert "Plugin vs the built-in" in page and "kernel 1 row us" in page  # the kernel's record
    assert "| `mtl_bt/predictor.py` | 513 |" in page


def test_floor_ratios_reach_the_page(backtest_rows):
    base = {"generated": "now", "quick": True, "only": [], "threads": 1, "errors": {}}
    base.update(total_seconds=1.0, machine=machine_info())
    model = {
        "how": "x",
        "architecture": "shared_bottom",
        "hidden": [8],
        "tasks": ["a"],
        "features": 1,
        "train_assets": 2,
        "train_bars_per_asset": 1,
        "epochs_run": 1,
        "train_seconds": 1.0,
        "checkpoint_bytes": 1,
    }
    page = report.markdown({**base, "backtest": {"model": model, "rows": backtest_rows}}, None)
    s = backtest_rows[0]["seconds"]
    assert f"**{s['mtl_precomputed'] / s['same_orders']:.2f}**" in page
    assert "precomputed / floor" in page


def test_streaming_harness_times_every_engine_with_equal_rows(tmp_path):
    """Section 7: old, scalar, batch and book per asset per bar, rows identical across
    engines, the page section and the plot."""
    from benchmarks import bench_streaming

    res = bench_streaming.measure(
        assets=(1, 9), repeats=1, budget=20, single_bars=120, log=lambda _m: None
    )
    assert [r["assets"] for r in res["rows"]] == [1, 9]
    for r in res["rows"]:
        assert r["same_rows"] and r["bars_timed"] == max(10, 20 // r["assets"])
        assert all(_finite_positive(r[k]) for k in ("old_us", "scalar_us", "batch_us", "book_us"))
        assert r["speedup"] == pytest.approx(r["old_us"] / min(r["scalar_us"], r["batch_us"]))
    assert [r["book_engine"] for r in res["rows"]] == ["scalar", "batch"]
    assert res["single"]["identical_rows"] and res["single"]["bars"] == 120
    png = bench_streaming.plot(res, tmp_path / "s.png")
    assert png.stat().st_size > 0
    base = {"generated": "now", "quick": True, "only": [], "threads": 1, "errors": {}}
    base.update(total_seconds=1.0, machine=machine_info())
    page = report.markdown({**base, "streaming": {**res, "plot": "s.png"}}, None)
    assert "## 7. Streaming features" in page and "![streaming cost vs assets](s.png)" in page
    assert "| 9 |" in page and "(batch)" in page


#: a demo result from before the floor, CPU and instruction figures were recorded
_DEMO_BASE = {
    "assets": 5,
    "bars": 8736,
    "folds": 4,
    "architecture": "shared_bottom",
    "repeats": 3,
    "seconds": {"empty": 10.0, "precomputed": 13.0, "live": 16.0},
    "decisions": {"precomputed": 3273, "live": 3273},
    "ratio_precomputed": 1.3,
    "ratio_live": 1.6,
}


def test_demo_section_shows_the_same_orders_floor_and_cpu_ratios():
    """The demo page section renders the floor and CPU-time table when the results have
    them, and still renders results from before they were recorded."""
    base = dict(_DEMO_BASE)
    old = "\n".join(report._demo_section(base))
    assert "same orders" not in old and "1.30" in old
    new = dict(base, orders=1432, ratio_same_orders=1.25)
    new["seconds"] = dict(base["seconds"], same_orders=12.5)
    new["cpu_seconds"] = {"empty": 4.0, "precomputed": 5.6, "live": 6.4, "same_orders": 5.0}
    text = "\n".join(report._demo_section(new))
    assert "1,432 orders" in text
    rows = [line for line in text.splitlines() if line.startswith(("| wall", "| CPU"))]
    assert len(rows) == 2
    assert "| 12.50 (1.25) |" in rows[0] and "| 1.04 | 1.28 |" in rows[0]  # 13/12.5, 16/12.5
    assert "| 5.00 (1.25) |" in rows[1] and "| 1.12 | 1.28 |" in rows[1]  # 5.6/5, 6.4/5
    assert "precomputed 1.120 (missed), live 1.280 (missed)" in text
    new["min_cpu_seconds"] = {"empty": 3.9, "precomputed": 5.2, "live": 5.3, "same_orders": 5.0}
    text = "\n".join(report._demo_section(new))
    rows = [line for line in text.splitlines() if line.startswith("| CPU, min")]
    assert len(rows) == 1 and "| 1.04 | 1.06 |" in rows[0]  # 5.2/5, 5.3/5


def test_demo_harness_runs_every_variant_in_its_own_process_in_rotating_order(
    monkeypatch, tmp_path
):
    """Each run is one child process (``_spawn``); round 0 runs precomputed before the
    replay of its orders, later rounds rotate."""
    from benchmarks import bench_demo

    calls = []

    def spawn(variant, models, plan):
        calls.append(variant)
        if variant == "precomputed":
            plan.write_bytes(b"x")
        return {"wall": 1.0, "cpu": 1.0, "value": 1.0}

    monkeypatch.setattr(bench_demo, "_spawn", spawn)
    runs = bench_demo._alternate(tmp_path, tmp_path / "plan.pkl", 3)
    assert {k: len(v) for k, v in runs.items()} == dict.fromkeys(bench_demo.VARIANTS, 3)
    assert calls[:4] == ["empty", "precomputed", "live", "same_orders"]
    assert calls[4:8] == ["precomputed", "live", "same_orders", "empty"]


def test_asset_sweep_section_and_plot(tmp_path):
    """``scale_assets.json`` rows reach the page (cost per asset-bar by stage) and the plot."""
    rows = []
    for n in (10, 100):
        stages = {"training": 2.0 * n, "backtest": 1.0 * n}
        cells = n * 2500
        rows.append(
            {
                "assets": n,
                "bars": 2500,
                "folds": 3,
                "wall_seconds": 3.0 * n,
                "peak_rss_mb": 500.0 + n,
                "stages": stages,
                "us_per_asset_bar": 1e6 * 3.0 * n / cells,
                "stage_us_per_asset_bar": {k: 1e6 * v / cells for k, v in stages.items()},
            }
        )
    sweep = {"command": "python -m benchmarks.bench_scale --assets 10,100", "generated": "x"}
    sweep["rows"] = rows
    png = report.plot_scale_assets(sweep, tmp_path / "assets.png")
    assert png is not None and png.stat().st_size > 0
    page = "\n".join(report._scale_assets_section(sweep, "assets.png"))
    assert "| 100 x 2,500 | 3 | 300.0 | 600 | 1200.0 | 800.0 | 400.0 |" in page
    assert "![scale per asset-bar](assets.png)" in page


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_only_what_runs_between_the_two_marks(tmp_path):
    """``between_marks``: the counts of the stretch between a command's two marks grow with
    the work done there (twice the loop: about twice the instructions), the work around
    them is not counted, and a command with one mark is refused."""
    from benchmarks import bench_demo

    def counted(inner: int, outer: int, marks: int = 2) -> int:
        code = (
            f"import os\nsum(range({outer}))\nos.getppid()\nsum(range({inner}))\n"
            + "os.getppid()\n" * (marks - 1)
            + f"sum(range({outer}))\n"
        )
        name = f"run{inner}_{outer}_{marks}"
        counts, _ = bench_demo.between_marks([sys.executable, "-c", code], tmp_path, name)
        return counts["Ir"]

    small, double = counted(200_000, 0), counted(400_000, 0)
    assert 1.9 < double / small < 2.1
    # ten times the work outside the marks (counted, it would be ~21x): not counted; the
    # stretch itself moves a little with the allocator's state the outside work leaves
    assert 0.9 < counted(200_000, 2_000_000) / small < 1.2
    with pytest.raises(RuntimeError, match="expected two marks"):
        counted(1_000, 0, marks=1)
    code = "import os\nos.getppid()\nsum(range(1000))\nos.getppid()\n"
    cached, _ = bench_demo.between_marks([sys.executable, "-c", code], tmp_path, "c", cache=True)
    assert set(bench_demo._CYCLE_WEIGHTS) <= set(cached) and cached["Ir"] > 0


def test_demo_section_shows_the_instruction_counts():
    base = dict(_DEMO_BASE)
    assert "instructions" not in "\n".join(report._demo_section(base))
    ins = {"empty": 20e9, "same_orders": 22e9, "precomputed": 23.1e9, "live": 24.42e9}
    cg = {"instructions": ins, "ratio_to_floor": {"precomputed": 1.05, "live": 1.11}}
    text = "\n".join(report._demo_section(dict(base, instructions=cg)))
    assert "| instructions (G) | 20.000 | 22.000 | 23.100 (1.050) | 24.420 (1.110) |" in text
    assert "precomputed 1.050 (met), live 1.110 (missed)" in text
    assert "cycle estimate" not in text
    cyc = {"empty": 30e9, "same_orders": 33e9, "precomputed": 34e9, "live": 37e9}
    cg = dict(cg, estimated_cycles=cyc, cycles_ratio_to_floor={"precomputed": 1.03, "live": 1.12})
    text = "\n".join(report._demo_section(dict(base, instructions=cg)))
    assert "| callgrind's cycle estimate (G) | 30.000 | 33.000 | 34.000 (1.030) |" in text
