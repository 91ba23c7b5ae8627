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
NAMES = ("demo", "backtest", "inference", "training", "weighting", "scale", "streaming")

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
        "streaming": {"assets": (1, 5, 20, 50, 200), "repeats": 3, "budget": 2000},
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
        "streaming": {"assets": (1, 5, 20), "repeats": 1, "budget": 200, "single_bars": 200},
    },
}

#: what profiling found, for the "what dominates" section (numbers are in the tables)
ANALYSIS = [
    "The demo section's timed ratios move from run to run more than the goal's margin on this shared host: the same process's CPU seconds for the same work drifted by up to 60% within minutes at load < 1, and earlier idle runs of the same code gave precomputed 1.042-1.145x and live 1.082-1.361x the floor. The instruction counts do not move (the floor counted 22.316 G and 22.313 G two hours apart). The timed table above is the latest run (2026-12-07 00:04-00:08 UTC, 9 repeats, load 0.3-1.0, the quietest yet: each variant's repeats within 3% of its median but for one or two): precomputed 1.095x and live 1.154x the floor (CPU medians; the rounds' own ratios 1.086 and 1.152). Counted, the same code is within issue 27's 1.10x in both modes: precomputed 1.053x, live 1.076x the floor's instructions. Why live's seconds are further from the floor than its instructions: the floor runs 22.3 G instructions in 2.26 s (9.9 G a second), while what precomputed mode adds (1.19 G) takes 0.21 s (5.6 G a second) and what live mode adds (1.70 G) 0.34 s (5.0 G a second): the strategy's own per-bar and per-decision code, and in live mode the ONNX Runtime call (52 us a call inside the run against 21 us in a tight loop), run at about half the instructions per second of Backtrader's own loop. callgrind's model of the caches does not reproduce that gap: with `--cache-sim` (the three runs side by side, 00:05-00:28 UTC) its cycle estimate puts precomputed at 1.045x and live at 1.069x the floor, the same as their instruction ratios in that run (1.045 and 1.069; first-level instruction misses 2.1-2.2% of instructions in all three), so what slows our added instructions is something the model leaves out (branch mispredictions, the real caches shared with the other core's jobs); this host exposes no hardware counters to say which (`perf stat`: instructions and cycles 'not supported'). That run counted every variant ~0.3-1% higher than the two-at-a-time runs (another environment: three children at once, a longer PYTHONPATH), the ratios 0.007-0.008 lower: a count repeats within 0.05% under the same command, and its ratios within 0.01 across environments.",
    "Reading the backtest rows: the empty baseline does no trading, while the MTL run trades (here on purpose as often as it can: `rebalance='bar'`, signal threshold 0, a worst case; the shipped configs hold positions for the task horizon and only trade past the round-trip cost), so part of every MTL ratio is Backtrader's own price for orders (order objects, broker fills, notifications with `copy.copy` of each order). The 'same orders, no model' column measures exactly that part: where it is itself above 1.25, no strategy placing those orders in Backtrader can meet the goal, whatever its model costs. Our `FrameFeed` pays back part of it (compare 'empty FrameFeed' with the baseline).",
    "Live mode used to be dominated by per-bar model inference (torch's per-op dispatch and per-module overhead, not arithmetic: ~260 us for 1 row), then by the numpy forward pass's few dozen small numpy calls (50-450 us), then by a numba kernel written per architecture (6-19 us). `Predictor.predict` now runs every architecture, plugins included, as one ONNX Runtime session call (the model with its input stage and the tasks' transforms, exported at load; section 2b). A live decision's few rows run on input and output buffers bound to the session once per batch size (`Predictor.predict_row` / `predict_matrix`, ONNX Runtime's IOBinding: no feed dict, no per-call arrays). A bound call of the demo's model costs ~21 us in a tight loop but 52 us (median, one row) inside the demo's live backtest, where Backtrader's work between two decisions evicts ONNX Runtime's code and data from the caches (`benchmarks/insitu_calls.py`: the call timed where the strategy makes it). The removed kernel, timed the same way in f270134's own live demo backtest: 19-20 us a call (3 alternating rounds, idle, 20:39-20:42 UTC). What the runtime choice costs a backtest: f270134's rule (3,273 decisions) 0.068-0.072 s of model calls on the kernel against 0.19-0.27 s on ONNX Runtime; the default rule's 2,259 calls 0.135-0.138 s on ONNX Runtime, about 0.045 s at the kernel's in-run rate: 0.09 s, 2.4% of the floor. With the kernel's in-run cost live would have sat about 2 points lower in the 20:29 UTC run (1.19 instead of 1.215; 1.13 instead of 1.154 in the run above), still above 1.10 in seconds: the rest of what live mode adds is the strategy's own work per bar and per decision (features of every bar at start ~0.09 s, the fold schedule and due-bar bookkeeping, the hysteresis rule's scalar path, the gross cap and the order sizing), which precomputed mode pays as well except for the model calls.",
    "Precomputed mode with a separable rule (both built-ins) no longer calls the rule per bar: raw weights of every (bar, asset) are computed before the run and a bar only gathers the due assets' values and applies the cross-sectional clip (also skipping the two `getposition` scans that built the rule's current-weights context); live mode calls a separable rule's `raw_weights` + the clip per bar, also without those scans. What is left of our per-bar Python: the loop over the feeds (bar counts read off their datetime buffers; the bar count, due bar and usable rows as Python lists), `_rebalance` (a `getposition` per held asset for the gross cap), the order sizing, `PortfolioAnalyzer.next` and the result tables; the 'precomputed / floor' column is that cost on top of Backtrader's own order handling.",
    "Demo workload (section 0): the 'same orders' floor is itself above the goal. Holding positions costs Backtrader per bar what the empty strategy never pays: `BackBroker.next` books credit interest for every open position (`data.datetime.datetime()`, a `num2date` per position per bar), adjusts cash and revalues every position (`_get_value`); a cProfile of the precomputed demo run had `BackBroker.next` at 6.1 s of 48 s. That is why issue 27's demo goal is stated against the 'same orders' floor (the demo's 110 orders replayed with no model), not against the empty strategy: the floor table of section 0 has both ratios.",
    "Numpy's OpenBLAS starts threads for products above ~262k multiply-adds (m*n*k): on this shared 2-core machine a (800, 14) x (14, 48) product took 0.2-2.5 ms on 2 threads and 34-52 us on 1, and the demo's vectorised pass in `MTLStrategy.start` (8,192-row chunks) 0.62 s instead of ~0.01 s (cProfile, load 5-7). The strategy now runs numpy's OpenBLAS on one thread during the run (`blas_threads=1`, since issue 23 a run setting, `run_threads`; restored in `stop`, as it already did for torch); the inference benchmark does the same.",
    "With many assets the per-bar work is batched and the ratio falls toward the 'same orders' floor: Backtrader's broker (order creation, fills, notifications) and engine dominate, then the strategy's per-bar Python loop over the feeds and the signal rule (`agree_voltarget.weights`, tens of microseconds of small-array numpy per call).",
    "End to end (`mtl-bt run`): see the dominant column of the scale table; the trainer's `fit` (epochs x folds x rows) and the report plots are the large fixed parts, while the backtest grows with assets x bars.",
]

FIXED = [
    "Issue 23 - `MTLStrategy` rebuilt on the `MTLPredictions` indicator (one prediction engine per strategy for all its feeds; the indicators' `once()` is the vectorised pass, precomputed mode trades from their lines, live mode still runs one forward pass per decision): the same orders and final value as main's strategy on the demo workload in both modes (2,259 decisions, 110 orders) and on the crypto and stocks demos through the CLI's broker. Main's and the rebuilt strategy alternating in one process (demo workload, 3 repeats, load ~13 on 2 cores), CPU seconds against the 'same orders' floor: precomputed 1.48 -> 1.30, live 1.43 -> 1.43 (wall: 1.32 -> 1.20, 2.03 -> 1.83). Not kept: live mode as one pass per bar inside `once()` (8,736 passes for 2,259 decisions; live 1.63x the empty strategy in CPU seconds against 1.50 before, separate runs at load 13-14).",
    "Issue 27 - one inference runtime: the numba interpreter (`mtl_bt.models.kernel`, 870 lines), the numpy forward passes (`numpy_forward.py`, 660 lines) and the opt-in hooks every architecture and task implemented for them are gone; `Predictor` exports the model with its input stage and the tasks' transforms to ONNX when a checkpoint loads (cached in mtl-bt's cache folder, keyed by its sha256) and runs it in ONNX Runtime, checked against torch on probe rows (fallback: torch, with one warning naming the architecture and why). A plugin architecture gets the same path without writing anything. The kernel's last numbers beside ORT and torch are in section 2b, re-measured idle (`benchmarks/kernel_before.py`, run in a checkout of f270134 against main's ORT path): ORT costs 2.2-14x the kernel's call at one row (ple, the deepest, 14x; shared_bottom 4x) and less than the kernel at 50 rows on 8 of 18 models (every GRU input). Inside the demo's live backtest the kernel's call took 19-20 us and ORT's 52 us: 0.09 s of a ~3.8 s backtest at the default rule's 2,259 decisions (analysis above): not worth three implementations of every architecture.",
    "Issue 27 - demo harness and per-decision overhead: `bench_demo` runs every timed backtest in a fresh process (in one long-lived process the same variant took 3.5-6.5 s from repeat to repeat, each run inheriting the heap and collector state of the runs before it). The default rule's hysteresis made precomputed mode call it on every decision; from a flat book it is its memoryless form (`SignalRule.separable_when_flat`), so a decision whose due assets hold nothing reads weights computed before the run, and an all-zero one on a flat batch skips the order hook (demo: rule calls 2,259 -> 1,047, order-hook calls 2,259 -> 1,060). `MTLPredictions` moves its lines' indexes in place instead of Backtrader's property-per-line `advance` (5 indicators x 5 lines on every bar). Plugin vs built-in (section 2b's 2.29x at 1 row): alternating 2,000-call blocks in one process, CPU time, load ~9: `plugin_net` / `shared_bottom` (asset embedding) 1.00 / 1.14 / 1.12 at 1 / 5 / 50 rows, bare `session.run` 1.08: the 2.29x was wall-time noise.",
    "Issue 27 - the demo's per-bar and per-decision cost, measured with the fresh-process harness (commands: `python -m benchmarks.bench_demo --repeats 3`; main and this change alternated child by child on the same fold models). `MTLStrategy` moves its own `MTLPredictions`' lines one bar on in one loop per runonce bar instead of Backtrader's `advance` call per indicator (they leave Backtrader's indicator list for the run and are put back in `_stop`; a subclass and an indicator on those lines read the same values, tested); the preloaded per-bar state is Python lists (bar count = the feed's length, due bars, usable rows); a live decision's rows run on ONNX Runtime buffers bound once per batch size (in the demo run 85 -> 66 us per one-asset call, 151 -> 95 per multi-asset call); `agree_voltarget.raw_weights`, `violations`, `clip_each` and `RuleCaller.precomputed` take Python-float paths on a decision's few assets (bit for bit, hypothesis tests). Strategy-side CPU seconds of one precomputed run (per-bar Backtrader work outside `next` 0.26 -> 0.15, the floor's 0.14; `next` 0.29 -> 0.24). Main vs this change, 3 rounds, CPU medians (load 1.1-1.8): precomputed 3.93 -> 3.78 s, live 4.67 -> 4.46 s, same orders 3.78 / 3.83; harness at load ~3: empty 3.02, same orders 3.56, precomputed 3.84 (1.079x the floor), live 4.33 (1.215x): precomputed meets 1.10x, live does not (its ONNX Runtime call inside the run is ~0.15 s of the 0.5 s it adds over precomputed). The live demo backtest with f270134's rule (hysteresis off, margin 0: 3,273 decisions, 1,432 orders), cerebro.run() CPU, 3 alternating rounds at load ~3: f270134 4.50 s, main 4.86 (1.08x), this change 4.57 (1.015x).",
    "Issue 27 - counted, not only timed: `python -m benchmarks.bench_demo --instructions --models DIR` runs each demo variant under valgrind's callgrind and counts the instructions of `cerebro.run()` alone (the child marks its start and end with `os.getppid()`, where callgrind dumps its counters), which the host's drifting speed does not move; `--cache-sim` adds callgrind's simulated caches and its cycle estimate; `python -m benchmarks --demo-instructions` records them on this page. `MTLStrategy`'s own `MTLPredictions` lines now follow their feeds (`FollowingLine`: each line's length and index read off its feed's buffer, which is what `Indicator.advance` gives an indicator clocked by its feed) instead of being moved on every bar (`step_lines`: 50 attribute writes a bar for the demo's 25 lines). Instructions of `cerebro.run()`, d6f79d1 -> this change: precomputed 23.713 -> 23.498 G (-0.9%), live 24.245 -> 24.016 G (-0.9%), the floor 22.316 / 22.313 G; ratios to the floor 1.063 -> 1.053 and 1.086 -> 1.076.",
    "`mtl_bt/backtesting/runner.py` `_build_result`: `lookup.get(d, _num2ts(d))` evaluated the fallback (`bt.num2date` + pandas `Timestamp` + `round`, ~0.1 ms) for every order and trade even when the lookup hit; now `lookup[d] if d in lookup else _num2ts(d)`. A profile of 50 assets x 400 bars showed it at ~5% of the whole live backtest (12,520 calls, 1.4 s under cProfile); it grows with the number of orders.",
    "Issue 16 - inference: a numpy forward pass for every built-in architecture and input stage, built from the checkpoint's weights (eval BatchNorm folded into the Linear, LayerNorm's mean folded into centred weights, per-task MLPs/heads stacked into batched matmuls, all MoE gates in one matmul + exp + block-ones matmul, Linear heads in one matmul), checked against torch on probe rows at load; tasks' `transform_numpy` (also checked). Section 2b has the numbers; tests hold every architecture to 1e-6.",
    "Issue 16 - sweeps: a cProfile of one compare fold job (crypto demo config, shared_bottom + equal, fold 0, torch._dynamo imported beforehand) spent 0.40 s of 1.93 s in `build_dataset` (features + targets of all 5 assets), recomputed identically by every fold job of a worker; fold jobs now reuse it within a worker process (`cached_dataset`, keyed on the data's content and the feature/task/lookback settings; tested identical). The rest of the job was torch's fit (1.40 s).",
    "Issue 16 - signal rules: separable rules are applied to whole arrays in precomputed mode (see 'What dominates now').",
    "Issue 16 - streaming features (goal 5): a cProfile of `FeatureStream.push` over 1,000 BTC/USDT bars with every built-in took 0.98 s in 328k calls: each rolling feature reran its numpy core on its window every bar (`rolling_std` 0.23 s cumulative, `_window_sum` 0.10 s, `np.full_like` 0.07 s, 16 `BarBuffer.column` views 0.17 s). Now scalar Python-float updaters (0.27 s, 119k calls under cProfile) and, from 8 feeds on, one vectorised update per feature for all the step's assets (section 7). Both are bit-identical to `compute` (tests on the sample and on hypothesis bars).",
    "Issue 16 - streaming exactness: `Ewm` used alpha as given, while pandas' `ewm(alpha=a)` converts it to a centre of mass and back, `1 / (1 + (1 - a) / a)`, a different last bit for a = 1/6 or 1/3: `rsi` with window 6 or 3 streamed 1e-14 away from `compute` (the previous path too; found by the new hypothesis test). `Ewm` uses pandas' factor.",
    "Issue 16 - inference, second pass (profiled first: for shared_bottom + embedding, 1 row, at a tiny numpy call of 0.57 us: `Predictor.predict` 67 us = forward pass 38, transforms + float64 dict 13, scaling 2, the rest the input stage's concatenation and checks): the scaler's `x * a + b` (no clip) and the asset embedding fold into the first matmul (`numpy_forward.InputFold`: `x @ (a * W_x) + (b @ W_x + bias + table @ W_e)[ids]`, float64 constants once per weight; checked against torch on raw probe rows at load, a fold that disagrees falls back to scaling first), 2-D products use `ndarray.dot` (about half of `@`, a gufunc, per call at 1-5 rows), asset ids are checked with one unsigned max instead of min + max, volatility's `transform_numpy` uses `np.maximum`/`np.minimum` instead of `np.clip` (several times cheaper on a handful of rows). A/B in one process (old modules loaded beside the new, alternating blocks, load 7-8): shared_bottom 1/5/50 rows 220 -> 142, 159 -> 100, 198 -> 172 us; mmoe 166 -> 133, 175 -> 164, 316 -> 295; hierarchical 211 -> 170, 184 -> 143, 246 -> 198. Sequence encoders are unchanged: the GRU's 16 steps are ~10 small products and gates each (~0.5-1 ms per call at this load), far above 25 us in numpy.",
    "Issue 16 - per bar: bar counts and closes read off each feed's line buffers (`bars.line_buffers`: `len(feed)` is three Python calls down to `LineBuffer.lencount`, `close[0]` two), the fold lookup cached between window edges (`FoldSchedule.at`), live mode skips the two `getposition` scans for separable rules, `Holding` is a NamedTuple. Demo workload, old and new strategy in one process, 3 alternating rounds, load 4.6-5.7: precomputed / empty 1.455 -> 1.354 wall (1.449 -> 1.428 CPU), live / empty 1.701 -> 1.597 wall (1.784 -> 1.606 CPU). Every shortcut has an equality test against the code it replaces.",
    "Issue 16 - sweeps, scheduling: compare started a second process pool for its backtest jobs after a barrier on every fold job; each pool paid per worker `import torch` (3.4 s at load 4.5), mtl_bt + the registry, and the first optimizer's `torch._dynamo` (2.3 s). One pool now runs every job and a run's backtest is queued, ahead of the remaining fold jobs, as soon as its last fold job is stored (`run_jobs(then=...)`; the fold files travel as the job's `inputs`, outside its digest; tested identical).",
    "Issue 16 - start-up: the registry imported the torchjd pack's torchjd (cvxpy, scipy.stats) in every process, 6.0 s at load 6 (torch 7.3 s), whatever the config; its names now register without the import, which happens when a torchjd scheme is built.",
    "Issue 16 - compare planning built the full dataset once per trained variant (12 for the 2 x 2 crypto sweep; 8.8 s of 10.8 s of planning under cProfile at load 6); the features are now computed once per process and shared by every task set (`cached_features`), in the driver and in the fold workers (tested identical).",
    "Issue 16 - scale: `add_baselines` (EWMA/HAR-RV columns of the OOS predictions) converted and compared the whole symbol column once per (fold, symbol): 441 s of the 1,254 s 500-asset run; 200 assets 90.1 s -> 8.8 s alone (tested equal to the old code).",
    "Issue 16 - sweeps, the Δm bootstrap (compare's tables, 203 s of a 530 s 1-seed compare under load; `pandas.rank` 92 s in 12,040 calls): a resample only repeats or drops original rows, so each value's average rank follows from per-replicate counts of groups of equal original values (`compare.delta._Scorer`: one `np.unique` per array, then `np.bincount` + `cumsum` per replicate) for return/volume rank IC and direction AUC; volume's IC no longer computes the unused rank IC. One variant of the 5-seed crypto compare (300 replicates), old and new module side by side, load ~1.5: 14.5 / 13.8 s -> 2.6 / 2.7 s, identical results (and a hypothesis test against scoring the resampled arrays).",
    "Issue 16 - full collections during a run (timed with a `gc.callbacks` clock, 1 asset x 4,000 bars): one collection of the ~500k objects torch and pandas keep tracked cost 0.28-0.50 s of a 1.0-1.9 s backtest, paid or not depending on the garbage earlier runs left. `MTLStrategy` now freezes the heap for the run (`gc_freeze=True`; since issue 23 a run setting, `freeze_heap`, not a parameter; `gc.unfreeze()` in `stop`; left alone when the caller froze it; paper runs off), and every timed benchmark run starts from a collected heap (`benchmarks.common.fresh_heap`). The floors got cheaper by that as well (the 'same orders' replay paid most of the collections: 1 asset 1.13 -> 0.70 s), so the ratios to the floor rose.",
    "Issue 16 - `PortfolioAnalyzer` per bar: it built numpy arrays of closes, holdings, equity and traded notional and copied the per-asset arrays every bar; it now appends plain floats (time, value, closes, traded, costs) and keeps the book only when a fill moved it, and `get_analysis` builds the arrays once (equal bit for bit to the per-bar record, tested at 1 and 11 uneven assets).",
    "Issue 16 - precomputed mode clips a separable rule's raw weights elementwise before the run (`signals.clip.clip_each`, as Python floats) and applies only the gross cap per bar (`scale_to_gross`); `clip_weights` is the two composed (property test).",
    "Issue 16 - inference, third pass: a compiled kernel (`mtl_bt.models.kernel`): the model becomes an op table over one float32 scratch vector per row with every weight packed in one array, run by a single numba `@njit` interpreter (one type signature for every architecture, cached on disk) for every built-in architecture and input stage; the tasks' output transforms run inside it (`Task.kernel_transform`: scale, sigmoid, clamp, exp), all tasks are converted to float64 in one call. Checked against torch on probe rows at load (fallback: numpy closures, then torch). One row: 6-17 us in the run after it (numpy closures 45-415 us, torch 290-1540 us; section 2b has the latest run's, which the machine's speed on the day moves by up to 2x); a row's outputs do not depend on its batch, so live and precomputed predictions are the same bits.",
    "Issue 16 - start-up: `import mtl_bt` imported `backtrader.plot` and matplotlib to pick a headless backend (0.4-1.2 s per process: the CLI, every compare worker); a meta-path hook now does it when the plot module first loads, and keeps a backend the user chose (`import mtl_bt` 0.03 s).",
    "Issue 16 - live per bar: one asset's prediction is tested finite in Python (three numpy calls fewer) and the batch is gathered with `np.array` (a quarter of `np.stack`'s call overhead).",
]

#: optimisations that were measured side by side and not kept (numbers from those A/B runs)
TRIED = [
    "Numpy forward pass: one 2-D product for a (batch, time, in) input (reshape, then "
    "`ndarray.dot`; `dot` on 3-D arrays does not use BLAS) for the GRU's input "
    "projection: 50 rows x 16 steps is big enough for OpenBLAS to start threads, and "
    "`predict` took 12.8 ms instead of 1.4 ms (shared_bottom + GRU, load 8). 3-D inputs "
    "stay on `np.matmul`.",
    "Checking asset ids inside the gather (`np.take` with the ids viewed as uint64 so a "
    "negative id would be out of range): numpy casts the indices back to intp, so -1 "
    "still wraps to the last asset. The check is one `ids.view(np.uint64).max()` before "
    "the gather instead (a negative id is above every valid one as unsigned). "
    "`np.take(c, ids)` (4.6 us) vs the method `c.take(ids, 0)` (1.4 us) at load ~6: the "
    "method is used.",
    "Plain Python lists for the strategy's per-asset counters (`_bars`, `_due`, `_held`; "
    "`self._bars[a] += 1` on a numpy array was 1.3 us per asset per bar under "
    "line_profiler): not done, `PaperMTLStrategy` journals and restores them as numpy "
    "arrays; the counters path adds one to the whole array when every feed moved instead.",
    "One `torch.stack(heads).numpy()` conversion in `Predictor.predict` instead of one "
    "`.numpy()` per task (suggested by an earlier profile): measured slower, 100 -> 112 us "
    "per call for 1 row and 116 -> 130 us for 50 rows (median of 7 alternating blocks of "
    "2,000 calls, identical outputs); the extra `stack` op costs more than three "
    "conversions save. Reverted.",
    "`gc.freeze()` around `cerebro.run`, first try (so full collections skip the ~390k "
    "objects torch, pandas and the model leave behind): 5 assets x 10,000 bars, "
    "precomputed, 4 alternating repeats: median 9.74 s plain vs 9.18 s frozen (-6%), "
    "single runs spread 8.2-10.6 s; within the noise, not kept then. Timed with a "
    "`gc.callbacks` clock later, the spread was the point: whether a run paid a full "
    "collection (0.28-0.50 s, 1 asset x 4,000 bars) depended on the garbage earlier runs "
    "left; now kept (see 'What was fixed').",
    "Compiled kernel at 5-50 rows: each row runs alone (so its outputs do not depend on the "
    "batch, and live equals precomputed bit for bit), in scalar loops vectorised over a "
    "layer's outputs. Section 2b's `multiply-adds / row` and `50 rows at that peak` "
    "columns give the floor: where that column is above 25, 50 rows need more than 25 us "
    "at this core's large-matrix peak, whatever the implementation. Rows in SIMD lanes (the "
    "same per-row arithmetic, lane l = row l, so still bit-identical to one row at a "
    "time), measured as a second numba interpreter beside the kernel, kernel call only, "
    "same process: at 8 lanes the lane loops stayed scalar (numba runs LLVM without its "
    "SLP vectoriser, `NUMBA_SLP_VECTORIZE=0`, and LLVM's loop vectoriser skips loops of "
    "fewer than 16 iterations), so one block of up to 8 rows cost 10-12 us against 5 us "
    "for 5 rows one by one (shared_bottom, asset embedding); 16 lanes no better; at 32 "
    "lanes the loops vectorised and 50 rows took 32 us against 42-49 us (hierarchical "
    "50 against 61-100; the machine was noisy), but a 32-row block costs what ~25 single "
    "rows do, so it pays only from about 30 rows and stays above the goal with the call "
    "overhead. Not kept: a second 300-line interpreter for a 1.3-2x gain at 30+ rows. "
    "Choosing numpy above some batch size was not done either: live and precomputed "
    "predictions would differ in the last bits again.",
    "Scalar (Python float) versions of the per-decision numpy steps for one asset (gross "
    "cap, clip, rule sizing): a numpy reduction over n values sums a0 + (a1 + ...), not "
    "Python's left-to-right order, so only n = 1 is safe bit for bit, and the rules' "
    "`raw_weights` would need a second, scalar implementation per rule: not done beyond "
    "the finiteness test.",
    "A broker whose orders define `__copy__` (Backtrader clones every order about three "
    "times; the default `copy.copy` path probes `__setstate__` through `Order.__getattr__`): "
    "8.9 -> 5.1 us per clone, about 11 us per order against ~36 us to create the order and "
    "the broker's fill and notification work: about 2% of a 50-asset run. Not worth a "
    "broker subclass every user would also have to use.",
    "Numpy forward pass, first version (layer by layer as torch does it): shared_bottom "
    "with an asset embedding cost 170-180 us per call at load ~5 (torch 430-750 us in the "
    "same process): `ndarray.mean` over rows of 32 is 8-12 us, a per-row `einsum` 4-6 us, "
    "`np.clip` 7.7-8.7 us, `np.concatenate` 3.6 us, a max-shifted softmax per gate two "
    "reductions of ~5 us each (5 x 32 float32, median of 5 blocks of 2,000 calls). "
    "Replaced by a matmul with a 1/n column (1.7 us), centred weights, "
    "`np.maximum`/`np.minimum` with `out=` (5.2 us for both), slice assignment into one "
    "preallocated array, and one stacked exp + block-ones matmul for all gates (an "
    "overflow or underflow falls back to the max-shifted softmax). Kept the replacements.",
    "`np.errstate(over='ignore')` around the gates' exp: 5.2 us vs 1.6 us for the bare exp "
    "(one A/B of 3,000 calls): more than the rest of a gate; not used (the rare overflow "
    "warns and falls back).",
    "`OPENBLAS_NUM_THREADS=1`: one predict call of shared_bottom 86 us with it vs 129 us "
    "without, but in two separate processes minutes apart at load 3-4 (not alternated, so "
    "not conclusive), and numpy reads it only before its first import: left to the user's "
    "environment, not set by the library.",
    "Sweeps, process start-up: `import torch` took 6.6-8.0 s and the first optimizer's lazy "
    "`import torch._dynamo` another 5.8-7.1 s in a fresh process at load 4-6 (two runs), "
    "paid once per worker process (compare starts two pools of `--workers` processes: fold "
    "jobs, then backtest jobs). Avoiding the dynamo import needs torch's private "
    "`__dynamo_disable` attribute on the optimizer's wrapped methods: not done (private "
    "API). Reusing one pool for both phases would save one start-up per worker; "
    "`mtl_bt/compare/runner.py` belongs to the evaluation issue, not done here.",
    "Sweeps, per-fold backtests: one backtest job (5 assets x 8,736 bars, live) was 45 s "
    "under cProfile at load ~6, almost all Backtrader (`_runonce`, feed preload/advance, "
    "broker) and 2.3 s of inference before the numpy path. About a third of its bars lie "
    "before the first fold's test window (flat), but clipping them changes the features of "
    "the first test bars (EWM-type features depend on all history), so it needs each "
    "feature's declared window first: not done.",
    "Streaming batch engine, window sums as `matrix.sum(axis=0)` over the (window, assets) "
    "matrix (one call instead of w - 1 adds): not the sequential order, 8% of the streamed "
    "values on the crypto sample differed from `compute` in the last bits (numpy may sum "
    "pairwise); `np.add.accumulate(axis=0)[-1]` is sequential by definition and one call: "
    "kept that.",
    "Streaming batch engine with one `acc += x[k]` per window row and the squared "
    "deviations row by row (the same floats): ~1,500 us per step for 1 asset at load ~3.5, "
    "against ~590 us with `accumulate` and one matrix subtraction and product. Replaced.",
    "Streaming batch engine for every book: a fixed ~380-480 us per step at load 4-6, so "
    "377-481 us per bar for 1 asset and 73-105 us per asset for 5, against 40-53 us with "
    "the scalar updaters: the book uses it from 8 feeds on only (`BATCH_MIN_ASSETS`).",
    "`math.log` in the scalar updaters (0.29 us against 0.5-0.7 us for numpy's log on one "
    "value at load ~4): the same values on this CPU (no AVX-512), but numpy's SIMD log "
    "(SVML on AVX512_SKX) can differ from libm's in the last bit, and `compute` uses "
    "numpy's: not used.",
    "`map(sub)`/`map(mul)` instead of a list comprehension for the scalar std of a "
    "20-value window: 4.3-4.4 us against 4.0-5.2 us (load ~6, 5 x 20,000 calls): within "
    "the noise, not changed.",
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--only", action="append", choices=NAMES, help="run only this (repeatable)")
    ap.add_argument(
        "--demo-instructions",
        action="store_true",
        help="also count the demo runs' instructions under valgrind's callgrind (~15 min)",
    )
    ap.add_argument("--bars", type=int, help="bars per asset for the 1- and 5-asset backtests")
    ap.add_argument("--bars-50", type=int, help="bars per asset for the 50-asset backtest")
    ap.add_argument(
        "--from-json", help="do not run: rewrite the page (and plot) from this results.json"
    )
    ap.add_argument("--md", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results.json"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "benchmarks_scale.png"))
    ap.add_argument("--streaming-plot", default=str(REPO / "docs" / "benchmarks_streaming.png"))
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

    from benchmarks import (
        bench_backtest,
        bench_demo,
        bench_inference,
        bench_scale,
        bench_streaming,
        bench_training,
        weighting,
    )

    step(
        "demo",
        lambda: bench_demo.run(
            1 if args.quick else 3, log, instructions=bool(args.demo_instructions)
        ),
    )

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
    step("streaming", lambda: bench_streaming.measure(**plan["streaming"], log=log))
    results["analysis"] = ANALYSIS
    results["fixed"] = FIXED
    results["tried"] = TRIED
    results["load_average_at_end"] = loadavg()
    results["total_seconds"] = time.perf_counter() - t_start
    return results


def _relative(plot: Path | None, md_path: Path) -> str | None:
    if plot is None:
        return None
    try:
        return str(Path(plot).resolve().relative_to(md_path.resolve().parent))
    except ValueError:
        return str(plot)


def write(results: dict[str, Any], args: argparse.Namespace) -> None:
    plot = None
    if results.get("scale"):
        plot = report.plot_scale(results["scale"], Path(args.plot))
    md_path = Path(args.md)
    plot_name = _relative(plot, md_path)
    if results.get("streaming"):
        from benchmarks import bench_streaming

        streaming_plot = bench_streaming.plot(results["streaming"], Path(args.streaming_plot))
        results["streaming"]["plot"] = _relative(streaming_plot, md_path)
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
    sweeps = REPO / "benchmarks" / "sweeps.json"
    if sweeps.is_file():  # whole compare commands, timed from outside (see the page)
        import json

        results["sweeps"] = json.loads(sweeps.read_text())
    assets = REPO / "benchmarks" / "scale_assets.json"
    if assets.is_file():  # python -m benchmarks.bench_scale --assets 10,100,500 (too long here)
        import json

        results["scale_assets"] = json.loads(assets.read_text())
        png = Path(args.plot).with_name("benchmarks_scale_assets.png")
        if report.plot_scale_assets(results["scale_assets"], png) is not None:
            results["scale_assets_plot"] = png.name
    write(results, args)
    print(f"\nwrote {args.md}, {args.json}" + (f", {args.plot}" if results.get("scale") else ""))
    print(report.markdown(results, None).split("## What dominates now")[0][-6000:])
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
