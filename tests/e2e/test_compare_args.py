"""`mtl-bt compare`'s arguments are checked before any work (issue #28), and the Ray executor
reaches a real cluster through an address, or says within a bounded time that it cannot."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.compare.executor import Job, run_jobs

HERE = Path(__file__).parent
TINY = str(HERE / "tiny.toml")


def _compare(tmp_path: Path, *args: str):
    return CliRunner().invoke(main, ["compare", TINY, "--out", str(tmp_path / "cmp"), *args])


def _one_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert "Traceback" not in res.output and lines[-1].startswith("Error: "), res.output
    return lines[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--address", "10.0.0.5:6379"], "--address 10.0.0.5:6379 is for a Ray cluster"),
        (["--connect-timeout", "5"], "--connect-timeout 5.0 is for a Ray cluster"),
        (["--executor", "ray", "--connect-timeout", "5"], "--connect-timeout is the wait"),
        (["--architectures", ","], "--architectures ',' names nothing"),
        (["--weightings", " , "], "--weightings ' , ' names nothing"),
    ],
)
def test_arguments_that_would_be_ignored_are_refused(tmp_path, args, message):
    line = _one_line(_compare(tmp_path, *args))
    assert message in line
    assert not (tmp_path / "cmp").exists()  # before any work


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(60)
def test_an_unreachable_ray_address_is_one_line_naming_it(tmp_path):
    address = f"127.0.0.1:{_closed_port()}"
    res = _compare(tmp_path, "--executor", "ray", "--address", address, "--connect-timeout", "2")
    line = _one_line(res)
    assert f"cannot reach the Ray cluster at {address} within 2 s" in line
    assert "--connect-timeout" in line and not (tmp_path / "cmp").exists()


@pytest.mark.timeout(60)
def test_an_address_that_does_not_answer_times_out(tmp_path):
    """A host that drops packets (here: a listening socket whose backlog is full) is given
    up after --connect-timeout, not retried for minutes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        fillers = []
        for _ in range(8):  # fill the accept backlog: further connects hang in SYN-SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.getsockname())
            fillers.append(s)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        res = _compare(
            tmp_path, "--executor", "ray", "--address", address, "--connect-timeout", "1"
        )
        for s in fillers:
            s.close()
    if res.exit_code == 2:
        assert "timed out" in _one_line(res)
    else:  # the kernel accepted anyway (backlog rounding): the probe passed, Ray is next
        pytest.skip("the loopback accepted the connection; the timeout path was not reached")


def _toy_jobs(out: Path) -> list[Job]:
    return [Job(f"x{x}", "_toy_jobs:square", {"x": x}, out / f"x{x}") for x in range(4)]


#: the test cluster's own token: Ray's default, ~/.ray/auth_token, is shared by every Ray
#: head of the user on this machine (another one may rewrite it meanwhile)
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


@pytest.fixture
def ray_head(tmp_path_factory):
    """A real Ray head on loopback (`ray start --head --block`, its own process group, so
    the test stops exactly the processes it started), workers able to import _toy_jobs."""
    port = _closed_port()
    temp = tmp_path_factory.mktemp("ray")
    log = temp / "head.log"
    env = {**os.environ, **RAY_AUTH, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
         "--disable-usage-stats", "--temp-dir", str(temp)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # ready when it says so (the GCS port accepts connections before the node is up)
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert head.poll() is None, f"ray start --head exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, (
                f"no Ray head after 120 s: {log.read_text()[-2000:]}"
            )
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:  # `--block` does not always stop on SIGTERM
            pass
        with contextlib.suppress(ProcessLookupError):  # the head's raylet, GCS and workers
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
@pytest.mark.timeout(300)
def test_jobs_on_a_ray_head_at_an_address_equal_the_local_executor(tmp_path, ray_head, monkeypatch):
    """The executor connects to a cluster started outside the command (`ray start --head`),
    by address, and its results are the local executor's, file for file. The Ray driver runs
    in its own process: Ray keeps process-wide state (its connection, the auth token it read)
    that would leak into later tests of this process."""
    monkeypatch.syspath_prepend(str(HERE))
    from mtl_bt.compare.executor import check_address

    check_address(ray_head, 10)  # what `compare --address` checks first
    local = run_jobs(_toy_jobs(tmp_path / "local"), shared={"offset": 3}, workers=2)
    driver = (
        "import sys; from pathlib import Path; from mtl_bt.compare.executor import Job, run_jobs\n"
        "out = Path(sys.argv[1])\n"
        "jobs = [Job(f'x{x}', '_toy_jobs:square', {'x': x}, out / f'x{x}') for x in range(4)]\n"
        "rs = run_jobs(jobs, shared={'offset': 3}, executor='ray', address=sys.argv[2])\n"
        "assert [r.ok for r in rs] == [True] * 4 and not any(r.skipped for r in rs), rs\n"
    )
    env = {**os.environ, **RAY_AUTH, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", driver, str(tmp_path / "ray"), ray_head],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in _toy_jobs(tmp_path / "ray"):
        twin = tmp_path / "local" / job.name
        assert json.loads((job.out_dir / "result.json").read_text()) == json.loads(
            (twin / "result.json").read_text()
        )
    pids = {(tmp_path / "ray" / f"x{x}" / "sub" / "pid.txt").read_text() for x in range(4)}
    assert str(os.getpid()) not in pids and len(local) == 4  # ran in the cluster's workers
