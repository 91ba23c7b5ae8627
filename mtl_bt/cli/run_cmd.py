"""``mtl-bt run``, ``mtl-bt compare`` and ``mtl-bt demo``."""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from mtl_bt.cli.configs import SHIPPED, load_config, shipped_config  # noqa: F401 (re-exported)
from mtl_bt.errors import ConfigError
from mtl_bt.safety import NO_GUARDS_HELP, disable_guards


def _say(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    return say


def _load(config: str, overrides: tuple[str, ...]):
    return load_config(config, overrides)


#: metrics that are fractions of value (or of time, of trades): printed as percentages
PERCENT = frozenset(
    {"max_drawdown", "win_rate", "cagr", "annual_volatility", "exposure", "gross_cagr",
     "cost_drag"}
)  # fmt: skip


def _cell(key: str, value: Any) -> str:
    from mtl_bt.report.document import fmt

    if key in PERCENT and isinstance(value, int | float) and math.isfinite(value):
        return f"{value * 100:.2f}%"
    return fmt(value)


def metrics_text(metrics: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """Plain-text metrics table printed at the end of a run: fractions as percentages, every
    column aligned (the labels' width is the longest label's)."""
    from mtl_bt.report.run_report import METRICS

    port = metrics.get("portfolio", {})
    base = (baseline or {}).get("portfolio", {})
    labels = [(key, label.replace(" (fraction of value)", "")) for key, label in METRICS]
    width = max(len(label) for _, label in labels) + 2
    lines = [f"{'metric':<{width}}{'MTL strategy':>15}" + (f"{'buy & hold':>15}" if base else "")]
    for key, label in labels:
        line = f"{label:<{width}}{_cell(key, port.get(key)):>15}"
        if base:
            line += f"{_cell(key, base.get(key)):>15}"
        lines.append(line)
    return "\n".join(lines)


def rejected_line(label: str, metrics: dict[str, Any] | None, orders: Path) -> str:
    """A warning line when the broker refused orders ('' when none): never only a count in
    metrics.json."""
    n = int(((metrics or {}).get("portfolio") or {}).get("rejected_orders") or 0)
    if not n:
        return ""
    return (
        f"warning: the broker refused {n} order(s) of {label} (not enough cash, or rejected); "
        f"each is in {orders} with its status\n"
    )


def _command_line() -> str:
    return "mtl-bt " + " ".join(shlex.quote(a) for a in sys.argv[1:])


FORCE = click.option(
    "--force",
    is_flag=True,
    help="replace --out even if it holds files that are not an mtl-bt run",
)


def _run(config: Any, out: str, quiet: bool, no_cache: bool, force: bool = False) -> None:
    from mtl_bt import pipeline, rundir

    say = _say(quiet)
    t0 = time.perf_counter()
    with rundir.owned(out, kind="run", config=config, force=force) as staging:
        result = pipeline.run(
            config, staging, no_cache=no_cache, progress=not quiet, log=say, name=Path(out).name
        )
    click.echo(metrics_text(result.metrics, result.buy_and_hold))
    for label, doc, where in (
        ("the MTL strategy", result.metrics, "orders.csv"),
        ("buy & hold", result.buy_and_hold, "baselines/buy_and_hold/orders.csv"),
    ):
        click.echo(rejected_line(label, doc, Path(out) / where), err=True, nl=False)
    out_path = Path(out)
    report = out_path / ("report.html" if config.report.html else "report.md")
    click.echo(f"\nReport: {report}  ({time.perf_counter() - t0:.0f}s; artefacts in {out_path}/)")


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a config key, e.g. --set training.epochs=5 (repeatable)",
)
@click.option("--quiet", is_flag=True, help="no progress bars or messages")
@click.option("--no-cache", is_flag=True, help="fetch data again, ignoring the on-disk cache")
@FORCE
@click.option("--no-guards", is_flag=True, help=NO_GUARDS_HELP)
def run(
    config: str,
    out: str,
    overrides: tuple[str, ...],
    quiet: bool,
    no_cache: bool,
    force: bool,
    no_guards: bool,
) -> None:
    """Data -> walk-forward training -> out-of-sample backtest -> report, all into OUT.

    CONFIG is a TOML file (or `crypto` / `stocks` for a shipped config). One run owns OUT
    at a time; a finished run replaces OUT's previous contents as a whole.
    """
    if no_guards:
        disable_guards()
    _run(_load(config, overrides), out, quiet, no_cache, force)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--architectures", default=None, help="comma-separated, e.g. shared_bottom,mmoe")
@click.option("--weightings", default=None, help="comma-separated, e.g. equal,uncertainty")
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="seeds per variant (training.seed, +1, ...)",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 4096),
    help="parallel jobs (default: number of cores)",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local worker processes or a Ray cluster",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster address, e.g. 10.0.0.5:6379 (needs --executor ray; default: start Ray "
    "locally)",
)
@click.option(
    "--connect-timeout",
    default=None,
    type=click.FloatRange(0.1, 3600.0),
    help="seconds to wait for the Ray cluster at --address before giving up (default 30)",
)
@click.option(
    "--baselines",
    "baselines",
    default=None,
    help="simple baselines to add: linear,lightgbm, or none (default: both when scikit-learn "
    "and LightGBM are installed: pip install 'mtl-bt[baselines]')",
)
@click.option(
    "--placebo-draws",
    "placebo_draws",
    default=None,
    type=click.IntRange(0, 10000),
    help="at most this many block-shuffled placebo backtests of the demo variant's first "
    "seed, stopping early once 2 reach its Sharpe (0: none) [default: 19]",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a config key (repeatable)",
)
@click.option("--quiet", is_flag=True, help="no progress bars or messages")
@click.option("--no-cache", is_flag=True, help="fetch data again, ignoring the on-disk cache")
def compare(
    config: str,
    out: str,
    architectures: str | None,
    weightings: str | None,
    seeds: int,
    workers: int | None,
    executor: str,
    address: str | None,
    connect_timeout: float | None,
    baselines: str | None,
    placebo_draws: int | None,
    overrides: tuple[str, ...],
    quiet: bool,
    no_cache: bool,
) -> None:
    """MTL variants vs the single-task models, the simple baselines (linear, LightGBM) and
    buy-and-hold, mean +- std over seeds, with placebo backtests.

    CONFIG is a TOML file (or `crypto` / `stocks` for a shipped config). Re-running with
    the same OUT skips the jobs that already finished.
    """
    from mtl_bt import rundir
    from mtl_bt.compare.executor import CONNECT_TIMEOUT, check_address
    from mtl_bt.compare.runner import PLACEBO_DRAWS, pick_baselines
    from mtl_bt.compare.runner import compare as run_compare

    simple = None
    if baselines is not None:
        simple = (
            []
            if baselines.strip().lower() == "none"
            else _names("--baselines", baselines, "linear,lightgbm")
        )
    arch_names = _names("--architectures", architectures, "shared_bottom,mmoe")
    weighting_names = _names("--weightings", weightings, "equal,uncertainty")
    if executor != "ray":
        for flag, value in (("--address", address), ("--connect-timeout", connect_timeout)):
            if value is not None:
                raise ConfigError(
                    f"{flag} {value} is for a Ray cluster, but --executor is {executor}: add "
                    f"--executor ray, or drop {flag}"
                )
    if connect_timeout is not None and not address:
        raise ConfigError("--connect-timeout is the wait for the cluster at --address; give both")
    cfg = _load(config, overrides)
    say = _say(quiet)
    # before any work: a missing package is exit 2 when asked for, else one line (even --quiet)
    simple = pick_baselines(simple, lambda msg: click.echo(msg, err=True))
    if executor == "ray" and address:  # before any work: Ray retries a dead address for minutes
        timeout = connect_timeout or CONNECT_TIMEOUT
        say(f"connecting to the Ray cluster at {address} (waiting up to {timeout:g} s)")
        check_address(address, timeout)
    with rundir.locked(out):  # resumable: one compare at a time, finished jobs are kept
        result = run_compare(
            cfg,
            out,
            architectures=arch_names,
            weightings=weighting_names,
            seeds=seeds,
            workers=workers,
            executor=executor,
            address=address,
            no_cache=no_cache,
            progress=not quiet,
            command=_command_line(),
            log=say,
            baselines=simple,
            placebo_draws=PLACEBO_DRAWS if placebo_draws is None else placebo_draws,
        )
    _print_comparison(result, out)


def _names(flag: str, text: str | None, example: str) -> list[str]:
    """A comma-separated option's names; given but naming nothing (``","``) is an error, not
    the default."""
    from mtl_bt.compare.variants import split_names

    names = split_names(text)
    if text is not None and not names:
        raise ConfigError(
            f"{flag} {text!r} names nothing; give comma-separated names, e.g. {example}, or "
            f"leave {flag} out for the config's own"
        )
    return names


def verdict(table) -> str:
    """One line before the wide tables: the best MTL variant's seed-ensemble Sharpe against the
    single-task model of its architecture, with the paired bootstrap's 95% CI and what it
    says ('' when no MTL variant has a paired difference)."""
    if table is None or "sharpe_diff" not in table:
        return ""
    rows = table[(table["kind"] == "mtl") & table["sharpe_diff"].notna()]
    if rows.empty:
        return ""
    best = rows.loc[rows["ensemble_sharpe"].fillna(-math.inf).idxmax()]
    diff, low, high = (
        float(best[k]) for k in ("sharpe_diff", "sharpe_diff_low", "sharpe_diff_high")
    )
    if math.isfinite(low) and low > 0:
        said = "MTL is better"
    elif math.isfinite(high) and high < 0:
        said = "MTL is worse"
    else:
        said = "no significant difference"
    return (
        f"Verdict: best MTL variant {best['variant']} (Sharpe {best['ensemble_sharpe']:.2f}) vs "
        f"its single-task model: Sharpe difference {diff:+.2f}, 95% CI [{low:.2f}, {high:.2f}]: "
        f"{said} ({len(rows)} MTL variant(s) compared; details below and in comparison.md)"
    )


def _print_comparison(result, out) -> None:
    from mtl_bt.compare.table import performance_view, significance_view
    from mtl_bt.report.document import table_markdown

    line = verdict(result.table)
    if line:
        click.echo(line)
    from mtl_bt.compare.table import simple_verdict

    simple = simple_verdict(result.vs_simple, result.specs)
    if simple:
        click.echo(simple)
    if result.placebo is not None:
        from mtl_bt.compare.placebo import draws_note

        study = result.placebo
        click.echo(
            f"Placebo ({study['name']}): real Sharpe {study['real']['sharpe']:.2f}, p = "
            f"{study['p_sharpe']:.3f} against its predictions block-shuffled in time "
            f"({draws_note(study)}; small p: the profit depends on the predictions' timing)"
        )
    if line or simple or result.placebo is not None:
        click.echo("")
    click.echo(table_markdown(performance_view(result.table)))
    click.echo("")
    click.echo(table_markdown(significance_view(result.table)))
    click.echo(f"\nComparison: {Path(out) / 'comparison.md'}")
    if result.failed:
        click.echo(
            f"\n{len(result.failed)} of {len(result.jobs)} jobs failed "
            "(the others were written; re-run to retry only the failed ones):",
            err=True,
        )
        for job in result.failed:
            click.echo(
                f"  {job.name}: {job.error}  (details: {job.out_dir / 'error.txt'})", err=True
            )
        raise SystemExit(1)


@click.command()
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(file_okay=False),
    help="output folder (default: runs/demo_<config>)",
)
@click.option(
    "--config",
    "config",
    default="crypto",
    show_default=True,
    help="shipped config (crypto: BTC, ETH, SOL, AVAX, DOT hourly 2024; stocks: "
    "AAPL, IBM, MSFT, GOOG, FB daily) or a TOML file",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a config key (repeatable)",
)
@click.option("--quiet", is_flag=True, help="no progress bars or messages")
@FORCE
def demo(
    out: str | None, config: str, overrides: tuple[str, ...], quiet: bool, force: bool
) -> None:
    """Run the bundled demo end to end and print its metrics (151 s measured on 2 cores at
    load 15-18; less on an idle machine)."""
    cfg = _load(config, overrides)
    label = config if config in SHIPPED else Path(config).stem
    out = out or os.path.join("runs", f"demo_{label}")
    _run(cfg, out, quiet, no_cache=False, force=force)


commands: list[click.Command] = [run, compare, demo]
