"""Issue 16, goal 1 / issue 27: the demo's own workload, MTLStrategy against its floor.

The bundled crypto sample (5 assets x 8,760 hourly bars, 2024) on plain
``bt.feeds.PandasData``, Backtrader's own broker with the demo's 0.1% commission, the
demo config's fold models (trained once here with the real trainer) and the demo's
strategy settings (``strategy_params`` of its ``[backtest]`` section). Four variants:
the empty strategy, ``MTLStrategy`` in precomputed mode and in live mode, and "same
orders" (the precomputed run's own orders replayed by a strategy with no model on the
same feeds and broker: what Backtrader itself charges for those orders and the positions
they leave, the floor no strategy placing them can go below).

How it is timed, and why: **every run is a fresh Python process** (``python -m
benchmarks.bench_demo --child VARIANT``) that imports everything, loads the frames and
the fold models (untimed; the ONNX export is cached after the first load), collects the
heap, then times exactly one ``cerebro.run()`` in wall seconds and in its own CPU seconds
(``time.process_time``). The variants alternate in rotating order, repeat after repeat.
Runs in one long-lived process were not comparable: the same variant took 3.5-6.5 s
from one repeat to the next (idle machine), because each run inherited what the runs
before it left: a heap grown by every Cerebro (each full collection walks it), the
collector's generation counters, freed arenas, the strategy's ``gc.freeze`` of whatever
was alive at its start. A fresh process gives every run the same starting heap, so the
spread left is the machine's. CPU seconds are the headline: on a shared machine the
other jobs inflate wall time far more than a process's own CPU time. Medians of the
repeats (and the minimum, the least disturbed run, beside them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import backtrader as bt

VARIANTS = ("empty", "precomputed", "live", "same_orders")
#: printed by a child before its JSON result (the parent reads the line after it)
MARK = "@@bench_demo@@"


class EmptyStrategy(bt.Strategy):
    def next(self) -> None:
        pass


def _cerebro(frames: dict, commission: float) -> bt.Cerebro:
    cerebro = bt.Cerebro(stdstats=False, maxcpus=1)
    for symbol, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=symbol)
    cerebro.broker.setcommission(commission=commission)
    return cerebro


def _config() -> Any:
    from mtl_bt.cli.run_cmd import shipped_config
    from mtl_bt.config import load

    return load(shipped_config("crypto"), ["training.threads=1"])


def child(variant: str, models: Path, plan_path: Path) -> dict[str, Any]:
    """One timed run of ``variant`` in this (fresh) process: load untimed, then time."""
    from benchmarks.bench_backtest import ReplayStrategy, order_plan
    from mtl_bt import pipeline, registry
    from mtl_bt.backtesting.runner import load_predictors, strategy_params
    from mtl_bt.strategies.mtl import MTLStrategy

    cfg = _config()
    frames = pipeline.load_data(cfg, progress=False)
    predictors = load_predictors(models)
    bc = cfg.backtest
    if variant in ("precomputed", "live"):
        rule = registry.create("signal", bc.signal, **bc.signal_options)
        kwargs = strategy_params(bc.model_copy(update={"mode": variant}), predictors, rule)
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(MTLStrategy, **kwargs)
    elif variant == "same_orders":
        plan = pickle.loads(plan_path.read_bytes())
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(ReplayStrategy, plan=plan)
    elif variant == "empty":
        cerebro = _cerebro(frames, bc.commission)
        cerebro.addstrategy(EmptyStrategy)
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    gc.collect()
    os.getppid()  # a callgrind dump mark (--instructions): what follows is the run
    t0, c0 = time.perf_counter(), time.process_time()
    strat = cerebro.run()[0]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    os.getppid()  # the second mark: the dump between the two holds cerebro.run() alone
    out: dict[str, Any] = {"wall": wall, "cpu": cpu, "value": float(strat.broker.getvalue())}
    if variant in ("precomputed", "live"):
        out["decisions"] = int(strat.decisions)
        out["orders"] = len(strat.broker.orders)
        if variant == "precomputed" and not plan_path.exists():
            plan_path.write_bytes(pickle.dumps(order_plan(strat)))
    elif variant == "same_orders":
        out["orders"] = len(strat.broker.orders)
    else:
        out["bars"] = len(strat)
    return out


def _child(variant: str, models: Path, plan: Path) -> tuple[list[str], dict[str, Any]]:
    """The command line of one child run of ``variant`` and how to run it (env, cwd)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        PYTHONHASHSEED="0",  # the same dict and set orders in every child
    )
    cmd = [sys.executable, "-m", "benchmarks.bench_demo", "--child", variant]
    cmd += ["--models", str(models), "--plan", str(plan)]
    return cmd, {"env": env, "cwd": root}


def _child_result(variant: str, proc: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON result a child printed after ``MARK``."""
    if proc.returncode != 0 or MARK not in proc.stdout:
        raise RuntimeError(f"bench_demo child {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.split(MARK, 1)[1].strip().splitlines()[0])


def _spawn(variant: str, models: Path, plan: Path) -> dict[str, Any]:
    cmd, how = _child(variant, models, plan)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **how)
    return _child_result(variant, proc)


#: callgrind's estimate of cycles from its simulated caches (its documented weights): an
#: instruction 1, a first-level miss 10 more, a last-level miss 100 more
_CYCLE_WEIGHTS = {
    "Ir": 1,
    "I1mr": 10,
    "D1mr": 10,
    "D1mw": 10,
    "ILmr": 100,
    "DLmr": 100,
    "DLmw": 100,
}


def between_marks(
    cmd: list[str], out_dir: Path, name: str, cache: bool = False, **run: Any
) -> tuple[dict[str, int], subprocess.CompletedProcess]:
    """Run ``cmd`` under valgrind's callgrind and return the counts of what it executed
    between its two ``os.getppid()`` calls (the marks; callgrind dumps its counters at each,
    so the dump between them holds that stretch alone), with the finished process.
    Refused unless the command made exactly two marks."""
    stem = out_dir / name
    prefix = ["valgrind", "--tool=callgrind", "--dump-before=getppid"]
    prefix += [f"--callgrind-out-file={stem}", *(["--cache-sim=yes"] if cache else [])]
    proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=False, **run)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed under callgrind:\n{proc.stderr[-3000:]}")
    dumps = sorted(d.name for d in out_dir.glob(f"{name}.*"))
    if dumps != [f"{name}.1", f"{name}.2"]:
        raise RuntimeError(f"{name}: expected two marks (os.getppid() calls), got dumps {dumps}")
    text = (out_dir / f"{name}.2").read_text().splitlines()
    events = next(line for line in text if line.startswith("events:")).split()[1:]
    totals = next(line for line in text if line.startswith("totals:")).split()[1:]
    totals += ["0"] * (len(events) - len(totals))  # callgrind leaves trailing zeros out
    return dict(zip(events, map(int, totals), strict=True)), proc


def _instructions_of(
    variant: str, models: Path, plan: Path, out_dir: Path, cache: bool = False
) -> dict[str, Any]:
    """One child under callgrind: the instructions executed by ``cerebro.run()`` alone (the
    child marks its start and end; the imports and model loading before it are counted in
    the dump before). Instruction counts do not depend on the host's speed: the same run
    counts the same within 0.05% under the same command."""
    cmd, how = _child(variant, models, plan)
    counts, proc = between_marks(cmd, out_dir, variant, cache, **how)
    result = _child_result(variant, proc)
    result["instructions"] = counts["Ir"]
    if cache:
        result["cache"] = counts
        result["estimated_cycles"] = sum(w * counts[k] for k, w in _CYCLE_WEIGHTS.items())
    return result


def count_instructions(
    models: Path, jobs: int = 2, log: Any = print, cache: bool = False
) -> dict[str, Any]:
    """The four variants' ``cerebro.run()`` in instructions (valgrind's callgrind), ``jobs``
    at a time: a measure of the strategy's own work that the host's drifting speed does
    not move (a run under callgrind takes ~50x its time). Instructions are not seconds
    (cache misses and branch mispredictions cost differently); the timed harness stays
    the headline, this one says whether a change moved the work. ``cache``: also simulate
    the caches (callgrind's own model of them, ~2x slower) and report its cycle estimate."""
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory(prefix="mtlbt-demo-cg-") as tmp:
        plan = Path(tmp) / "plan.pkl"
        _spawn("precomputed", models, plan)  # writes the plan same_orders replays
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = dict(
                zip(
                    VARIANTS,
                    pool.map(
                        lambda v: _instructions_of(v, models, plan, Path(tmp), cache), VARIANTS
                    ),
                    strict=True,
                )
            )
    ins = {k: r["instructions"] for k, r in runs.items()}
    floor = ins["same_orders"]
    out = {
        "instructions": ins,
        "ratio_to_floor": {k: ins[k] / floor for k in ("precomputed", "live")},
        "final_values": {k: r["value"] for k, r in runs.items()},
        "decisions": {k: runs[k]["decisions"] for k in ("precomputed", "live")},
    }
    if cache:
        cyc = {k: r["estimated_cycles"] for k, r in runs.items()}
        out["cache"] = {k: r["cache"] for k, r in runs.items()}
        out["estimated_cycles"] = cyc
        out["cycles_ratio_to_floor"] = {
            k: cyc[k] / cyc["same_orders"] for k in ("precomputed", "live")
        }
        log(
            f"  callgrind's cycle estimate: precomputed "
            f"{out['cycles_ratio_to_floor']['precomputed']:.3f}x the floor, live "
            f"{out['cycles_ratio_to_floor']['live']:.3f}x"
        )
    log(
        f"  demo workload (instructions of cerebro.run(), callgrind): empty "
        f"{ins['empty'] / 1e9:.3f} G, same orders {floor / 1e9:.3f} G, precomputed "
        f"{ins['precomputed'] / 1e9:.3f} G ({ins['precomputed'] / floor:.3f}x the floor), live "
        f"{ins['live'] / 1e9:.3f} G ({ins['live'] / floor:.3f}x)"
    )
    return out


def run(
    repeats: int = 3, log: Any = print, models: Path | None = None, instructions: bool = False
) -> dict[str, Any]:
    """Train the demo's fold models (or use ``models``, a folder ``train_walk_forward``
    wrote for the demo config), then time the variants ``repeats`` times each
    (``instructions``: and count them once under callgrind, ``count_instructions``)."""
    from mtl_bt import pipeline
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.training import train_walk_forward

    cfg = _config()
    frames = pipeline.load_data(cfg, progress=False)
    with tempfile.TemporaryDirectory(prefix="mtlbt-demo-") as tmp:
        if models is None:
            models = Path(tmp) / "models"
            train_walk_forward(cfg, frames, out_dir=models)
        folds = len(load_predictors(models))  # also exports and caches the ONNX graphs
        plan = Path(tmp) / "plan.pkl"
        runs = _alternate(models, plan, repeats)
        counted = count_instructions(models, log=log) if instructions else None
    wall = {k: [r["wall"] for r in v] for k, v in runs.items()}
    cpu = {k: [r["cpu"] for r in v] for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    last = {k: v[-1] for k, v in runs.items()}
    values = {k: sorted({round(r["value"], 6) for r in runs[k]}) for k in runs}
    out = {
        "assets": len(frames),
        "bars": int(max(len(f) for f in frames.values())),
        "folds": folds,
        "architecture": cfg.model.architecture,
        "repeats": repeats,
        "harness": "one fresh process per run, rotating order; median (min beside it)",
        "seconds": med,
        "all_seconds": wall,
        "min_seconds": {k: min(v) for k, v in wall.items()},
        "decisions": {k: last[k]["decisions"] for k in ("precomputed", "live")},
        "orders": last["same_orders"]["orders"],
        "final_values": values,
        "ratio_precomputed": med["precomputed"] / med["empty"],
        "ratio_live": med["live"] / med["empty"],
        "ratio_same_orders": med["same_orders"] / med["empty"],
        "cpu_seconds": med_cpu,
        "all_cpu_seconds": cpu,
        "min_cpu_seconds": {k: min(v) for k, v in cpu.items()},
        "cpu_ratio_precomputed": med_cpu["precomputed"] / med_cpu["empty"],
        "cpu_ratio_live": med_cpu["live"] / med_cpu["empty"],
        "cpu_ratio_same_orders": med_cpu["same_orders"] / med_cpu["empty"],
    }
    # each round's variants ran back to back: a ratio within a round cancels the machine's
    # drift from round to round (the spread of one variant's repeats is mostly that drift)
    paired = {
        k: [c / f for c, f in zip(cpu[k], cpu["same_orders"], strict=True)]
        for k in ("precomputed", "live")
    }
    if counted is not None:
        out["instructions"] = counted
    out["cpu_ratio_to_floor_by_round"] = paired
    out["cpu_ratio_to_floor_median_of_rounds"] = {
        k: statistics.median(v) for k, v in paired.items()
    }
    floor = med_cpu["same_orders"]
    log(
        f"  demo workload (CPU s, median of {repeats} fresh processes): empty "
        f"{med_cpu['empty']:.2f}, same orders {floor:.2f}, precomputed "
        f"{med_cpu['precomputed']:.2f} ({med_cpu['precomputed'] / floor:.3f}x the floor), live "
        f"{med_cpu['live']:.2f} ({med_cpu['live'] / floor:.3f}x); wall: empty {med['empty']:.2f}, "
        f"same orders {med['same_orders']:.2f}, precomputed {med['precomputed']:.2f}, live "
        f"{med['live']:.2f}; median of the rounds' own ratios: precomputed "
        f"{statistics.median(paired['precomputed']):.3f}x, live "
        f"{statistics.median(paired['live']):.3f}x"
    )
    return out


def _alternate(models: Path, plan: Path, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Every variant ``repeats`` times, one fresh process each, in rotating order (round 0
    runs precomputed before same_orders, which replays its orders)."""
    names = list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        order = names[k:] + names[:k]
        if r == 0 or not plan.exists():
            order = names
        for name in order:
            runs[name].append(_spawn(name, models, plan))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=VARIANTS, help="time one run (internal)")
    parser.add_argument(
        "--models", type=Path, help="the demo config's trained fold models (default: train them)"
    )
    parser.add_argument("--plan", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count cerebro.run()'s instructions under valgrind's callgrind instead of timing",
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="with --instructions: simulate the caches too and estimate cycles",
    )
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child, args.models, args.plan)
        print(MARK)
        print(json.dumps(result))
        return 0
    if args.instructions:
        if args.models is None:
            raise SystemExit("--instructions needs --models DIR (the demo's trained fold models)")
        print(json.dumps(count_instructions(args.models, cache=args.cache_sim), indent=1))
        return 0
    print(json.dumps(run(args.repeats, models=args.models), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
