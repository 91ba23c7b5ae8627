"""Placebo backtests: does the profit depend on the model's predictions being in time?

The same fold models, rule, costs and bars, with the predictions

- **block-shuffled in time** within each fold (blocks of ``block`` bars, default the
  holding horizon, so a block keeps the autocorrelation of overlapping h-bar forecasts;
  the order of the blocks is a random permutation, one per draw and asset);
- **lagged** by k bars (the decision at bar t reads the prediction made at t - k).

The real run's Sharpe is then placed in the placebo distribution: ``p = (1 + #{placebo
Sharpe >= real}) / (1 + draws)``, the one-sided permutation p-value of "the timing of the
predictions adds nothing". A model whose profit survives shuffling earns it from the
rule (e.g. being long a rising market), not from forecasting.

Each draw is a whole backtest (seconds), so the draws stop early once the answer is "no
evidence" (Besag & Clifford 1991, sequential Monte Carlo p-values): drawing stops when
``stop_after`` placebos (default 2) have reached the real net Sharpe and as many the real
gross Sharpe; a statistic whose ``h``-th such draw was draw ``l`` gets ``p = h / l``, one
that never got there (all draws ran) the permutation p above. Both are valid p-values
(``P(p <= a) <= a`` when timing adds nothing; the test suite checks it exactly), and a
model whose placebos rarely reach it still gets every draw, so the smallest p stays
``1 / (1 + draws)``. The draws are the same random stream either way: an early stop keeps
a prefix of the full study's draws.

How: ``Placebo`` wraps a fold predictor and reorders the rows of each ``predict`` call. It
needs the strategy's precomputed mode, where each call holds one asset's rows of one fold
(in chunks of up to 8192 rows: a longer fold is shuffled within each chunk); the study
forces ``mode = "precomputed"``. It runs on a finished ``mtl-bt run`` folder::

    python -m mtl_bt.compare.placebo RUN_DIR [--draws 50] [--stop-after 2] [--block H]
        [--lags 1,H] [--json F]

``mtl-bt compare`` runs it on its demo variant's first seed (``--placebo-draws``, job
``mtl_bt.compare.jobs:placebo_run``); each draw is one backtest (about 2.7 s on the crypto
demo, idle machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def block_order(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(n) that moves whole blocks of ``block`` rows (the last block
    may be shorter)."""
    starts = np.arange(0, n, max(1, int(block)))
    picked = rng.permutation(len(starts))
    return np.concatenate([np.arange(s, min(s + block, n)) for s in starts[picked]])


class Placebo:
    """A fold predictor whose outputs are block-shuffled (``block``, ``rng``) or lagged by
    ``lag`` rows within each ``predict`` call; everything else is the inner predictor's."""

    def __init__(
        self,
        inner: Any,
        *,
        block: int | None = None,
        lag: int = 0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if (block is None) == (lag == 0):
            raise ValueError("a placebo shuffles (block=...) or lags (lag=...), one of them")
        if lag < 0:
            raise ValueError(f"lag must be >= 0, got {lag}")
        self._inner = inner
        self.block = block
        self.lag = int(lag)
        self.rng = rng or np.random.default_rng(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def predict(self, x: np.ndarray, asset_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out = self._inner.predict(x, asset_ids)
        n = len(next(iter(out.values())))
        if self.block is not None:
            order = block_order(n, self.block, self.rng)
            return {t: np.asarray(v)[order] for t, v in out.items()}
        shifted = {}
        for t, v in out.items():
            v = np.asarray(v, dtype=np.float64)
            lagged = np.full(n, np.nan)
            if self.lag < n:
                lagged[self.lag :] = v[: n - self.lag]
            shifted[t] = lagged
        return shifted


#: stop drawing once this many placebos reach the real Sharpe (net and gross; 0: never).
#: Any h gives a valid p-value; a small h saves draws when the answer is "no evidence"
#: (2: the crypto demo stops after 3 draws instead of 19, p = 2/3 instead of 0.30) and
#: never costs a significant result its draws: at 19 draws p <= 0.05 needs all 19 below
#: the real Sharpe, and then no early stop happens.
STOP_AFTER = 2


def sequential_p_value(real: float, placebo: list[float], stop_after: int) -> float:
    """Besag & Clifford's sequential p-value of ``real`` over ``placebo`` in draw order: if
    the ``stop_after``-th draw at or above ``real`` is the l-th (undefined draws left out),
    ``stop_after / l``; otherwise ``p_value`` over all of them (``stop_after`` 0: always)."""
    values = [v for v in placebo if np.isfinite(v)]
    if not np.isfinite(real) or not values:
        return float("nan")
    if stop_after > 0:
        hits = 0
        for count, v in enumerate(values, start=1):
            hits += v >= real
            if hits == stop_after:
                return stop_after / count
    return p_value(real, values)


def p_value(real: float, placebo: list[float]) -> float:
    """One-sided permutation p-value of ``real`` against the placebo Sharpes (undefined
    draws, e.g. a placebo that never traded, are left out)."""
    values = np.asarray([v for v in placebo if np.isfinite(v)], dtype=float)
    if not np.isfinite(real) or values.size == 0:
        return float("nan")
    return float((1 + np.sum(values >= real)) / (1 + values.size))


def study(
    frames: dict,
    predictors: list[Any],
    bt_cfg: Any,
    *,
    draws: int = 50,
    stop_after: int = STOP_AFTER,
    block: int | None = None,
    lags: list[int] | None = None,
    seed: int = 0,
    log=None,
) -> dict[str, Any]:
    """The real backtest, up to ``draws`` block-shuffled ones (fewer when ``stop_after``
    of them reach the real net and gross Sharpe) and one per lag; Sharpe (net and gross)
    of each and the sequential p-values of the real Sharpe against the shuffled draws."""
    from mtl_bt.backtesting.runner import run_backtest

    say = log or (lambda _msg: None)
    cfg = bt_cfg.model_copy(update={"mode": "precomputed"})
    horizon = _horizon(predictors[0])
    block = int(block or horizon)
    lags = lags if lags is not None else sorted({1, horizon})

    def metrics(models: list[Any]) -> dict[str, float]:
        m = run_backtest(frames, models, cfg).metrics
        return {k: _num(m.get(k)) for k in ("sharpe", "gross_sharpe", "turnover", "cost_drag")}

    t0 = time.perf_counter()
    real = metrics(predictors)
    say(f"real: Sharpe {real['sharpe']:.3f} (gross {real['gross_sharpe']:.3f})")
    rng = np.random.default_rng(seed)
    shuffled: list[dict[str, float]] = []
    hits = {"sharpe": 0, "gross_sharpe": 0}
    for d in range(draws):
        draw = np.random.default_rng(rng.integers(2**63))
        shuffled.append(metrics([Placebo(p, block=block, rng=draw) for p in predictors]))
        say(f"shuffle {d + 1}/{draws}: Sharpe {shuffled[-1]['sharpe']:.3f}")
        for key in hits:
            hits[key] += shuffled[-1][key] >= real[key]  # NaN on either side: no hit
        if stop_after > 0 and min(hits.values()) >= stop_after:
            say(f"stopped: {stop_after} draws reached the real net and gross Sharpe")
            break
    lagged = {}
    for k in lags:
        lagged[k] = metrics([Placebo(p, lag=k) for p in predictors])
        say(f"lag {k}: Sharpe {lagged[k]['sharpe']:.3f}")
    p = {
        key: sequential_p_value(real[key], [s[key] for s in shuffled], stop_after)
        for key in ("sharpe", "gross_sharpe")
    }
    return {
        "real": real,
        "block": block,
        "draws": len(shuffled),
        "max_draws": draws,
        "stop_after": stop_after,
        "shuffled": shuffled,
        "lagged": {str(k): v for k, v in lagged.items()},
        "p_sharpe": p["sharpe"],
        "p_gross_sharpe": p["gross_sharpe"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def draws_note(result: dict[str, Any]) -> str:
    """How many draws ran and why, e.g. "3 of at most 19 draws, stopped once 2 reached the
    real Sharpe" (or "19 draws")."""
    n, most = int(result["draws"]), int(result.get("max_draws", result["draws"]))
    if n < most:
        h = result.get("stop_after")
        return f"{n} of at most {most} draws, stopped once {h} reached the real Sharpe"
    return f"{n} draws"


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _horizon(predictor: Any) -> int:
    """The smallest return horizon (the default rule's holding period), else 1."""
    hs = [int(t.split("@", 1)[1]) for t in predictor.task_names if t.startswith("return@")]
    return min((h for h in hs if h > 0), default=1)


def summary(result: dict[str, Any]) -> str:
    """A few lines: where the real Sharpe sits among the placebos."""
    sh = np.array([s["sharpe"] for s in result["shuffled"]], dtype=float)
    q = np.nanquantile(sh, [0.05, 0.5, 0.95]) if np.isfinite(sh).any() else [np.nan] * 3
    lines = [
        f"real Sharpe {result['real']['sharpe']:.3f} (gross {result['real']['gross_sharpe']:.3f})",
        f"block-shuffled ({draws_note(result)}; blocks of {result['block']} bars): Sharpe "
        f"5% {q[0]:.3f}, median {q[1]:.3f}, 95% {q[2]:.3f}; p = {result['p_sharpe']:.3f} "
        f"(gross: p = {result['p_gross_sharpe']:.3f})",
    ]
    for k, m in result["lagged"].items():
        lines.append(f"lagged {k} bar(s): Sharpe {m['sharpe']:.3f} (gross {m['gross_sharpe']:.3f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtl_bt.compare.placebo")
    parser.add_argument("run_dir")
    parser.add_argument("--draws", type=int, default=50, help="at most this many shuffles")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=STOP_AFTER,
        help="stop once this many shuffles reach the real Sharpe (0: run every draw)",
    )
    parser.add_argument("--block", type=int, default=None, help="bars (default: the horizon)")
    parser.add_argument("--lags", default=None, help="comma-separated bars (default 1,H)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.draws < 0 or args.stop_after < 0:
        print("--draws and --stop-after must be >= 0", file=sys.stderr)
        return 2
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.config import load
    from mtl_bt.data import load_frames

    run = Path(args.run_dir)
    if not (run / "config.toml").exists() or not (run / "checkpoints").is_dir():
        print(f"{run}: not an mtl-bt run folder (config.toml, checkpoints/)", file=sys.stderr)
        return 2
    cfg = load(run / "config.toml")
    lags = [int(k) for k in args.lags.split(",")] if args.lags else None
    result = study(
        load_frames(cfg.data),
        load_predictors([str(run / "checkpoints")]),
        cfg.backtest,
        draws=args.draws,
        stop_after=args.stop_after,
        block=args.block,
        lags=lags,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(summary(result))
    if args.json:
        from mtl_bt.atomic import write_text

        write_text(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
