"""A backtest's inputs from its config: the fold models it trades (checked against the
run's manifest and fold table), the signal rule with its options, and MTLStrategy's
parameters. Kept apart from the runner so the strategy can build itself from a config
without importing the runner (which imports the strategy)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_bt.config import BacktestConfig
from mtl_bt.errors import CheckpointError, UserError


def sizing_lambda(predictor: Any) -> float:
    """The decay of the backtest's EWMA sizing input (``ewma_vol``) for ``predictor``'s
    bars: ``mtl_bt.metrics.volatility.timeframe_lambda`` of the trained run's
    ``data.timeframe``, so the half-life is RiskMetrics' 11.2 days in calendar time on any bar
    size (hourly: 0.99743, daily: 0.94), the same as the ``qlike_ewma`` baseline. A model
    without a recorded timeframe gets 0.94."""
    from mtl_bt.metrics.volatility import timeframe_lambda

    config = getattr(getattr(predictor, "checkpoint", None), "config", None) or {}
    data = config.get("data") if isinstance(config, dict) else None
    return timeframe_lambda((data or {}).get("timeframe") if isinstance(data, dict) else None)


def find_checkpoints(path: str | os.PathLike[str]) -> list[Path]:
    """A checkpoint file, or every fold checkpoint of a train output dir (in fold order)."""
    from mtl_bt.rundir import verify_checkpoints

    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted((path / "checkpoints").glob("fold_*.pt")) or sorted(path.glob("fold_*.pt"))
        found = found or sorted(path.rglob("*.pt"))
        if found:
            verify_checkpoints(path, found)  # manifest.json: only this run's files
            check_fold_table(path, found)
            return found
        raise CheckpointError(f"{path} holds no checkpoints (expected checkpoints/fold_XXX.pt)")
    raise CheckpointError(f"model {path} not found (give a checkpoint file or a train output dir)")


def _fold_table(folder: Path) -> tuple[Path, list[int]] | None:
    """The run's fold numbers from folds.json (train) or data.json (run), if present."""
    for name in ("folds.json", "data.json"):
        table = folder / name
        if table.exists():
            try:
                folds = json.loads(table.read_text(encoding="utf-8")).get("folds")
                return table, [int(f["fold"]) for f in folds]
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise CheckpointError(
                    f"{table} is unreadable as a fold table ({type(exc).__name__}: {exc}); "
                    "re-run training to rewrite it"
                ) from None
    return None


def check_fold_table(folder: Path, checkpoints: list[Path]) -> None:
    """Every fold of the run's fold table has exactly one ``fold_XXX.pt``, and no other."""
    table = _fold_table(folder)
    named = [p for p in checkpoints if re.fullmatch(r"fold_\d+\.pt", p.name)]
    if table is None or not named:
        return
    source, folds = table
    have = {int(p.stem.split("_")[1]): p for p in named}
    missing = [k for k in folds if k not in have]
    if missing:
        raise CheckpointError(
            f"{folder}: fold {missing[0]} of the run's fold table ({source.name}) has no "
            f"checkpoint (expected fold_{missing[0]:03d}.pt); another fold would silently trade "
            "its window. Re-run training"
        )
    extra = sorted(set(have) - set(folds))
    if extra:
        raise CheckpointError(
            f"{have[extra[0]]} is not a fold of the run in {folder} ({source.name} lists folds "
            f"{folds}): it was left by another run; delete it or re-run"
        )


def check_fold_set(predictors: Sequence[Any], names: Sequence[str]) -> None:
    """Fold models must be distinct, contiguous folds: a duplicate or a hole is an error."""
    numbers: dict[int, str] = {}
    for predictor, name in zip(predictors, names, strict=True):
        fold = (getattr(predictor, "fold", None) or {}).get("fold")
        if fold is None:
            continue
        fold = int(fold)
        if fold in numbers:
            raise CheckpointError(
                f"fold {fold} is given twice ({numbers[fold]} and {name}); pass each fold once"
            )
        numbers[fold] = name
    if len(numbers) > 1:
        holes = sorted(set(range(min(numbers), max(numbers) + 1)) - set(numbers))
        if holes:
            raise CheckpointError(
                f"fold {holes[0]} is missing between fold {min(numbers)} and fold "
                f"{max(numbers)}: the previous fold's model would trade its window. Pass every "
                "fold (a train output folder) or a single one"
            )


def load_predictors(models: Any) -> list[Any]:
    """Predictors from a Predictor, a path (file or train dir), or a list of those."""
    from mtl_bt.predictor import Predictor

    items = models if isinstance(models, list | tuple) else [models]
    out: list[Any] = []
    names: list[str] = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            for p in find_checkpoints(item):
                out.append(Predictor.from_checkpoint(p))
                names.append(str(p))
        else:
            out.append(item)
            names.append(f"model {len(names)}")
    if not out:
        raise UserError("no model given: pass a checkpoint or a train output directory")
    check_fold_set(out, names)
    return out


def check_config_matches(cfg: Any, predictors: Sequence[Any]) -> None:
    """The config's features and tasks must be the model's: clear error before the run
    (``mtl-bt backtest``, ``mtl-bt paper`` and ``MTLStrategy.from_config``)."""
    from mtl_bt.features import FeatureSpec

    first = predictors[0]
    problems = []
    if list(cfg.task_names()) != list(first.task_names):
        problems.append(f"tasks: config {cfg.task_names()}, model {list(first.task_names)}")
    try:
        columns = FeatureSpec.from_config(cfg.features).columns()
    except Exception as exc:  # noqa: BLE001 - reported as a mismatch below
        columns = [f"<invalid features config: {exc}>"]
    if list(columns) != list(first.feature_columns):
        have, want = set(first.feature_columns), set(columns)
        problems.append(
            f"features: model only {sorted(have - want)}, config only {sorted(want - have)}"
            if have != want
            else "features: same columns in a different order"
        )
    if problems:
        raise CheckpointError(
            "the model does not match the config (" + "; ".join(problems) + "). Use the config "
            "the model was trained with (its train dir has config.toml)"
        )


def build_signal(cfg: BacktestConfig) -> Any:
    """The signal rule ``cfg`` names, built with its options: an unknown option is a
    ``ConfigError`` naming ``backtest.signal_options.<key>`` (and the closest option)."""
    import difflib
    import inspect

    from mtl_bt import registry
    from mtl_bt.errors import ConfigError

    factory = registry.get("signal", cfg.signal)
    try:
        return factory(**cfg.signal_options)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        try:
            known = [
                p.name
                for p in inspect.signature(factory).parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            known = []
        unknown = [k for k in cfg.signal_options if known and k not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"backtest.signal_options.{unknown[0]}: signal {cfg.signal!r} has no option "
                f"{unknown[0]!r}{hint} Its options: {', '.join(known)}"
            ) from None
        raise ConfigError(
            f"backtest.signal_options rejected by the signal {cfg.signal!r}: {exc}"
        ) from None


def strategy_params(cfg: BacktestConfig, predictors: Any, rule: Any) -> dict[str, Any]:
    """``MTLStrategy`` parameters for a backtest config (what ``run_backtest`` passes)."""
    return dict(
        predictor=predictors,
        signal=rule,
        mode=cfg.mode,
        rebalance=cfg.rebalance,
        max_weight=cfg.max_weight,
        max_gross_leverage=cfg.max_gross_leverage,
        allow_short=cfg.allow_short,
        commission=cfg.commission,
        slippage=cfg.slippage,
        min_trade_weight=cfg.min_trade_weight,
        calendar=cfg.calendar,
    )


def config_strategy_params(config: Any, models: Any) -> dict[str, Any]:
    """``MTLStrategy.from_config``'s parameters: the backtest section of ``config`` (a path,
    ``Config`` or ``BacktestConfig``) and the models, checked against a whole config's
    features and tasks (a ``BacktestConfig`` alone names neither)."""
    from mtl_bt.backtesting.broker import backtest_config

    if isinstance(config, str | os.PathLike):
        from mtl_bt import config as config_mod

        config = config_mod.load(config)
    cfg = backtest_config(config)
    predictors = load_predictors(models)
    if not isinstance(config, BacktestConfig):
        check_config_matches(config, predictors)
    return strategy_params(cfg, predictors, build_signal(cfg))
