"""The job executor: parallel local processes, failures by name, skip finished jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mtl_bt.compare.executor import ERROR_FILE, MARKER, Job, run_jobs

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def _jobs(out: Path, fail: int | None = None) -> list[Job]:
    return [
        Job(f"x{x}", "_toy_jobs:square", {"x": x, "fail": x == fail}, out / f"x{x}")
        for x in range(4)
    ]


def _value(job: Job) -> int:
    return json.loads((job.out_dir / "result.json").read_text())["value"]


def test_parallel_jobs_failure_reported_and_rerun_skips(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, fail=2)
    results = run_jobs(jobs, shared={"offset": 10}, workers=2)
    assert [r.name for r in results] == ["x0", "x1", "x2", "x3"]
    failed = [r for r in results if not r.ok]
    assert [r.name for r in failed] == ["x2"]
    assert "ValueError: job asked to fail (x=2)" in failed[0].error
    assert "Traceback" in (tmp_path / "x2" / ERROR_FILE).read_text()
    assert not (tmp_path / "x2" / MARKER).exists()
    assert [_value(j) for j in jobs if j.name != "x2"] == [10, 11, 19]
    pids = {(j.out_dir / "sub" / "pid.txt").read_text() for j in jobs if j.name != "x2"}
    assert str(os.getpid()) not in pids  # really ran in worker processes
    # no temp files left behind by the atomic writes
    assert not [p for p in tmp_path.rglob("*.tmp")]

    # Re-run: finished jobs are skipped, the failed one is retried (and now succeeds).
    jobs2 = _jobs(tmp_path, fail=None)
    again = run_jobs(jobs2, shared={"offset": 10}, workers=2)
    assert [r.skipped for r in again] == [True, True, False, True]
    assert all(r.ok for r in again)
    assert _value(jobs2[2]) == 14 and not (tmp_path / "x2" / ERROR_FILE).exists()


def test_changed_parameters_rerun_in_process(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    run_jobs(jobs, workers=1)  # in this process, no pool: same results as the pool above
    assert [_value(j) for j in jobs] == [0, 1, 4, 9]
    assert {(j.out_dir / "sub" / "pid.txt").read_text() for j in jobs} == {str(os.getpid())}
    changed = [Job(j.name, j.fn, {**j.params, "x": 5}, j.out_dir) for j in jobs]
    results = run_jobs(changed, workers=1)
    assert not any(r.skipped for r in results)
    assert [_value(j) for j in changed] == [25] * 4


def test_unknown_executor_and_duplicate_names(tmp_path: Path) -> None:
    from mtl_bt.errors import UserError

    with pytest.raises(UserError, match="unknown executor"):
        run_jobs(_jobs(tmp_path), executor="dask")
    job = _jobs(tmp_path)[0]
    with pytest.raises(ValueError, match="unique"):
        run_jobs([job, job])


def _chained(tmp_path: Path, workers: int) -> tuple[list, list[str]]:
    """Four jobs and, made by ``then`` once all four are stored, one job summing their
    values (shipped as its ``inputs``); returns the results and the order of ``then`` calls."""
    jobs = _jobs(tmp_path)
    calls: list[str] = []
    seen: dict[str, int] = {}

    def then(result) -> list[Job]:
        calls.append(result.name)
        if result.name == "sum":
            return []
        seen[result.name] = _value(next(j for j in jobs if j.name == result.name))
        if len(seen) < len(jobs):
            return []
        names = sorted(seen)
        return [
            Job(
                "sum",
                "_toy_jobs:total",
                {"names": names},
                tmp_path / "sum",
                inputs={"values": dict(seen)},
            )
        ]

    results = run_jobs(jobs, shared={"offset": 10}, workers=workers, then=then)
    return results, calls


@pytest.mark.parametrize("workers", [1, 2])
def test_then_runs_dependent_jobs_in_the_same_workers_and_rerun_skips(
    tmp_path: Path, workers: int
) -> None:
    results, calls = _chained(tmp_path, workers)
    assert [r.name for r in results] == ["x0", "x1", "x2", "x3", "sum"]
    assert all(r.ok and not r.skipped for r in results)
    doc = json.loads((tmp_path / "sum" / "result.json").read_text())
    assert doc["value"] == (10 + 11 + 14 + 19) + 10  # inputs merged over the shared payload
    assert (doc["pid"] == os.getpid()) == (workers == 1)
    assert sorted(calls) == ["sum", "x0", "x1", "x2", "x3"] and calls[-1] == "sum"
    # the inputs are not part of the digest: a re-run skips every job, ``then`` still called
    again, calls = _chained(tmp_path, workers)
    assert [r.skipped for r in again] == [True] * 5
    assert calls == ["x0", "x1", "x2", "x3", "sum"]


def test_then_duplicate_name_is_refused(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    with pytest.raises(ValueError, match="unique"):
        run_jobs(jobs[:1], workers=1, then=lambda r: [jobs[0]] if r.name == "x0" else [])
