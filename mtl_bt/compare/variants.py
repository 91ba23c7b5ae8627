"""The variants of a comparison: MTL (architecture x weighting) and their single-task baselines.

Every MTL variant is paired with the single-task (return-only) model of the *same*
architecture and hidden sizes, trained on the same data, folds and seeds, so the paired Sharpe
difference isolates "more tasks" from "a different network". Equal-weight buy-and-hold needs no
training and is computed once by the driver.

The single-task model keeps the one return horizon the signal rule trades (``traded_return``),
so the backtest finds its head; its config sets ``walk_forward.purge_bars`` to the base
config's largest task horizon, so its walk-forward splits are identical to the MTL variants'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtl_bt import registry
from mtl_bt.config import Config
from mtl_bt.errors import ConfigError, UserError
from mtl_bt.signals.base import pick_horizon

SINGLE_TASK = "single_task"
BUY_AND_HOLD = "buy_and_hold"


@dataclass(frozen=True)
class Variant:
    """One trained configuration; ``name`` is also its folder name under ``runs/``."""

    name: str
    kind: Literal["mtl", "single_task"]
    architecture: str
    weighting: str

    def config(self, base: Config, seed: int) -> Config:
        """The variant's full config for one seed (pure: the base config is not touched)."""
        from mtl_bt.training import single_task

        model = base.model.model_copy(update={"architecture": self.architecture})
        cfg = base.model_copy(update={"model": model}, deep=True)
        if self.kind == SINGLE_TASK:
            cfg = single_task(cfg, traded_return(base))
            if cfg.walk_forward.purge_bars is None:  # the MTL folds: purged by its horizon
                wf = cfg.walk_forward.model_copy(update={"purge_bars": base.max_horizon()})
                cfg = cfg.model_copy(update={"walk_forward": wf})
        else:
            weighting = base.weighting.model_copy(update={"name": self.weighting})
            if self.weighting != base.weighting.name:
                weighting = weighting.model_copy(update={"options": {}})
            cfg = cfg.model_copy(update={"weighting": weighting})
        training = cfg.training.model_copy(update={"seed": seed})
        return cfg.model_copy(update={"training": training})

    @property
    def baseline(self) -> str:
        """Name of the single-task variant this one is compared with."""
        return single_task_name(self.architecture)


def mtl_name(architecture: str, weighting: str) -> str:
    return f"{architecture}+{weighting}"


def single_task_name(architecture: str) -> str:
    return f"{SINGLE_TASK}[{architecture}]"


def traded_return(base: Config) -> str:
    """The return task the signal rule trades with ``base``'s tasks, e.g. ``"return@24"``.

    Asks the rule itself (``heads(task_names)["return"]``); a rule without ``heads`` trades
    its ``horizon`` option, else the smallest return horizon (as the built-in rules do).
    """
    bt = base.backtest
    names = base.task_names()
    try:
        rule = registry.create("signal", bt.signal, **bt.signal_options)
    except TypeError as exc:
        raise ConfigError(
            f"[backtest] signal_options rejected by the signal {bt.signal!r}: {exc}"
        ) from None
    heads = getattr(rule, "heads", None)
    try:
        if callable(heads):
            task = heads(names).get("return")
        else:  # as the built-in rules choose: the `horizon` option, else the smallest
            horizon = pick_horizon(
                dict.fromkeys(names), bt.signal_options.get("horizon"), bt.signal
            )
            task = f"return@{horizon}"
    except UserError as exc:
        raise ConfigError(f"the signal rule cannot trade the configured tasks: {exc}") from None
    if task is None or task not in names:
        raise ConfigError(
            f"signal {bt.signal!r} trades no configured return task (it chose {task!r}); "
            f"tasks are {names}"
        )
    return str(task)


def split_names(text: str | None) -> list[str]:
    """``"a, b,a"`` -> ``["a", "b"]`` (order kept, duplicates dropped)."""
    if not text:
        return []
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def build_variants(
    base: Config, architectures: list[str] | None = None, weightings: list[str] | None = None
) -> list[Variant]:
    """MTL variants (architecture x weighting) followed by one single-task model per architecture.

    Unknown plugin names fail here, before any job starts.
    """
    archs = architectures or [base.model.architecture]
    weights = weightings or [base.weighting.name]
    for name in archs:
        registry.get("architecture", name)
    for name in weights:
        registry.get("weighting", name)
    if not any(t.name == "return" for t in base.tasks):
        raise ConfigError(
            "compare needs a 'return' task: the single-task baseline is the return-only model"
        )
    if len(base.task_names()) < 2:
        raise ConfigError(
            f"compare needs at least two tasks for the MTL variants; configured: {base.task_names()}"
        )
    traded_return(base)  # the signal's return head exists (the single-task model keeps it)
    variants = [Variant(mtl_name(a, w), "mtl", a, w) for a in archs for w in weights]
    variants += [Variant(single_task_name(a), SINGLE_TASK, a, "equal") for a in archs]
    return variants
