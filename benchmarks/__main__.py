"""``python -m benchmarks`` (``make bench``): run every benchmark, print, write the docs page.

Options: ``--quick`` (small sizes, one repeat), ``--only NAME`` (repeatable:
backtest, training, weighting, scale), ``--md``/``--json``/``--plot`` output paths.
Exits 0 unless a benchmark crashed (its traceback is recorded and the others
still run); no number is ever judged here - the page states the goals.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.common import THREADS, loadavg, machine_info, set_threads

REPO = Path(__file__).resolve().parent.parent
NAMES = ("backtest", "inference", "training", "weighting", "scale")

#: sizes per mode. backtest: (assets, bars, repeats); 50 x 20,000 bars of Backtrader
#: alone (~1M feed-bars per variant, 5 variants) does not fit a 15-minute run on 2 cores,
#: so the full run uses fewer bars for 50 assets (``--bars-50`` changes it).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "backtest": [(1, 20_000, 3), (5, 20_000, 2), (50, 2_000, 2)],
        "backtest_profile": (5, 2_000),
        "train_model_epochs": 3,
        "training": {"n_assets": 4, "bars": 8_000, "epochs": 4, "repeats": 7},
        "weighting": {"repeats": 200, "warmup": 20},
        "scale": None,  # bench_scale.SIZES
        "scale_epochs": None,
    },
    "quick": {
        "backtest": [(1, 2_000, 1), (5, 1_000, 1), (50, 200, 1)],
        "backtest_profile": (5, 300),
        "train_model_epochs": 1,
        "training": {"n_assets": 2, "bars": 3_000, "epochs": 1, "repeats": 2},
        "weighting": {"repeats": 30, "warmup": 5},
        "scale": [
            ("synthetic daily", "synthetic", 1, 2500),
            ("synthetic daily", "synthetic", 10, 2500),
        ],
        "scale_epochs": 2,
    },
}

#: what profiling found, for the "what dominates" section (numbers are in the tables)
ANALYSIS = [
    "Reading the backtest rows: the empty baseline does no trading, while the MTL run "
    "trades (here on purpose as often as it can: `rebalance='bar'`, signal threshold 0, a "
    "worst case; the shipped configs hold positions for the task horizon and only trade "
    "past the round-trip cost), so part of every MTL ratio is Backtrader's own price for "
    "orders (order objects, broker fills, notifications with `copy.copy` of each order). "
    "The 'same orders, no model' column measures exactly that part: where it is itself "
    "above 1.25, no strategy placing those orders in Backtrader can meet the goal, "
    "whatever its model costs. Our `FrameFeed` pays back part of it (compare 'empty "
    "FrameFeed' with the baseline).",
    "Live mode with few assets is dominated by per-bar model inference: a batch of 1-5 "
    "rows costs about as much as a batch of 50 (see the per-call table), because the time "
    "goes to torch's per-op dispatch and per-module call overhead of the eager model, not "
    "to arithmetic. The only measured way around it, `torch.jit.trace` (the 'traced "
    "forward' column), is deprecated in torch 2.13 (it raises a `DeprecationWarning` "
    "pointing to `torch.compile`/`torch.export`, whose compile time and guards do not pay "
    "off for a forward pass of a few microseconds of arithmetic), so it is not used. With "
    "one asset, per-bar inference alone costs more than the empty baseline's whole bar, so "
    "<= 1.25 is out of reach for live mode there; precomputed mode removes it (use it for "
    "research backtests; live mode exists for parity with trading).",
    "Precomputed mode removes inference but not the rest of our per-bar Python: the "
    "strategy's loop over the feeds (`len(d)`, row lookup), the signal rule (about 15 "
    "small-array numpy calls in `agree_voltarget.weights` + `cap_weights`, ~30 us a bar), "
    "`_rebalance` (a `getposition` per asset), `PortfolioAnalyzer.next` and the result "
    "tables. Its gap to 'same orders' in the per-bar table is that cost. Applying the signal "
    "rule to whole (bars x assets) arrays before the run would remove the rule's share, but "
    "a rule sees the cross-section of the assets due on a bar (the gross-leverage cap, and "
    "third-party rules may rank assets), so it is not separable per asset over time without "
    "a new rule capability; not done.",
    "With many assets the per-bar work is batched and the ratio falls toward the 'same "
    "orders' floor: Backtrader's broker (order creation, fills, notifications) and "
    "engine dominate, then the strategy's per-bar Python loop over the feeds and the "
    "signal rule (`agree_voltarget.weights`, tens of microseconds of small-array numpy "
    "per call).",
    "End to end (`mtl-bt run`): see the dominant column of the scale table; the trainer's "
    "`fit` (epochs x folds x rows) and the report plots are the large fixed parts, while "
    "the backtest grows with assets x bars.",
]

FIXED = [
    "`mtl_bt/backtesting/runner.py` `_build_result`: `lookup.get(d, _num2ts(d))` evaluated "
    "the fallback (`bt.num2date` + pandas `Timestamp` + `round`, ~0.1 ms) for every order "
    "and trade even when the lookup hit; now `lookup[d] if d in lookup else _num2ts(d)`. "
    "A profile of 50 assets x 400 bars showed it at ~5% of the whole live backtest "
    "(12,520 calls, 1.4 s under cProfile); it grows with the number of orders.",
]

#: optimisations that were measured side by side and not kept (numbers from those A/B runs)
TRIED = [
    "One `torch.stack(heads).numpy()` conversion in `Predictor.predict` instead of one "
    "`.numpy()` per task (suggested by an earlier profile): measured slower, 100 -> 112 us "
    "per call for 1 row and 116 -> 130 us for 50 rows (median of 7 alternating blocks of "
    "2,000 calls, identical outputs); the extra `stack` op costs more than three "
    "conversions save. Reverted.",
    "`gc.freeze()` around `cerebro.run` (so full collections skip the ~390k objects torch, "
    "pandas and the model leave behind): 5 assets x 10,000 bars, precomputed, 4 "
    "alternating repeats: median 9.74 s plain vs 9.18 s frozen (-6%), single runs spread "
    "8.2-10.6 s; within the noise, not kept.",
    "A broker whose orders define `__copy__` (Backtrader clones every order about three "
    "times; the default `copy.copy` path probes `__setstate__` through `Order.__getattr__`): "
    "8.9 -> 5.1 us per clone, about 11 us per order against ~36 us to create the order and "
    "the broker's fill and notification work: about 2% of a 50-asset run. Not worth a "
    "broker subclass every user would also have to use.",
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--only", action="append", choices=NAMES, help="run only this (repeatable)")
    ap.add_argument("--bars", type=int, help="bars per asset for the 1- and 5-asset backtests")
    ap.add_argument("--bars-50", type=int, help="bars per asset for the 50-asset backtest")
    ap.add_argument(
        "--from-json", help="do not run: rewrite the page (and plot) from this results.json"
    )
    ap.add_argument("--md", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results.json"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "benchmarks_scale.png"))
    return ap.parse_args(argv)


def backtest_sizes(plan: dict[str, Any], args: argparse.Namespace) -> list[tuple[int, int, int]]:
    sizes = []
    for assets, bars, reps in plan["backtest"]:
        if assets >= 50 and args.bars_50:
            bars = args.bars_50
        elif assets < 50 and args.bars:
            bars = args.bars
        sizes.append((assets, bars, reps))
    return sizes


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    t_start = time.perf_counter()
    set_threads(THREADS)
    plan = PLANS["quick" if args.quick else "full"]
    only = list(args.only or NAMES)
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks", *getattr(args, "argv", [])]),
        "quick": bool(args.quick),
        "only": args.only or [],
        "threads": THREADS,
        "machine": machine_info(),
        "errors": {},
    }
    log(
        f"mtl-bt benchmarks ({'quick' if args.quick else 'full'}); torch threads {THREADS}; "
        f"{results['machine']['cores']} cores, load {results['machine']['load_average_at_start']}"
    )

    def step(name: str, fn: Any) -> None:
        if name not in only:
            return
        log(f"[{name}]")
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:  # noqa: BLE001 - record, keep going, exit 1 at the end
            results["errors"][name] = traceback.format_exc()
            log(f"  {name} CRASHED:\n{results['errors'][name]}")
        log(f"  ({time.perf_counter() - t0:.0f}s)")
        set_threads(THREADS)

    from benchmarks import bench_backtest, bench_inference, bench_scale, bench_training, weighting

    step(
        "backtest",
        lambda: bench_backtest.run(
            backtest_sizes(plan, args), plan["backtest_profile"], plan["train_model_epochs"], log
        ),
    )
    step("inference", lambda: bench_inference.run(quick=args.quick, log=log))
    step("training", lambda: bench_training.measure(**plan["training"], log=log))
    step("weighting", lambda: weighting.measure(**plan["weighting"], log=log))
    step(
        "scale",
        lambda: bench_scale.measure(plan["scale"] or bench_scale.SIZES, plan["scale_epochs"], log),
    )
    results["analysis"] = ANALYSIS
    results["fixed"] = FIXED
    results["tried"] = TRIED
    results["load_average_at_end"] = loadavg()
    results["total_seconds"] = time.perf_counter() - t_start
    return results


def write(results: dict[str, Any], args: argparse.Namespace) -> None:
    plot = None
    if results.get("scale"):
        plot = report.plot_scale(results["scale"], Path(args.plot))
    md_path = Path(args.md)
    plot_name = None
    if plot is not None:
        try:
            plot_name = str(Path(plot).resolve().relative_to(md_path.resolve().parent))
        except ValueError:
            plot_name = str(plot)
    report.write_json(Path(args.json), results)
    report.atomic_write_text(md_path, report.markdown(results, plot_name))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        import json

        results = json.loads(Path(args.from_json).read_text())
        results["analysis"], results["fixed"], results["tried"] = ANALYSIS, FIXED, TRIED
    else:
        results = run_all(args)
    write(results, args)
    print(f"\nwrote {args.md}, {args.json}" + (f", {args.plot}" if results.get("scale") else ""))
    print(report.markdown(results, None).split("## What dominates now")[0][-6000:])
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
