"""``mtl-bt check CONFIG``: look-ahead, warm-up and streaming parity of every plugin a
config uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mtl_bt.errors import UserError


class CheckFailed(UserError):
    """At least one plugin broke a law; the message names each plugin and column."""


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set features.names='[\"rsi\"]' (repeatable).",
)
@click.option(
    "--bars",
    default="auto",
    show_default=True,
    help="Last bars of each symbol to check, or 'all'; 'auto': every bar when the data hold "
    "at most 50,000 bars in all (about a minute), else the last 5,000 of each symbol.",
)
@click.option("--cuts", default=5, show_default=True, help="Cut points per look-ahead check.")
@click.option(
    "--parity-bars",
    default=300,
    show_default=True,
    help="Bars after the warm-up of the streaming-vs-preloaded backtest (0: skip it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--no-cache", is_flag=True, help="Fetch data again instead of using the cache.")
def check(
    config_path: Path,
    overrides: tuple[str, ...],
    bars: str,
    cuts: int,
    parity_bars: int,
    as_json: bool,
    no_cache: bool,
) -> None:
    """Check every feature and task CONFIG uses for look-ahead and warm-up, the
    architecture, weighting and signal rule for their contract, and a short backtest
    for streaming = preloaded.

    Exit 0 with a table when every check passes; exit 2 naming each failing plugin and
    column otherwise.
    """
    from mtl_bt import config as config_mod
    from mtl_bt.data import load_frames
    from mtl_bt.testing import config_check
    from mtl_bt.training import build_components

    if bars not in ("auto", "all") and not (bars.isdigit() and int(bars) >= 100):
        raise UserError(f"--bars {bars!r}: give a number >= 100, 'all' or 'auto'")
    if cuts < 1 or parity_bars < 0:
        raise UserError("--cuts must be >= 1 and --parity-bars >= 0")
    cfg = config_mod.load(config_path, list(overrides))
    build_components(cfg)  # unknown plugins/options fail before any data is fetched
    frames = load_frames(cfg.data, no_cache=no_cache, progress=sys.stderr.isatty())
    rows = config_check.check_config(
        cfg,
        frames,
        bars=bars if bars in ("auto", "all") else int(bars),
        cuts=cuts,
        parity_bars=parity_bars,
    )
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        click.echo(config_check.format_table(rows))
    failed = config_check.failures(rows)
    if failed:
        raise CheckFailed(
            f"{len(failed)} check(s) failed: "
            + "; ".join(
                f"{r.kind} {r.name!r} (plugin {r.plugin!r}) {r.law}: {r.detail}" for r in failed
            )
        )


commands: list[click.Command] = [check]
