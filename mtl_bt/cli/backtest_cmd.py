"""``mtl-bt backtest``: trade trained checkpoints inside Backtrader and write the results."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mtl_bt.errors import DataError


def swap_data(symbols: list[str], files: tuple[str, ...]) -> dict[str, Path]:
    """Map each --data file to the configured symbol whose file name is its stem."""
    from mtl_bt.data import symbol_filename

    by_stem = {symbol_filename(s): s for s in symbols}
    out: dict[str, Path] = {}
    for item in files:
        path = Path(item)
        stem = path.name.split(".")[0]
        if stem not in by_stem:
            raise DataError(
                f"--data {path}: file stem {stem!r} matches no configured symbol; name the file "
                f"after one of {sorted(by_stem)} (e.g. {next(iter(sorted(by_stem)))}.csv) or add "
                "the symbol to data.symbols"
            )
        symbol = by_stem[stem]
        if symbol in out:
            raise DataError(f"--data gives two files for {symbol}: {out[symbol]} and {path}")
        out[symbol] = path
    return out


def check_config_matches(cfg, predictors) -> None:
    """The config's features and tasks must be the model's (``mtl_bt.backtesting.inputs``;
    imported late: the CLI starts without Backtrader)."""
    from mtl_bt.backtesting.inputs import check_config_matches as check

    check(cfg, predictors)


def _flat(value, prefix: str) -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def overridden(cfg, predictors) -> list[str]:
    """The config's ``[model]`` and ``[features]`` keys the checkpoint decides instead (the
    model is rebuilt from the checkpoint: its architecture, widths, feature parameters): each
    as ``key: config X, checkpoint Y``. Nothing silently ignored."""
    saved = predictors[0].checkpoint.config or {}
    mine = cfg.model_dump(mode="json")
    lines = []
    for section in ("model", "features"):
        if section not in saved:
            continue
        have, want = _flat(saved[section], section), _flat(mine.get(section), section)
        for key in sorted(set(have) | set(want)):
            if have.get(key) != want.get(key):
                lines.append(f"{key}: config {want.get(key)!r}, checkpoint {have.get(key)!r}")
    return lines


@click.command("backtest")
@click.argument("config_path", metavar="CONFIG")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    type=click.Path(),
    help="checkpoint file or train output dir (all fold checkpoints, in order); repeatable",
)
@click.option(
    "--data",
    "data_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV/Parquet bars replacing a configured symbol (file stem = symbol, '/' -> '_')",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output dir"
)
@click.option("--set", "overrides", multiple=True, help="config override KEY=VALUE (repeatable)")
@click.option(
    "--baseline", type=click.Choice(["buy_and_hold"]), default=None, help="run a baseline"
)
@click.option("--quiet", is_flag=True, help="no progress bar or summary")
@click.option(
    "--force", is_flag=True, help="replace --out even if it holds files that are not an mtl-bt run"
)
def backtest(config_path, models, data_files, out_dir, overrides, baseline, quiet, force) -> None:
    """Backtest trained models on the configured data; write metrics.json, returns.csv,
    orders.csv and trades.csv to --out. CONFIG is a TOML file (or `crypto` / `stocks`)."""
    from mtl_bt import rundir
    from mtl_bt.backtesting.runner import (
        build_signal,
        load_predictors,
        run_backtest,
        write_outputs,
    )
    from mtl_bt.cli.configs import load_config
    from mtl_bt.cli.run_cmd import rejected_line
    from mtl_bt.data import load_frames, read_frame

    cfg = load_config(config_path, overrides)
    symbols = list(cfg.data.symbols)
    swapped = swap_data(symbols, data_files)
    bar = not quiet and sys.stderr.isatty()  # no progress bar into a log file
    if baseline is None:
        build_signal(cfg.backtest)  # a signal option typo fails before any data is loaded
    with rundir.owned(out_dir, kind="backtest", config=cfg, force=force) as staging:
        predictors = load_predictors(list(models))
        check_config_matches(cfg, predictors)
        ignored = overridden(cfg, predictors)
        if ignored:
            shown = "; ".join(ignored[:6]) + (
                f"; and {len(ignored) - 6} more" if len(ignored) > 6 else ""
            )
            click.echo(
                f"warning: the checkpoint, not the config, decides {len(ignored)} setting(s) "
                f"(the model is rebuilt from it): {shown}",
                err=True,
            )
        frames = {}
        rest = [s for s in symbols if s not in swapped]
        if rest:
            loaded = load_frames(cfg.data.model_copy(update={"symbols": rest}), progress=bar)
            frames.update(loaded)
        for symbol, path in swapped.items():
            frames[symbol] = read_frame(path, symbol=symbol, timeframe=cfg.data.timeframe)
        frames = {s: frames[s] for s in symbols}
        result = run_backtest(frames, predictors, cfg.backtest, baseline=baseline, progress=bar)
        write_outputs(result, staging)
    if not quiet:
        m = result.metrics

        def fmt(v):
            return "n/a" if v is None else f"{v:.3f}"

        click.echo(
            f"{len(result.returns)} bars, {m['num_trades']} trades: sharpe {fmt(m['sharpe'])}, "
            f"sortino {fmt(m['sortino'])}, max drawdown {fmt(m['max_drawdown'])}, "
            f"cagr {fmt(m['cagr'])}; wrote {out_dir}"
        )
    label = "buy & hold" if baseline else "the MTL strategy"
    click.echo(
        rejected_line(label, {"portfolio": result.metrics}, Path(out_dir) / "orders.csv"),
        err=True,
        nl=False,
    )


commands: list[click.Command] = [backtest]
