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
    assert "2 of 6 jobs failed" in result.output
    assert "shared_bottom+equal/seed_0" in result.output and "bogus" in result.output
    assert (
        "Traceback" in (out / "runs" / "shared_bottom+equal" / "seed_1" / "error.txt").read_text()
    )
    rows = pd.read_csv(out / "comparison.csv").set_index("variant")
    assert list(rows.index) == [
        "shared_bottom+equal",
        "shared_bottom+uncertainty",
        "single_task[shared_bottom]",
        "buy_and_hold",
    ]
    assert list(rows["seeds_ok"]) == [0, 2, 2, 1]
    mtl = rows.loc["shared_bottom+uncertainty"]
    runs = out / "runs" / "shared_bottom+uncertainty"
    seeds = [_sharpe(runs / f"seed_{s}") for s in (0, 1)]
    assert mtl["sharpe_mean"] == pytest.approx(sum(seeds) / 2)
    assert mtl["sharpe_std"] == pytest.approx(abs(seeds[0] - seeds[1]) / 2**0.5)
    assert mtl["sharpe_diff_low"] <= mtl["sharpe_diff"] <= mtl["sharpe_diff_high"]
    assert 0 <= mtl["dsr"] <= mtl["psr"] <= 1  # deflating for 2 trials can only lower it
    bh = json.loads((out / "baselines" / "buy_and_hold" / "metrics.json").read_text())
    assert rows.loc["buy_and_hold", "sharpe_mean"] == pytest.approx(bh["portfolio"]["sharpe"])
    md = (out / "comparison.md").read_text()
    assert "single_task[shared_bottom]" in md and "Failed jobs" in md and "±" in md
    assert (out / "comparison.html").is_file() and (out / "plots" / "sharpe_diff.png").is_file()


def test_compare_rerun_skips_finished_jobs(compared: tuple[Path, object]) -> None:
    out, _ = compared
    before = (out / "comparison.csv").read_text()
    again = CliRunner().invoke(main, ["compare", *COMPARE, "--out", str(out), "--workers", "1"])
    assert again.exit_code == 1
    assert again.output.count("skipped (done)") == 4  # per-job status lines (not --quiet)
    assert again.output.count("FAILED") == 2  # the failed jobs were retried
    assert (out / "comparison.csv").read_text() == before


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
    assert result.exit_code == 1 and "2 of 6 jobs failed" in result.output
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


def test_readme_backtrader_snippet_runs(first_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The plain-Backtrader snippet of docs/quickstart_snippet.md works on a run's checkpoints."""
    text = (HERE.parents[1] / "docs" / "quickstart_snippet.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 16
    code = code.replace('since="2024-01-01"', 'since="2024-01-01", until="2024-02-10"')
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo_crypto").symlink_to(first_run)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "quickstart_snippet.md", "exec"), namespace)
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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / "fold_000.pt"
    deadline = time.monotonic() + 120
    # train_log.csv is rewritten after every finished fold: wait for fold 0, then interrupt
    while (
        not (out / "train_log.csv").exists() and proc.poll() is None and time.monotonic() < deadline
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
