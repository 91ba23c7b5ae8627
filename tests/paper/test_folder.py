"""The paper state folder: one process at a time (the lock ``run``/``train``/``compare``
use), a damaged journal refused with one line, operational settings changeable on resume,
and a bounded run that gives up on an exchange that stays down."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from data_testkit import ExchangeClock
from paper_testkit import HOUR, START, Lockstep, journal_has, paper_config_dict
from test_crash import _Child

from mtl_bt import config as config_mod
from mtl_bt.cli import main
from mtl_bt.paper.state import PaperState

DOWN = "http://127.0.0.1:9"  # nothing listens there: every connection is refused


def _toml(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "paper.toml"
    path.write_text(config_mod.dumps(config_mod.from_dict(data)))
    return path


def _paper(config: Path, model, out: Path, *more: str):
    args = ["paper", str(config), "--model", str(model), "--out", str(out), "--quiet", *more]
    return CliRunner().invoke(main, args)


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _run_bars(clock, config, model, out, bars: int, *more: str, resumed: bool = False):
    """``bars`` decided bars (a resumed run waits for the clock to move past its last)."""
    advance = bars if resumed else bars - 1
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=advance):
        result = _paper(config, model, out, "--max-bars", str(bars), *more)
    assert result.exit_code == 0, result.output
    return result


# -- the lock -----------------------------------------------------------------------------


def test_second_process_on_the_folder_exits_2_naming_the_holder_then_a_dead_ones_lock_is_taken(
    exchange, paper_model, tmp_path
):
    clock = ExchangeClock(START, speed=0.0)  # paused: the first run waits for its second bar
    url, _ = exchange(clock)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(paper_config_dict(url)))
    out = tmp_path / "paper"
    until = START.floor("1h") + 40 * HOUR
    child = _Child([str(cfg_path), str(paper_model), str(out), until.isoformat()])
    try:
        deadline = time.monotonic() + 60
        while not journal_has(out / "paper.sqlite")(START.floor("1h") - HOUR):
            assert time.monotonic() < deadline and child.poll() is None, child.error()
            time.sleep(0.02)
        config = _toml(tmp_path, paper_config_dict(url))
        # bounded by --until (already reached): without a lock it would end on its own
        until_now = START.floor("1h").isoformat()
        line = _one_line_error(_paper(config, paper_model, out, "--until", until_now))
        assert f"is in use by another mtl-bt run (pid {child.pid}" in line, line
        assert str(out) in line
    finally:
        os.kill(child.pid, signal.SIGKILL)  # dies holding the lock
        child.wait(timeout=30)
    bars = sqlite3.connect(out / "paper.sqlite").execute("SELECT COUNT(*) FROM bars").fetchone()
    assert bars[0] == 1  # the refused second run wrote nothing into the first one's journal
    with Lockstep(clock, journal_has(out / "paper.sqlite"), bars=1):
        result = CliRunner().invoke(
            main,
            ["paper", str(config), "--model", str(paper_model), "--out", str(out)]
            + ["--max-bars", "1"],
        )
    assert result.exit_code == 0, result.output
    assert f"(pid {child.pid}) is no longer running" in result.output  # said, then taken over
    assert f"took over the lock {out.parent / '.paper.lock'}" in result.output
    assert "resuming the paper run" in result.output and "1 bars in the journal" in result.output
    assert not (out.parent / ".paper.lock").exists()  # released at the end


# -- state damage -------------------------------------------------------------------------


def _journal_with_bars(out: Path, bars: int = 3) -> Path:
    """A real journal holding ``bars`` bars, and its exports."""
    from mtl_bt.paper.state import BarRecord

    out.mkdir(parents=True, exist_ok=True)
    state = PaperState(out / "paper.sqlite")
    for i in range(bars):
        when = (START.floor("1h") + i * HOUR).isoformat()
        state.commit(BarRecord(when, 1e5, 1e5, "0" * 64, ["BTC/USDT"]))
    state.export(out)
    state.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    state.close()
    return out / "paper.sqlite"


@pytest.mark.parametrize(
    "damage, says",
    [
        ("empty", "is empty (0 bytes)"),
        ("header", "is not a readable SQLite journal"),
        ("page", "is corrupt"),
        ("missing", "is missing but equity.csv holds 3 decided bars"),
        ("no_bars", "holds no decided bar but equity.csv holds 3"),
    ],
)
def test_damaged_journal_is_refused_with_one_line_naming_the_file_and_the_choices(
    paper_model, tmp_path, damage, says
):
    out = tmp_path / "paper"
    db = _journal_with_bars(out)
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "header":
        data = bytearray(db.read_bytes())
        data[:16] = b"not a database!!"
        db.write_bytes(bytes(data))
    elif damage == "page":
        data = bytearray(db.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        for p in range(1, len(data) // page):  # every b-tree page but the schema's
            data[p * page : p * page + 8] = b"\xff" * 8
        db.write_bytes(bytes(data))
    elif damage == "missing":
        db.unlink()
    elif damage == "no_bars":
        db.unlink()
        PaperState(db).close()
    before = db.read_bytes() if db.exists() else None
    equity = (out / "equity.csv").read_bytes()
    line = _one_line_error(_paper(_toml(tmp_path, paper_config_dict(DOWN)), paper_model, out))
    assert f"{db} {says}" in line, line
    assert "--reset" in line and "Restore paper.sqlite" in line
    # nothing was restarted or rewritten
    assert (db.read_bytes() if db.exists() else None) == before
    assert (out / "equity.csv").read_bytes() == equity
    assert not (tmp_path / ".paper.lock").exists()


def test_state_folder_that_is_a_file_is_one_line_error(paper_model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "paper"
    line = _one_line_error(_paper(_toml(tmp_path, paper_config_dict(DOWN)), paper_model, out))
    assert f"paper state folder --out {out} is not writable" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("resumed", [False, True])
def test_read_only_state_folder_is_one_line_error(paper_model, tmp_path, resumed):
    out = tmp_path / "paper"
    if resumed:
        _journal_with_bars(out)
    else:
        out.mkdir()
    out.chmod(0o500)
    try:
        line = _one_line_error(_paper(_toml(tmp_path, paper_config_dict(DOWN)), paper_model, out))
    finally:
        out.chmod(0o700)
    assert str(out) in line and "not writable" in line


# -- settings on resume -------------------------------------------------------------------


def test_operational_settings_change_on_resume_and_are_journaled_decision_settings_refused(
    exchange, paper_model, tmp_path
):
    clock = ExchangeClock(START, speed=0.0)
    url, _ = exchange(clock)
    config = _toml(tmp_path, paper_config_dict(url))
    out = tmp_path / "paper"
    _run_bars(clock, config, paper_model, out, 1)
    more = ["--set", "paper.poll_seconds=0.03", "--set", "data.options.retries=5"]
    _run_bars(clock, config, paper_model, out, 1, *more, resumed=True)
    db = sqlite3.connect(out / "paper.sqlite")
    sessions = [
        (bars, json.loads(op)) for bars, op in db.execute("SELECT bars, operational FROM sessions")
    ]
    assert [b for b, _ in sessions] == [0, 1]
    assert sessions[0][1]["paper.poll_seconds"] == 0.02
    assert sessions[1][1]["paper.poll_seconds"] == 0.03
    assert sessions[1][1]["data.options.retries"] == 5
    assert db.execute("SELECT COUNT(*) FROM bars").fetchone()[0] == 2
    db.close()
    result = _paper(config, paper_model, out, "--set", "backtest.cash=5000", "--max-bars", "1")
    line = _one_line_error(result)
    assert "other decision settings: backtest.cash (100000.0 -> 5000.0)" in line, line
    assert "paper.poll_seconds" in line and "--reset" in line


# -- exchange down at start ---------------------------------------------------------------


def test_exchange_down_at_start_of_a_bounded_run_gives_up_with_exit_2(paper_model, tmp_path):
    """The exchange never answers and the run has --max-bars: it retries with backoff, then
    gives up (exit 2) instead of polling for ever; the identical errors are one line and
    a count. Run as a separate process with a timeout, so the test ends either way."""
    data = paper_config_dict(DOWN)
    data["data"]["options"].update(retries=0)
    data["paper"].update(poll_seconds=0.01)
    config = _toml(tmp_path, data)
    out = tmp_path / "paper"
    cli = str(Path(sys.executable).parent / "mtl-bt")
    args = [cli, "paper", str(config), "--model", str(paper_model), "--out", str(out)]
    try:
        done = subprocess.run(
            [*args, "--max-bars", "1", "--give-up-seconds", "1.5"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a bounded run with the exchange down never ended: {exc.stderr!r:.600}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "gave up (give_up_seconds = 1.5" in lines[-1] and "Traceback" not in done.stderr
    failed = [ln for ln in lines if "failed after 1 attempts" in ln and "gave up" not in ln]
    # one line for the error, one with the count of its repeats (the backoff keeps them few)
    assert len(failed) == 2, lines
    assert "the same error" in failed[1] and "more times" in failed[1]
    # a transition, said once, with what it is (unreachable, not rate-limited)
    assert sum("DISCONNECTED (cannot reach ccxt)" in ln for ln in lines) == 1, lines
    assert not (tmp_path / ".paper.lock").exists()
