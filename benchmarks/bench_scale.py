"""Scale: end-to-end ``mtl-bt run`` time, stage times and peak memory per data size.

Every size runs in its own child process (``python -m benchmarks.bench_scale
--child '<json>'``) so peak RSS (``VmHWM``) belongs to that size alone. The
child calls ``mtl_bt.pipeline.run`` - the function the ``mtl-bt run`` command
calls - with the report (plots, HTML) on.

Data: synthetic daily bars (``garch_bars``, seed = asset number, 24/7 calendar)
written as one CSV per symbol to a temporary folder and read back through the
``csv`` source (so the data stage is real file loading and validation), with the
shipped stocks demo config (shared_bottom, 4 tasks at h=5, uncertainty
weighting, expanding walk-forward 1000 train / 560 test bars); and the bundled
crypto sample (5 assets x 1h, 2024) with the shipped crypto demo config.

Imports that a run triggers lazily (torch._dynamo via the first optimizer,
matplotlib, the report modules) are done and timed first as the "imports"
stage (part of the wall time). Stage times come from thin timing wrappers installed in the child around
``features.compute`` + ``tasks.build_targets`` (features/targets), the trainer's
``fit`` (training), ``Predictor.predict`` (per-bar inference) and the
pipeline's own data/train/backtest/report timers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: (label, kind, assets, bars)
SIZES = [
    ("synthetic daily", "synthetic", 1, 2500),
    ("synthetic daily", "synthetic", 10, 2500),
    ("synthetic daily", "synthetic", 100, 2500),
    ("synthetic daily", "synthetic", 10, 5000),
    ("crypto sample 1h", "crypto", 5, 8760),
]


def _rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` from /proc is the high-water mark of this process's own address space.
    ``ru_maxrss`` is the fallback only: on Linux it survives ``exec``, so a child
    started by a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def write_synthetic(folder: Path, assets: int, bars: int) -> list[str]:
    """One CSV per symbol (fixed seeds) for the csv source; returns the symbols."""
    from mtl_bt.data import symbol_filename
    from mtl_bt.data.synthetic import garch_bars

    folder.mkdir(parents=True, exist_ok=True)
    symbols = []
    for i in range(assets):
        symbol = f"SYN{i:03d}"
        frame = garch_bars(bars, seed=i, freq="1D", start="2000-01-03", symbol=symbol)
        frame.to_csv(folder / f"{symbol_filename(symbol)}.csv", float_format="%.10g")
        symbols.append(symbol)
    return symbols


def scale_config(kind: str, symbols: list[str] | None, data_dir: Path | None, epochs: int | None):
    """The shipped demo config, pointed at the benchmark data."""
    from mtl_bt.cli.run_cmd import shipped_config
    from mtl_bt.config import load

    if kind == "crypto":
        overrides = ["training.threads=1"]
    else:
        overrides = [
            "data.source='csv'",
            f"data.symbols={json.dumps(symbols)}",
            "data.timeframe='1d'",
            f"data.options={{path = {json.dumps(str(data_dir))}}}",
            "training.threads=1",
        ]
    if epochs:
        overrides.append(f"training.epochs={epochs}")
    return load(shipped_config("crypto" if kind == "crypto" else "stocks"), overrides)


class StageTimer:
    """Accumulates seconds per (phase, stage) through wrappers around library functions."""

    def __init__(self) -> None:
        self.phase = "other"
        self.seconds: dict[str, float] = defaultdict(float)
        self.originals: list[tuple[Any, str, Any]] = []

    def restore(self) -> None:
        """Put the wrapped functions back (the smoke test runs ``child`` in-process)."""
        while self.originals:
            owner, attr, fn = self.originals.pop()
            setattr(owner, attr, fn)

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        fn = getattr(owner, attr)
        self.originals.append((owner, attr, fn))

        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds[f"{self.phase}.{stage}"] += time.perf_counter() - t0

        setattr(owner, attr, timed)

    def phased(self, owner: Any, attr: str, phase: str) -> None:
        fn = getattr(owner, attr)
        self.originals.append((owner, attr, fn))

        def in_phase(*args: Any, **kw: Any) -> Any:
            old, self.phase = self.phase, phase
            try:
                return fn(*args, **kw)
            finally:
                self.phase = old

        setattr(owner, attr, in_phase)


def import_once() -> float:
    """Seconds to import what a run imports lazily on first use (torch._dynamo, which
    torch.optim pulls in on the first optimizer; matplotlib; the report and backtest
    modules). Timed apart so it is not charged to training/report; it is part of
    ``wall_seconds`` because every ``mtl-bt run`` process pays it once."""
    t0 = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot  # noqa: F401
    import torch._dynamo  # noqa: F401

    import mtl_bt.backtesting.runner  # noqa: F401
    import mtl_bt.report.oos  # noqa: F401
    import mtl_bt.report.run_report  # noqa: F401
    import mtl_bt.strategies  # noqa: F401

    return time.perf_counter() - t0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one size end to end in this process; return times and memory."""
    import mtl_bt.features
    import mtl_bt.pipeline
    import mtl_bt.predictor
    import mtl_bt.tasks
    import mtl_bt.training
    import mtl_bt.training.pipeline
    from benchmarks.common import set_threads

    set_threads(1)
    timer = StageTimer()
    try:
        timer.wrap(mtl_bt.features, "compute", "features")
        timer.wrap(mtl_bt.tasks, "build_targets", "features")
        timer.wrap(mtl_bt.training.pipeline, "fit", "fit")
        timer.wrap(mtl_bt.predictor.Predictor, "predict", "inference")
        timer.phased(mtl_bt.training, "train_walk_forward", "train")
        timer.phased(mtl_bt.pipeline, "backtest_strategy", "backtest")
        timer.phased(mtl_bt.pipeline, "backtest_buy_and_hold", "backtest")
        with tempfile.TemporaryDirectory(prefix="mtlbt-scale-") as tmp:
            root = Path(tmp)
            symbols = None
            if spec["kind"] == "synthetic":
                symbols = write_synthetic(root / "data", spec["assets"], spec["bars"])
            config = scale_config(spec["kind"], symbols, root / "data", spec.get("epochs"))
            rss_before = _rss_mb()
            imports = import_once()
            t0 = time.perf_counter()
            result = mtl_bt.pipeline.run(
                config, root / "out", report=spec.get("report", True), buy_and_hold=True
            )
            wall = time.perf_counter() - t0 + imports
            folds = json.loads((root / "out" / "data.json").read_text())["folds"]
    finally:
        timer.restore()
    st = dict(timer.seconds)
    sec = result.seconds
    feats_train = st.get("train.features", 0.0)
    feats_bt = st.get("backtest.features", 0.0)
    fit_s = st.get("train.fit", 0.0)
    infer = st.get("backtest.inference", 0.0)
    stages = {
        "imports": imports,
        "data": sec.get("data", 0.0),
        "features": feats_train + feats_bt,
        "training": fit_s,
        "train_other": sec.get("train", 0.0) - fit_s - feats_train,
        "inference": infer,
        "backtest": sec.get("backtest", 0.0) - feats_bt - infer,
        "report": sec.get("report", 0.0),
    }
    # OOS metric tables, data.json, config.toml, remaining lazy imports
    stages["other"] = wall - sum(stages.values())
    return {
        **spec,
        "wall_seconds": wall,
        "pipeline_seconds": sec,
        "stages": stages,
        "raw_stage_seconds": st,
        "folds": len(folds),
        "train_rows": sum(int(f.get("n_fit", 0) or 0) for f in folds),
        "peak_rss_mb": _rss_mb(),
        "rss_before_run_mb": rss_before,
        "sharpe": (result.metrics.get("portfolio") or {}).get("sharpe"),
    }


def run_size(label: str, kind: str, assets: int, bars: int, epochs: int | None = None) -> dict:
    """One size in a fresh interpreter; adds the process wall time (imports included)."""
    spec = {"label": label, "kind": kind, "assets": assets, "bars": bars, "epochs": epochs}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", "--child", json.dumps(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"scale child {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = total
    return out


def measure(sizes: list[tuple] = SIZES, epochs: int | None = None, log: Any = print) -> list:
    rows = []
    for label, kind, assets, bars in sizes:
        row = run_size(label, kind, assets, bars, epochs)
        rows.append(row)
        top = max(row["stages"], key=lambda k: row["stages"][k])
        log(
            f"  scale {label} {assets} x {bars}: {row['wall_seconds']:.1f}s, "
            f"peak RSS {row['peak_rss_mb']:.0f} MB, dominant stage {top}"
        )
    return rows


#: the asset-count sweep (issue 16, goal 7): synthetic daily bars, 2,500 per asset
ASSET_SWEEP = (10, 100, 500)
ASSET_SWEEP_BARS = 2500
ASSET_SWEEP_JSON = REPO / "benchmarks" / "scale_assets.json"


def asset_sweep(
    assets: tuple[int, ...] = ASSET_SWEEP,
    bars: int = ASSET_SWEEP_BARS,
    epochs: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """``mtl-bt run`` (the pipeline, report included) at each asset count, one child
    process each; cost per asset-bar of the whole run and of each stage. Too long for
    ``make bench`` (500 assets take many minutes on 2 cores): run with
    ``python -m benchmarks.bench_scale --assets 10,100,500``; the page reads the file."""
    from datetime import UTC, datetime

    from benchmarks.common import machine_info

    info = machine_info()
    load_start = [round(x, 2) for x in os.getloadavg()]
    rows = measure([("synthetic daily", "synthetic", n, bars) for n in assets], epochs, log)
    for row in rows:
        cells = row["assets"] * row["bars"]
        row["us_per_asset_bar"] = 1e6 * row["wall_seconds"] / cells
        row["stage_us_per_asset_bar"] = {k: 1e6 * v / cells for k, v in row["stages"].items()}
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.bench_scale --assets " + ",".join(str(n) for n in assets),
        "machine": info,
        "load_at_start": load_start,
        "load_at_end": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help="internal: run one size (JSON spec) and print JSON")
    parser.add_argument(
        "--assets", help="asset-count sweep, e.g. 10,100,500 (writes benchmarks/scale_assets.json)"
    )
    parser.add_argument("--epochs", type=int, help="training.epochs for --assets (default: config)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.assets:
        from benchmarks import report

        result = asset_sweep(tuple(int(n) for n in args.assets.split(",")), epochs=args.epochs)
        report.write_json(ASSET_SWEEP_JSON, result)
        print(f"wrote {ASSET_SWEEP_JSON}")
        return 0
    measure()
    return 0


if __name__ == "__main__":
    sys.exit(main())
