"""``mtl-bt data``: fetch bars to files, inspect them, clear the cache."""

from __future__ import annotations

import json
import tomllib
import warnings
from pathlib import Path
from typing import Any

import click

from mtl_bt.errors import ConfigError, UserError


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _source_options(func):
    """The options shared by ``fetch`` and ``info`` (they describe one data request)."""
    options = [
        click.option("--source", default="sample", show_default=True, help="source plugin"),
        click.option(
            "--symbol",
            "symbols",
            multiple=True,
            help="symbol (repeat for several); sample: all ten when omitted",
        ),
        click.option("--timeframe", default=None, help="bar size, e.g. 1h, 1d (default: source's)"),
        click.option("--since", default=None, help="first bar, ISO date/time (UTC)"),
        click.option("--until", default=None, help="end, ISO date/time (UTC), exclusive"),
        click.option("--path", default=None, help="csv source: file or folder of files"),
        click.option("--exchange", default=None, help="ccxt source: exchange id (default bybit)"),
        click.option("--market", default=None, help="ccxt source: spot, linear or inverse"),
        click.option("--api-url", default=None, help="ccxt source: base URL of the exchange API"),
        click.option(
            "--option",
            "extra",
            multiple=True,
            metavar="KEY=VALUE",
            help="any other source option (value parsed as TOML), e.g. --option tz=America/New_York",
        ),
        click.option("--no-cache", is_flag=True, help="bypass the on-disk cache"),
        click.option(
            "--cache-dir",
            default=None,
            help="cache folder (default: $MTL_BT_CACHE_DIR or user cache)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(source, symbols, timeframe, since, until, path, exchange, market, api_url, extra):
    from pydantic import ValidationError

    from mtl_bt.config import Config, format_validation_error

    options: dict[str, Any] = {}
    for key, value in (
        ("path", path),
        ("exchange", exchange),
        ("market", market),
        ("api_url", api_url),
    ):
        if value is not None:
            options[key] = value
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = _value(value.strip())
    if not symbols:
        if source != "sample":
            raise ConfigError(f"give at least one --symbol for source {source!r}")
        from mtl_bt.plugins.sources.sample import CRYPTO, STOCKS

        symbols = (*CRYPTO, *STOCKS)
    try:
        request = dict(
            source=source,
            symbols=list(symbols),
            timeframe=timeframe,
            since=since,
            until=until,
            options=options,
        )
        return Config.model_validate({"data": request}).data  # errors name data.<key>
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "(mtl-bt data options)")) from None


def _load(cfg, no_cache: bool, cache_dir: str | None, progress: bool):
    """Data warnings print as ``warning: ...`` lines when they happen (the CLI's handler), not
    after the fetch: a source retrying an unreachable exchange says so at once."""
    from mtl_bt.data import load_frames
    from mtl_bt.data.validate import DataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        return load_frames(cfg, no_cache=no_cache, cache_dir=cache_dir, progress=progress)


@click.group("data")
def data() -> None:
    """Fetch market data to files, inspect it, manage the cache."""


@data.command("fetch")
@_source_options
@click.option(
    "--out", "out", required=True, type=click.Path(), help="output .csv/.parquet file or folder"
)
def fetch(
    source,
    symbols,
    timeframe,
    since,
    until,
    path,
    exchange,
    market,
    api_url,
    extra,
    no_cache,
    cache_dir,
    out,
):
    """Fetch bars and write the canonical frame (one file per symbol when several)."""
    from mtl_bt.data.io import output_format, symbol_filename, write_frame
    from mtl_bt.rundir import check_writable

    cfg = _config(source, symbols, timeframe, since, until, path, exchange, market, api_url, extra)
    target = Path(out)
    is_file = not target.is_dir() and bool(target.suffix)
    if is_file:
        output_format(target)  # clear error for an unknown suffix, before the download
    check_writable(target.parent if is_file else target, "--out folder")
    frames = _load(cfg, no_cache, cache_dir, progress=True)
    if len(frames) == 1 and is_file:
        paths = {next(iter(frames)): target}
    else:
        if is_file:
            suffix = (
                "".join(target.suffixes[-2:])
                if target.name.lower().endswith(".csv.gz")
                else target.suffix
            )
            folder = target.parent
        else:
            suffix, folder = ".csv", target
        paths = {s: folder / f"{symbol_filename(s)}{suffix}" for s in frames}
    for symbol, frame in frames.items():
        written = write_frame(frame, paths[symbol])
        first, last = frame.index[0].isoformat(), frame.index[-1].isoformat()
        click.echo(f"{symbol}: {len(frame)} bars {first} .. {last} -> {written}")


@data.command("info")
@_source_options
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
def info(
    source,
    symbols,
    timeframe,
    since,
    until,
    path,
    exchange,
    market,
    api_url,
    extra,
    no_cache,
    cache_dir,
    as_json,
):
    """Per symbol: range, bar count, inferred timeframe, gaps, zero-volume bars."""
    from mtl_bt.data.validate import describe, infer_timeframe

    cfg = _config(source, symbols, timeframe, since, until, path, exchange, market, api_url, extra)
    frames = _load(cfg, no_cache, cache_dir, progress=False)
    summaries = []
    for frame in frames.values():
        summary = describe(frame)
        if len(frame) > 1:
            summary.timeframe = summary.timeframe or infer_timeframe(frame.index)
        summaries.append(summary)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in summaries], indent=2))
    else:
        for summary in summaries:
            click.echo("\n".join(summary.lines()))


@data.command("clear-cache")
@click.option(
    "--cache-dir", default=None, help="cache folder (default: $MTL_BT_CACHE_DIR or user cache)"
)
def clear_cache(cache_dir) -> None:
    """Delete every cached bar file."""
    from mtl_bt.data.cache import Cache

    cache = Cache(cache_dir)
    removed, size, failed = cache.clear()
    click.echo(f"removed {removed} cached file(s), {size / 1e6:.1f} MB, from {cache.root}")
    if failed:
        path, error = failed[0]
        raise UserError(
            f"{len(failed)} cached file(s) could not be removed and are still there, e.g. "
            f"{path} ({error}); fix the permissions of {cache.root} and run clear-cache again"
        )


commands: list[click.Command] = [data]
