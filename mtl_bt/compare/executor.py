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

Jobs that depend on others (compare's backtests join their fold jobs' files) are made by
``then``, called as each job finishes: the new jobs run in the *same* worker processes
(one start-up per worker: ``import torch`` and the first optimizer's lazy
``torch._dynamo`` import cost seconds each) and go ahead of the jobs still queued, so
long dependent jobs start early instead of after a barrier. A job's ``inputs`` (e.g. the
fold files) travel with it and are not part of its digest.
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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
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
    """``fn`` is "module:function", called as fn(shared, workdir, **params) in a worker.

    ``inputs``: data the job reads as ``shared[key]`` besides the payload every job
    shares (compare: the fold files a backtest joins); shipped with the job, not hashed
    (what determines them is in ``params``, e.g. the fold jobs' digests).
    """

    name: str
    fn: str
    params: dict[str, Any]
    out_dir: Path
    inputs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

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
        payload = {**shared, **job.inputs} if job.inputs else shared
        try:
            _resolve(job.fn)(payload, work, **job.params)
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
    then: Callable[[JobResult], Iterable[Job]] | None = None,
) -> list[JobResult]:
    """Run (or skip) every job; results in the order of ``jobs``, then the jobs ``then``
    made in the order they were made.

    ``executor="local"`` uses ``workers`` processes (``1``: in this process, no pool);
    ``executor="ray"`` connects to ``address`` (None: start a local Ray instance).
    ``then(result)``, called in this process after each job is stored (or skipped),
    returns the jobs that can start now (e.g. a backtest whose last fold job finished);
    they run in the same workers, ahead of the jobs still waiting.
    """
    jobs = list(jobs)
    shared = shared or {}
    results: dict[str, JobResult] = {}
    order: list[str] = []
    seen: set[str] = set()
    todo: deque[Job] = deque()
    urgent: deque[Job] = deque()

    def finish(result: JobResult) -> None:
        results[result.name] = result
        if on_done:
            on_done(result)
        if then is not None:
            for new in then(result):
                admit(new, urgent)

    def admit(job: Job, queue: deque[Job]) -> None:
        if job.name in seen:
            raise ValueError(f"job names must be unique ({job.name!r} twice)")
        seen.add(job.name)
        order.append(job.name)
        if is_done(job):
            finish(JobResult(job.name, job.out_dir, True, skipped=True))
        else:
            queue.append(job)

    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    runners = {"local": _run_local, "ray": _run_ray}
    if executor not in runners:
        raise UserError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    for job in jobs:
        admit(job, todo)
    if todo or urgent:
        workers = workers or default_workers()
        runner = runners[executor]
        dynamic = then is not None
        for job, outcome in runner(_Queue(todo, urgent), shared, workers, address, dynamic):
            finish(_store(job, outcome))
    return [results[name] for name in order]


class _Queue:
    """The jobs still to run: those made by ``then`` (``urgent``) before the rest."""

    def __init__(self, todo: deque[Job], urgent: deque[Job]) -> None:
        self.todo, self.urgent = todo, urgent

    def __len__(self) -> int:
        return len(self.todo) + len(self.urgent)

    def pop(self) -> Job:
        return self.urgent.popleft() if self.urgent else self.todo.popleft()


def _run_local(
    queue: _Queue, shared: dict[str, Any], workers: int, address: str | None, dynamic: bool
) -> Iterator[tuple[Job, _Outcome]]:
    if workers <= 1 or (len(queue) == 1 and not dynamic):
        while queue:
            job = queue.pop()
            yield job, execute(job, shared)  # the caller's ``then`` may queue more
        return
    if not dynamic:
        workers = min(workers, len(queue))
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(shared,),
    )
    try:
        # at most one job per worker in flight: the next job is chosen when a worker is
        # free, so jobs ``then`` makes meanwhile go first
        pending: dict[Future[_Outcome], Job] = {}
        while queue or pending:
            while queue and len(pending) < workers:
                job = queue.pop()
                pending[pool.submit(_execute_in_worker, job)] = job
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


#: seconds ``compare --executor ray --address`` waits for the cluster by default
CONNECT_TIMEOUT = 30.0


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Reach the Ray cluster at ``address`` within ``timeout`` seconds, before any work, or
    raise a one-line ``UserError`` naming it (Ray itself retries an unreachable address for
    minutes)."""
    import socket

    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit():  # "auto", "local": Ray finds the cluster itself
        return
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(
            f"cannot reach the Ray cluster at {address} within {timeout:g} s ({reason}); start "
            "it there (`ray start --head --port PORT`), fix --address, or raise "
            "--connect-timeout"
        ) from None


def _run_ray(
    queue: _Queue, shared: dict[str, Any], workers: int, address: str | None, dynamic: bool
) -> Iterator[tuple[Job, _Outcome]]:
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
        refs: dict[Any, Job] = {}
        while queue or refs:
            while queue:  # Ray queues them on the cluster; jobs made by ``then`` come later
                job = queue.pop()
                refs[remote.remote(job, shared_ref)] = job
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
