"""`mtl-bt run`, `compare` and `demo` end to end on a tiny real config (bundled crypto bars).

Real data, real torch training, real Backtrader runs; sizes are tiny so the folder stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.pipeline import RUN_ARTEFACTS

HERE = Path(__file__).parent
TINY = str(HERE / "tiny.toml")
QUICK = ["--set", "report.plots=false", "--quiet"]


def _invoke(*args: str) -> object:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "a"
    result = _invoke("run", TINY, "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert "Sharpe" in result.output and "report.html" in result.output
    return out


def test_run_writes_every_artefact_and_report_has_the_metrics(first_run: Path) -> None:
    for name in (*RUN_ARTEFACTS, "report.md", "report.html"):
        assert (first_run / name).is_file(), name
    assert sorted(p.name for p in (first_run / "checkpoints").iterdir()) == [
        "fold_000.pt",
        "fold_001.pt",
    ]
    assert (first_run / "plots" / "equity.png").is_file()
    metrics = json.loads((first_run / "metrics.json").read_text())
    assert metrics["periods_per_year"] == 24 * 365
    sharpe = metrics["portfolio"]["sharpe"]
    from mtl_bt.report.document import fmt

    for report in ("report.md", "report.html"):
        text = (first_run / report).read_text()
        assert fmt(sharpe) in text and "BTC/USDT" in text and "return@4" in text
    # the returns the metrics come from are the out-of-sample bars only
    returns = pd.read_csv(first_run / "returns.csv", parse_dates=["datetime"])
    folds = json.loads((first_run / "data.json").read_text())["folds"]
    assert returns["datetime"].min() >= pd.Timestamp(folds[0]["test_start"])
    bh = pd.read_csv(
        first_run / "baselines" / "buy_and_hold" / "returns.csv", parse_dates=["datetime"]
    )
    assert bh["datetime"].min() >= pd.Timestamp(folds[0]["test_start"])
    assert not list(first_run.rglob("*.tmp"))


def test_same_config_and_seed_give_identical_metrics(first_run: Path, tmp_path: Path) -> None:
    result = _invoke("run", TINY, "--out", str(tmp_path / "b"), *QUICK)
    assert result.exit_code == 0
    assert (tmp_path / "b" / "metrics.json").read_bytes() == (
        first_run / "metrics.json"
    ).read_bytes()
    assert (tmp_path / "b" / "returns.csv").read_bytes() == (first_run / "returns.csv").read_bytes()


# "bogus" is an option the equal weighting rejects inside its job; the uncertainty variant and
# the single-task baseline do not get it, so they must complete and be tabulated.
COMPARE = [
    TINY,
    "--weightings",
    "equal,uncertainty",
    "--seeds",
    "2",
    "--set",
    "training.epochs=1",
    "--set",
    "weighting.options.bogus=1",
    "--baselines",  # the simple baselines and placebos have their own test_compare_simple.py
    "none",
    "--placebo-draws",
    "0",
]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One compare in 2 local worker processes, shared by the tests below."""
    out = tmp_path_factory.mktemp("cmp") / "local"
    result = CliRunner().invoke(
        main, ["compare", *COMPARE, "--out", str(out), "--workers", "2", "--quiet"]
    )
    return out, result


def _sharpe(folder: Path) -> float:
    return json.loads((folder / "metrics.json").read_text())["portfolio"]["sharpe"]


def test_compare_failure_reported_others_written(compared: tuple[Path, object]) -> None:
    out, result = compared
    assert result.exit_code == 1, result.output
    # 8 variants x 2 seeds; the equal MTL runs fail, and so do the no_aux runs trading them
    assert "4 of 16 jobs failed" in result.output
    assert "shared_bottom+equal/seed_0" in result.output and "bogus" in result.output
    assert (
        "Traceback" in (out / "runs" / "shared_bottom+equal" / "seed_1" / "error.txt").read_text()
    )
    rows = pd.read_csv(out / "comparison.csv").set_index("variant")
    assert list(rows.index) == [
        "shared_bottom+equal",
        "shared_bottom+uncertainty",
        "single_task[shared_bottom]",
        "single_task[shared_bottom]:direction@4",
        "single_task[shared_bottom]:volatility@4",
        "st_ensemble[shared_bottom]",
        "shared_bottom+equal:no_aux",
        "shared_bottom+uncertainty:no_aux",
        "buy_and_hold",
    ]
    assert list(rows["seeds_ok"]) == [0, 2, 2, 2, 2, 2, 0, 2, 1]
    mtl = rows.loc["shared_bottom+uncertainty"]
    runs = out / "runs" / "shared_bottom+uncertainty"
    seeds = [_sharpe(runs / f"seed_{s}") for s in (0, 1)]
    assert mtl["sharpe_mean"] == pytest.approx(sum(seeds) / 2)
    assert mtl["sharpe_std"] == pytest.approx(abs(seeds[0] - seeds[1]) / 2**0.5)
    assert mtl["sharpe_diff_low"] <= mtl["sharpe_diff"] <= mtl["sharpe_diff_high"]
    assert mtl["sharpe_diff_ro_low"] <= mtl["sharpe_diff_ro"] <= mtl["sharpe_diff_ro_high"]
    assert mtl["delta_m_low"] <= mtl["delta_m"] <= mtl["delta_m_high"]
    assert "Δm" in (out / "comparison.md").read_text()
    assert 0 <= mtl["dsr"] <= mtl["psr"] <= 1  # deflating for 2 trials can only lower it
    bh = json.loads((out / "baselines" / "buy_and_hold" / "metrics.json").read_text())
    assert rows.loc["buy_and_hold", "sharpe_mean"] == pytest.approx(bh["portfolio"]["sharpe"])
    md = (out / "comparison.md").read_text()
    assert "single_task[shared_bottom]" in md and "Failed jobs" in md and "±" in md
    assert (out / "comparison.html").is_file() and (out / "plots" / "sharpe_diff.png").is_file()


def test_compare_fold_jobs_join_to_the_sequential_run(
    compared: tuple[Path, object], tmp_path: Path
) -> None:
    """Per-fold jobs + the joining backtest give exactly what one sequential run gives."""
    from mtl_bt import config as config_mod
    from mtl_bt import pipeline

    out, _ = compared
    run_dir = out / "runs" / "shared_bottom+uncertainty" / "seed_1"
    folds = sorted((run_dir / "folds").glob("fold_*"))
    assert len(folds) == 2 and all((f / "job.json").is_file() for f in folds)
    cfg = config_mod.load(run_dir / "config.toml")
    seq = pipeline.run(cfg, tmp_path / "seq", report=False, buy_and_hold=False)
    joined = json.loads((run_dir / "metrics.json").read_text())
    assert joined["portfolio"] == seq.metrics["portfolio"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(run_dir / "predictions.parquet"),
        pd.read_parquet(tmp_path / "seq" / "predictions.parquet"),
    )
    for name in ("orders.csv", "returns.csv", "fold_metrics.csv"):
        assert (run_dir / name).read_text() == (tmp_path / "seq" / name).read_text(), name


def test_compare_rerun_skips_finished_jobs(compared: tuple[Path, object]) -> None:
    out, _ = compared
    before = (out / "comparison.csv").read_text()
    again = CliRunner().invoke(main, ["compare", *COMPARE, "--out", str(out), "--workers", "1"])
    assert again.exit_code == 1
    skipped = [ln for ln in again.output.splitlines() if ln.endswith("skipped (done)")]
    # per-job status lines (not --quiet): 8 trained runs x 2 folds, then 12 finished runs
    assert len([ln for ln in skipped if "/fold_" in ln]) == 16
    assert len([ln for ln in skipped if "/fold_" not in ln]) == 12
    assert again.output.count("FAILED") == 4  # the failed jobs were retried
    assert (out / "comparison.csv").read_text() == before


def test_compare_multi_horizon_single_task_trades_the_signal_horizon(tmp_path: Path) -> None:
    """Tasks at several horizons, the signal trading the middle one: the single-task baseline
    keeps return@2 (not the first horizon, whose model would lack the traded head), is purged
    by the MTL model's largest horizon (4), so both get the same folds, and the comparison has
    the paired Sharpe difference."""
    from mtl_bt.config import TaskConfig, dumps, load

    base = load(TINY)
    cfg = base.model_copy(
        update={
            "tasks": [
                TaskConfig(name="return", horizons=[1, 2, 4]),
                TaskConfig(name="direction", horizons=[2, 4]),
                TaskConfig(name="volatility", horizons=[4]),
            ],
            "training": base.training.model_copy(update={"epochs": 1}),
            "walk_forward": base.walk_forward.model_copy(update={"max_folds": 1}),
            # the plain sign rule: the cost-aware default may never trade a 1-epoch model
            "backtest": base.backtest.model_copy(
                update={"signal": "sign", "signal_options": {"horizon": 2}}
            ),
            "report": base.report.model_copy(update={"plots": False}),
        }
    )
    path = tmp_path / "multi_horizon_tiny.toml"
    path.write_text(dumps(cfg))
    out = tmp_path / "cmp"
    result = _invoke(
        "compare", str(path), "--out", str(out), "--workers", "1", "--quiet", "--placebo-draws", "1"
    )
    assert result.exit_code == 0, result.output
    runs = out / "runs"
    mtl, single = (
        runs / "shared_bottom+equal" / "seed_0",
        runs / "single_task[shared_bottom]" / "seed_0",
    )
    for folder in (mtl, single):
        assert (folder / "job.json").is_file() and not (folder / "error.txt").exists()
    assert load(single / "config.toml").task_names() == ["return@2"]
    docs = {f: json.loads((f / "folds.json").read_text()) for f in (mtl, single)}
    assert docs[single]["summary"]["purge"] == docs[mtl]["summary"]["purge"] == 4
    bounds = {
        f: [
            {k: fold[k] for k in fold if k.endswith(("_start", "_end")) or k == "purge"}
            for fold in doc["folds"]
        ]
        for f, doc in docs.items()
    }
    assert bounds[single] and bounds[single] == bounds[mtl]
    rows = pd.read_csv(out / "comparison.csv").set_index("variant")
    assert rows.loc["single_task[shared_bottom]", "seeds_ok"] == 1
    # the simple baselines supply every head at every horizon: the rule trades them too
    assert rows.loc["linear", "seeds_ok"] == rows.loc["lightgbm", "seeds_ok"] == 1
    row = rows.loc["shared_bottom+equal"]
    assert row["seeds_ok"] == 1
    assert pd.notna(row["sharpe_diff"])
    assert row["sharpe_diff_low"] <= row["sharpe_diff"] <= row["sharpe_diff_high"]


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (pip install 'mtl-bt[ray]'); the Ray executor cannot be tested",
)
def test_local_processes_and_ray_give_the_same_comparison(compared: tuple[Path, object]) -> None:
    local, _ = compared
    out = local.parent / "ray"
    result = CliRunner().invoke(
        main,
        ["compare", *COMPARE, "--out", str(out), "--executor", "ray", "--workers", "2", "--quiet"],
    )
    assert result.exit_code == 1 and "4 of 16 jobs failed" in result.output
    a = (local / "comparison.csv").read_text()
    assert a == (out / "comparison.csv").read_text() and "single_task[shared_bottom]" in a


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nepohcs = 3\n")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "mtl-bt"),
            "run",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "epohcs" in lines[0] and "[training]" in lines[0]
    assert not (tmp_path / "o").exists()
    unknown = _invoke("compare", TINY, "--out", str(tmp_path / "c"), "--architectures", "nope")
    assert unknown.exit_code == 2 and "nope" in unknown.output


def test_demo_command_with_a_config_file(tmp_path: Path) -> None:
    result = _invoke("demo", "--config", TINY, "--out", str(tmp_path / "d"), *QUICK)
    assert result.exit_code == 0
    assert "Sharpe" in result.output and (tmp_path / "d" / "report.html").is_file()


def _python_block(path: Path) -> str:
    return path.read_text().split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_backtrader_snippet_runs(first_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The plain-Backtrader snippet of README.md runs as written on a run's checkpoints."""
    root = HERE.parents[1]
    code = _python_block(root / "README.md")
    assert code == _python_block(root / "docs" / "quickstart_snippet.md")  # the two copies agree
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 12, f"README snippet has {len(lines)} non-blank lines"
    assert "addstrategy(MTLStrategy, predictor=" in code and "cerebro.run()" in code
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo_crypto").symlink_to(first_run)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["cerebro"].broker.getvalue() != 10_000.0  # it traded


def test_ctrl_c_keeps_finished_artefacts_and_no_partial_files(tmp_path: Path) -> None:
    import signal
    import time

    import torch

    out = tmp_path / "interrupted"
    cmd = [
        str(Path(sys.executable).parent / "mtl-bt"),
        "run",
        TINY,
        "--out",
        str(out),
        "--quiet",
        "--set",
        "training.epochs=15",
        "--set",
        "training.patience=15",
        "--set",
        "walk_forward.max_folds=3",
        "--set",
        "walk_forward.test_bars=150",
    ]
    # Ctrl-C in a terminal reaches a process whose SIGINT is at its default; a shell that starts
    # the test suite in the background (`cmd &` without job control) ignores SIGINT, and the
    # child would inherit that and never see the interrupt
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = out / "checkpoints" / "fold_000.pt"
    deadline = time.monotonic() + 120
    # train_log.csv is rewritten after every finished fold (in the run's staging folder until
    # the run finishes): wait for fold 0, then interrupt
    while (
        not list(tmp_path.glob(".interrupted.staging-*/train_log.csv"))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no half-written temp files
    torch.load(first, weights_only=True)  # the finished fold's model is complete
    log = pd.read_csv(out / "train_log.csv")
    assert (log["fold"] == 0).sum() >= 1
    assert not (out / "metrics.json").exists() and not (out / "report.html").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and "KeyboardInterrupt" in manifest["stopped_by"]
    assert not list(tmp_path.glob(".interrupted.*"))  # no staging folder or lock left
