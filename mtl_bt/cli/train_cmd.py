"""``mtl-bt train``: walk-forward training from a TOML config."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mtl_bt import config as config_mod
from mtl_bt.safety import NO_GUARDS_HELP, disable_guards


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for checkpoints/, train_log.csv, predictions.parquet, fold_metrics.csv.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set training.epochs=5 (repeatable).",
)
@click.option("--quiet", is_flag=True, help="No progress bars or per-fold lines.")
@click.option("--no-cache", is_flag=True, help="Fetch data again instead of using the cache.")
@click.option(
    "--force", is_flag=True, help="Replace --out even if it holds files that are not an mtl-bt run."
)
@click.option("--no-guards", is_flag=True, help=NO_GUARDS_HELP)
def train(
    config_path: Path,
    out_dir: Path,
    overrides: tuple[str, ...],
    quiet: bool,
    no_cache: bool,
    force: bool,
    no_guards: bool,
) -> None:
    """Train one model per walk-forward fold and write out-of-sample predictions."""
    from mtl_bt import rundir

    if no_guards:
        disable_guards()
    from mtl_bt.data import load_frames
    from mtl_bt.pipeline import check_config
    from mtl_bt.training import train_walk_forward

    cfg = config_mod.load(config_path, list(overrides))
    check_config(cfg)  # unknown plugins/options fail before any data is fetched
    show = not quiet
    with rundir.owned(out_dir, kind="train", config=cfg, force=force) as staging:
        frames = load_frames(cfg.data, no_cache=no_cache, progress=show and sys.stderr.isatty())
        result = train_walk_forward(
            cfg,
            frames,
            out_dir=staging,
            progress=show,
            log=(lambda m: click.echo(m, err=True)) if show else None,
        )
    if not quiet:
        click.echo(
            f"trained {len(result.folds)} fold(s) on {len(result.symbols)} symbol(s), "
            f"{len(result.predictions)} out-of-sample predictions -> {out_dir}"
        )


commands: list[click.Command] = [train]
