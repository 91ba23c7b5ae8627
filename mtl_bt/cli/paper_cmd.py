"""``mtl-bt paper``: paper-trade a trained model on live ccxt/yfinance bars (docs/paper.md)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import click


@contextlib.contextmanager
def status_lines(quiet: bool) -> Iterator[None]:
    """The run's status lines (start/resume, feed states, back-fill, errors) on stderr, each
    with its UTC wall time; ``--quiet`` keeps the warnings only."""

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            click.echo(self.format(record), err=True)

    handler = Echo()
    formatter = logging.Formatter("%(asctime)sZ %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    loggers = [logging.getLogger(n) for n in ("mtl_bt.paper", "mtl_bt.feeds")]
    before = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING if quiet else logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, before, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


@click.command("paper")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "--model",
    required=True,
    type=click.Path(),
    help="checkpoint file or train/run output dir (its newest fold model is used)",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="state dir")
@click.option("--poll-seconds", type=float, default=None, help="seconds between polls")
@click.option("--max-bars", type=click.IntRange(min=1), default=None, help="stop after N bars")
@click.option("--until", default=None, help="stop at this time (ISO, UTC)")
@click.option("--set", "overrides", multiple=True, help="config override KEY=VALUE (repeatable)")
@click.option("--quiet", is_flag=True, help="no line per decided bar")
@click.option("--reset", is_flag=True, help="delete the journal in --out and start over")
@click.option(
    "--give-up-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="with --max-bars/--until: exit 2 once the exchange was unreachable this long "
    "(default [paper] give_up_seconds, 600)",
)
def paper(
    config_path, model, out_dir, poll_seconds, max_bars, until, overrides, quiet, reset,
    give_up_seconds,
):  # fmt: skip
    """Paper-trade MODEL on live bars: simulated fills, nothing sent to an exchange.

    State (decided bars, orders, positions, equity) is journaled in OUT/paper.sqlite;
    run the same command again to resume. One process per OUT (a lock); status lines
    (start/resume, feed states, back-fill) go to stderr. See docs/paper.md."""
    from mtl_bt import config as config_mod
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.cli.backtest_cmd import check_config_matches
    from mtl_bt.data.timeframe import parse_time
    from mtl_bt.errors import ConfigError
    from mtl_bt.paper.runner import newest_checkpoint, run_paper

    cfg = config_mod.load(config_path, list(overrides))
    if poll_seconds is not None and not poll_seconds > 0:
        raise ConfigError(f"--poll-seconds {poll_seconds}: must be > 0")
    stop_at = parse_time(until, "--until")
    if give_up_seconds is not None:  # journaled with the run's operational settings
        cfg = cfg.model_copy(
            update={"paper": cfg.paper.model_copy(update={"give_up_seconds": give_up_seconds})}
        )
    check_config_matches(cfg, load_predictors(newest_checkpoint(model)))
    with status_lines(quiet):
        result = run_paper(
            cfg,
            model,
            out_dir,
            poll_seconds=poll_seconds,
            max_bars=max_bars,
            until=stop_at,
            reset=reset,
            echo=None if quiet else click.echo,
        )
    if not quiet:
        equity = "n/a" if result.equity is None else f"{result.equity:,.2f}"
        click.echo(
            f"stopped ({result.stopped_by}): {result.bars} bars decided now, "
            f"{result.total_bars} in the journal, equity {equity}; state in {result.out}"
        )


commands: list[click.Command] = [paper]
