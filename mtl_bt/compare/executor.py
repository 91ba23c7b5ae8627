"""Run independent jobs in local worker processes or on a Ray cluster, with identical results.

A job is a pure function of its parameters (config, seed, variant) and of a payload shared by
all jobs (the market data, loaded once by the driver); it must fix its own torch thread count,
so its numbers do not depend on the executor. It writes artefacts into a private
scratch folder; the executor ships those files back as bytes and the *driver* writes them
atomically into the job's output folder, then a ``job.json`` marker last. So:

- Ray workers on other machines need no shared file system;
- Ctrl-C or a crash never leaves a job folder that looks finished (no marker, no skip);
- a re-run skips every job whose marker exists and whose parameters hash is unchanged;
- a failing job is reported by name with its error, the others still complete.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_bt.errors import UserError
from mtl_bt.report.io import write_bytes, write_json, write_text

MARKER = "job.json"
ERROR_FILE = "error.txt"

#: shared payload of the current worker process (set once per worker by the pool initializer)
_SHARED: dict[str, Any] = {}


@dataclass(frozen=True)
class Job:
    """``fn`` is "module:function", called as fn(shared, workdir, **params) in a worker."""

    name: str
    fn: str
    params: dict[str, Any]
    out_dir: Path

    def digest(self) -> str:
        """Hash of what determines the job's result (function + parameters)."""
        text = json.dumps({"fn": self.fn, "params": self.params}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class JobResult:
    name: str
    out_dir: Path
    ok: bool
    skipped: bool = False
    error: str | None = None
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Outcome:
    name: str
    ok: bool
    files: dict[str, bytes]
    error: str | None
    trace: str | None
    seconds: float


def is_done(job: Job) -> bool:
    marker = job.out_dir / MARKER
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()).get("digest") == job.digest()
    except (OSError, ValueError):
        return False


def _resolve(fn: str) -> Callable[..., Any]:
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def execute(job: Job, shared: dict[str, Any]) -> _Outcome:
    """Run one job in a scratch folder and collect its files (never raises)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mtl-bt-job-") as tmp:
        work = Path(tmp)
        try:
            _resolve(job.fn)(shared, work, **job.params)
        except Exception as exc:  # reported by name; the sweep goes on
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return _Outcome(
                job.name, False, {}, message, traceback.format_exc(), time.perf_counter() - start
            )
        files = {
            p.relative_to(work).as_posix(): p.read_bytes()
            for p in sorted(work.rglob("*"))
            if p.is_file()
        }
    return _Outcome(job.name, True, files, None, None, time.perf_counter() - start)


def _init_worker(shared: dict[str, Any]) -> None:
    _SHARED.clear()
    _SHARED.update(shared)


def _execute_in_worker(job: Job) -> _Outcome:
    return execute(job, _SHARED)


def _store(job: Job, outcome: _Outcome) -> JobResult:
    """Write a finished job's files atomically, marker last; record failures beside them."""
    if not outcome.ok:
        write_text(job.out_dir / ERROR_FILE, f"{outcome.error}\n\n{outcome.trace or ''}")
        (job.out_dir / MARKER).unlink(missing_ok=True)
        return JobResult(job.name, job.out_dir, False, error=outcome.error, seconds=outcome.seconds)
    for rel, data in outcome.files.items():
        write_bytes(job.out_dir / rel, data)
    (job.out_dir / ERROR_FILE).unlink(missing_ok=True)
    write_json(
        job.out_dir / MARKER,
        {
            "name": job.name,
            "digest": job.digest(),
            "seconds": round(outcome.seconds, 3),
            "files": sorted(outcome.files),
        },
    )
    return JobResult(
        job.name, job.out_dir, True, seconds=outcome.seconds, files=sorted(outcome.files)
    )


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork is unsafe once torch has started threads; spawn starts clean interpreters that
    # inherit sys.path, so jobs defined in user code on the path import in the workers too.
    return multiprocessing.get_context("spawn")


def run_jobs(
    jobs: Iterable[Job],
    *,
    shared: dict[str, Any] | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run (or skip) every job; results in the order of ``jobs``.

    ``executor="local"`` uses ``workers`` processes (``1``: in this process, no pool);
    ``executor="ray"`` connects to ``address`` (None: start a local Ray instance).
    """
    jobs = list(jobs)
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    shared = shared or {}
    results: dict[str, JobResult] = {}
    todo: list[Job] = []
    for job in jobs:
        if is_done(job):
            results[job.name] = JobResult(job.name, job.out_dir, True, skipped=True)
            if on_done:
                on_done(results[job.name])
        else:
            todo.append(job)
    if todo:
        workers = workers or default_workers()
        if executor == "local":
            runner = _run_local
        elif executor == "ray":
            runner = _run_ray
        else:
            raise UserError(f"unknown executor {executor!r}; use 'local' or 'ray'")
        for job, outcome in runner(todo, shared, workers, address):
            results[job.name] = _store(job, outcome)
            if on_done:
                on_done(results[job.name])
    return [results[name] for name in names]


def _run_local(
    todo: list[Job], shared: dict[str, Any], workers: int, address: str | None
) -> Iterable[tuple[Job, _Outcome]]:
    if workers <= 1 or len(todo) == 1:
        for job in todo:
            yield job, execute(job, shared)
        return
    workers = min(workers, len(todo))
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(shared,),
    )
    try:
        pending: dict[Future[_Outcome], Job] = {pool.submit(_execute_in_worker, j): j for j in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:  # worker died (e.g. out of memory)
                    outcome = _Outcome(job.name, False, {}, f"worker failed: {exc!r}", None, 0.0)
                yield job, outcome
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(
    todo: list[Job], shared: dict[str, Any], workers: int, address: str | None
) -> Iterable[tuple[Job, _Outcome]]:
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs Ray: pip install 'mtl-bt[ray]' (or pip install ray)"
        ) from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise UserError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
        started = True
    try:
        remote = ray.remote(num_cpus=1)(execute)
        shared_ref = ray.put(shared)
        refs = {remote.remote(job, shared_ref): job for job in todo}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker process died
                    outcome = _Outcome(
                        job.name, False, {}, f"ray worker failed: {exc!r}", None, 0.0
                    )
                yield job, outcome
    finally:
        if started:
            ray.shutdown()
