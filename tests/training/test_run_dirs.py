"""One run owns its output folder: lock, staging, manifest, fold table (issue #17, items 2, 4).

Real `mtl-bt train` / `mtl-bt backtest` runs (CliRunner, tiny config on the bundled sample).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtl_bt import rundir
from mtl_bt.cli import main
from mtl_bt.training import pipeline

CONFIG = """
[data]
source = "sample"
symbols = ["BTC/USDT", "ETH/USDT"]
timeframe = "1h"
since = "2024-02-01"
until = "2024-03-05"

[features]
names = ["log_return", "volatility"]

[[tasks]]
name = "return"
horizons = [1]

[model]
architecture = "shared_bottom"
hidden = [4]

[training]
epochs = 1
batch_size = 256
threads = 1

[walk_forward]
train_bars = 300
test_bars = 100
max_folds = 3
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(CONFIG)
    return path


def _train(config_file, out, *extra):
    return CliRunner().invoke(
        main, ["train", str(config_file), "--out", str(out), "--quiet", *extra]
    )


@pytest.fixture(scope="module")
def trained(config_file, tmp_path_factory) -> Path:
    """A finished 3-fold train folder (copied per test before it is changed)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    res = _train(config_file, out)
    assert res.exit_code == 0, res.output
    return out


def _copy(trained: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(trained, dest)
    return dest


def _backtest(config_file, model, out, *more_models):
    args = ["backtest", str(config_file), "--model", str(model), "--out", str(out), "--quiet"]
    for m in more_models:
        args += ["--model", str(m)]
    return CliRunner().invoke(main, args)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_finished_run_has_a_manifest_of_every_file(trained):
    doc = json.loads((trained / "manifest.json").read_text())
    assert doc["kind"] == "train" and doc["complete"] is True
    files = {p.relative_to(trained).as_posix() for p in trained.rglob("*") if p.is_file()}
    assert set(doc["files"]) == files - {"manifest.json"}
    for rel, entry in doc["files"].items():
        assert rundir.sha256_file(trained / rel) == entry["sha256"]
    assert not list(trained.parent.glob(".run.*"))  # no lock, staging or old folder left


def test_a_rerun_replaces_the_previous_run_as_a_whole(config_file, trained, tmp_path):
    out = _copy(trained, tmp_path)
    assert len(list((out / "checkpoints").glob("fold_*.pt"))) == 3
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1")
    assert res.exit_code == 0, res.output
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["fold_000.pt"]  # no stale folds
    doc = json.loads((out / "manifest.json").read_text())
    assert sorted(k for k in doc["files"] if k.endswith(".pt")) == ["checkpoints/fold_000.pt"]


def test_a_second_run_into_a_locked_folder_is_a_clear_error(config_file, tmp_path):
    out = tmp_path / "run"
    lock = rundir.acquire(out.absolute())  # this (live) process holds it
    try:
        res = _train(config_file, out)
    finally:
        rundir.release(lock)
    assert res.exit_code == 2
    assert "is in use by another mtl-bt run (pid" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(config_file, tmp_path):
    out = tmp_path / "run"
    lock = rundir.lock_path(out.absolute())
    lock.write_text(json.dumps({"pid": _dead_pid(), "started": "yesterday", "command": "x"}))
    (tmp_path / ".run.staging-1").mkdir()  # and the dead run's staging folder
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1")
    assert res.exit_code == 0, res.output
    assert (out / "manifest.json").exists()
    assert not lock.exists() and not (tmp_path / ".run.staging-1").exists()


def test_a_folder_with_other_files_is_refused_without_force(config_file, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1")
    assert (
        res.exit_code == 2 and "not an mtl-bt run folder" in res.output and "--force" in res.output
    )
    assert (out / "notes.txt").read_text() == "my notes"
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1", "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "notes.txt").exists() and (out / "manifest.json").exists()


def test_an_interrupted_rerun_leaves_the_previous_run_untouched(
    config_file, trained, tmp_path, monkeypatch
):
    out = _copy(trained, tmp_path)
    before = json.loads((out / "manifest.json").read_text())
    real = pipeline.fit

    def fit_then_interrupt(*args, **kwargs):
        if kwargs["fold"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit", fit_then_interrupt)
    res = _train(config_file, out, "--set", "training.seed=7")
    assert res.exit_code == 130
    assert json.loads((out / "manifest.json").read_text()) == before
    for rel, entry in before["files"].items():  # byte for byte the previous run
        assert rundir.sha256_file(out / rel) == entry["sha256"]
    kept = tmp_path / "run.interrupted"  # the stopped run's finished fold is not lost
    assert [p.name for p in (kept / "checkpoints").iterdir()] == ["fold_000.pt"]
    assert json.loads((kept / "manifest.json").read_text())["complete"] is False


def test_backtest_refuses_a_checkpoint_the_manifest_does_not_list(config_file, trained, tmp_path):
    out = _copy(trained, tmp_path)
    shutil.copy(out / "checkpoints" / "fold_002.pt", out / "checkpoints" / "fold_003.pt")
    res = _backtest(config_file, out, tmp_path / "bt")
    assert res.exit_code == 2 and "fold_003.pt is not part of the run" in res.output
    assert not (tmp_path / "bt").exists()


def test_backtest_refuses_a_checkpoint_changed_after_the_run(config_file, trained, tmp_path):
    out = _copy(trained, tmp_path)
    shutil.copy(out / "checkpoints" / "fold_000.pt", out / "checkpoints" / "fold_001.pt")
    res = _backtest(config_file, out, tmp_path / "bt")
    assert res.exit_code == 2 and "fold_001.pt was changed after the run" in res.output


def test_a_missing_fold_is_an_error_naming_it(config_file, trained, tmp_path):
    out = _copy(trained, tmp_path)
    (out / "checkpoints" / "fold_001.pt").unlink()
    res = _backtest(config_file, out, tmp_path / "bt")
    assert res.exit_code == 2 and "['checkpoints/fold_001.pt']" in res.output
    (out / "manifest.json").unlink()  # without a manifest, the fold table (folds.json) says so
    res = _backtest(config_file, out, tmp_path / "bt")
    assert res.exit_code == 2
    assert "fold 1 of the run's fold table (folds.json) has no checkpoint" in res.output
    # single files: a hole between the folds given is an error too
    ckpts = out / "checkpoints"
    res = _backtest(config_file, ckpts / "fold_000.pt", tmp_path / "bt", ckpts / "fold_002.pt")
    assert res.exit_code == 2 and "fold 1 is missing between fold 0 and fold 2" in res.output


def test_the_same_fold_twice_is_an_error(config_file, trained, tmp_path):
    ckpt = trained / "checkpoints" / "fold_001.pt"
    res = _backtest(config_file, ckpt, tmp_path / "bt", ckpt)
    assert res.exit_code == 2 and "fold 1 is given twice" in res.output
    res = _backtest(config_file, trained, tmp_path / "bt", ckpt)
    assert res.exit_code == 2 and "fold 1 is given twice" in res.output


def test_backtest_of_a_whole_run_writes_its_own_manifest(config_file, trained, tmp_path):
    res = _backtest(config_file, trained, tmp_path / "bt")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "bt" / "manifest.json").read_text())
    assert doc["kind"] == "backtest" and "metrics.json" in doc["files"]


def test_backtest_draws_no_progress_bar_into_a_non_terminal(config_file, trained, tmp_path):
    res = CliRunner().invoke(
        main, ["backtest", str(config_file), "--model", str(trained), "--out", str(tmp_path / "b")]
    )
    assert res.exit_code == 0, res.output
    assert "bar/s" not in res.output and "\r" not in res.output  # no tqdm in a log file
    assert "trades: sharpe" in res.output  # the summary line still is


def test_compare_takes_the_lock_too(config_file, tmp_path):
    out = tmp_path / "cmp"
    lock = rundir.acquire(out.absolute())
    try:
        res = CliRunner().invoke(main, ["compare", str(config_file), "--out", str(out)])
    finally:
        rundir.release(lock)
    assert res.exit_code == 2 and "is in use by another mtl-bt run" in res.output


def test_a_run_folder_from_before_manifests_is_replaced_without_force(config_file, tmp_path):
    out = tmp_path / "old"
    (out / "checkpoints").mkdir(parents=True)
    for name in ("config.toml", "metrics.json", "report.md", "checkpoints/fold_007.pt"):
        (out / name).write_text("old")
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1")
    assert res.exit_code == 0, res.output
    assert not (out / "report.md").exists() and not (out / "checkpoints" / "fold_007.pt").exists()


# -- symlinks and a full disk (issue #28) ------------------------------------------------
def _count_fits(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = pipeline.fit

    def counting(*args, **kwargs):
        calls.append(kwargs.get("fold"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit", counting)
    return calls


def test_a_symlinked_out_writes_into_its_target_and_keeps_the_link(config_file, tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link_out"
    link.symlink_to(target)
    for _ in range(2):  # the second run replaces the first one inside the target
        res = _train(config_file, link, "--set", "walk_forward.max_folds=1")
        assert res.exit_code == 0, res.output
        assert link.is_symlink() and link.resolve() == target.resolve()
        assert json.loads((target / "manifest.json").read_text())["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link_out", "real"]  # nothing stale


@pytest.mark.parametrize("kind", ["dangling", "self"])
def test_a_broken_symlink_out_is_refused_before_any_work(config_file, tmp_path, monkeypatch, kind):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone" if kind == "dangling" else link)
    fits = _count_fits(monkeypatch)
    res = _train(config_file, link)
    assert res.exit_code == 2, res.output
    assert "is a symlink to" in res.output and str(link) in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert fits == []  # nothing trained, nothing lost
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _pyarrow_full_disk(monkeypatch, after: int = 0):
    """The parquet writer fails the way pyarrow does on a full disk (an OSError whose errno
    is only in its text), after ``after`` successful writes."""
    import pandas as pd

    real = pd.DataFrame.to_parquet
    seen = [0]

    def full(self, path, *args, **kwargs):
        seen[0] += 1
        if seen[0] > after:
            Path(path).write_bytes(b"PAR1" + b"\0" * 100)  # a part was written
            raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)


def test_a_full_disk_is_one_line_naming_the_path_and_a_rerun_works(
    config_file, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    _pyarrow_full_disk(monkeypatch)
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1")
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith("Error: no space left on the device holding --out")
    assert f"while writing {out / 'predictions.parquet'}" in line and "free" in line
    assert "needs more than" in line
    assert not list(tmp_path.glob(".run.*"))  # staging, lock and old folders cleaned
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written file
    monkeypatch.undo()  # space freed: the same command works
    res = _train(config_file, out, "--set", "walk_forward.max_folds=1")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=60k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespace to mount a tmpfs in")
def test_a_real_16_kb_file_system_fills_up_during_train(config_file, tmp_path):
    """The real thing: a 16 kB tmpfs (in a private mount namespace) fills up mid-run: one
    line, exit 2, no staging folder left (a rerun with space is tested above)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    cli = [str(Path(sys.executable).parent / "mtl-bt")]
    train = " ".join(
        [*cli, "train", str(config_file), "--out", f"{disk}/run", "--quiet"]
        + ["--set", "walk_forward.max_folds=1"]
    )
    script = (
        f"mount -t tmpfs -o size=16k tmpfs {disk} && "
        f"{train} 2>{tmp_path}/err; echo $? >{tmp_path}/rc; ls -a {disk} >{tmp_path}/left"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, timeout=300)
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "2", err
    assert err.startswith("Error: no space left on the device holding --out"), err
    assert len(err.strip().splitlines()) == 1
    assert not [n for n in (tmp_path / "left").read_text().split() if "staging" in n]


# -- what the checkpoint decides is said (issue #28) -----------------------------------------
def test_backtest_warns_about_config_settings_the_checkpoint_overrides(
    config_file, trained, tmp_path
):
    base = ["backtest", str(config_file), "--model", str(trained), "--quiet"]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "same")])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output  # the config it was trained with: nothing to say
    more = ["--set", "model.hidden=[16, 8]", "--set", "model.dropout=0.3"]
    more += ["--set", "features.params={volatility = {window = 7}}"]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "other"), *more])
    assert res.exit_code == 0, res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("warning:")]
    assert "the checkpoint, not the config, decides 3 setting(s)" in line
    assert "model.hidden: config [16, 8], checkpoint [4]" in line
    assert "model.dropout: config 0.3, checkpoint 0.1" in line
    assert "features.params.volatility.window: config 7, checkpoint None" in line


def test_a_lookback_longer_than_the_training_window_is_named(config_file, tmp_path):
    res = _train(
        config_file, tmp_path / "o", "--set", 'model.sequence.encoder="gru"',
        "--set", "model.sequence.lookback=512",
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "model.sequence.lookback = 512" in res.output and "Traceback" not in res.output
