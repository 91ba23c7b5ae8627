"""One rule for the CONFIG argument of every command (run, compare, demo, train, backtest):
a TOML file, or the name of a config shipped inside the package (``crypto``, ``stocks``)
when no file of that name exists."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mtl_bt.errors import ConfigError

SHIPPED = {"crypto": "crypto_demo.toml", "stocks": "stocks_demo.toml"}


def shipped_config(name: str) -> Path:
    """Path of a config shipped inside the package (``crypto`` or ``stocks``)."""
    if name not in SHIPPED:
        raise ConfigError(f"unknown shipped config {name!r}; choose one of {sorted(SHIPPED)}")
    return Path(str(resources.files("mtl_bt.configs").joinpath(SHIPPED[name])))


def config_path(config: str | Path) -> Path:
    """The file CONFIG names: an existing file, else a shipped config's name."""
    path = Path(config)
    if path.is_dir() and str(config) not in SHIPPED:  # a run folder named like a config
        raise ConfigError(f"config {path} is a folder; give a TOML file or a shipped config")
    if path.is_file() or str(config) not in SHIPPED:  # a folder (`--out crypto`) never wins
        if not path.exists():
            raise ConfigError(
                f"config file {path} not found; give a TOML file or a shipped config "
                f"({', '.join(sorted(SHIPPED))})"
            )
        return path
    return shipped_config(str(config))


def load_config(config: str | Path, overrides: tuple[str, ...] | list[str] = ()):
    """Read and validate CONFIG (file or shipped name) with ``--set`` overrides."""
    from mtl_bt import config as config_mod

    return config_mod.load(config_path(config), list(overrides))
