"""The variants of a comparison: MTL (architecture x weighting) and their single-task baselines.

Trained variants:

- ``<arch>+<weighting>`` (``mtl``): one model, every configured task.
- ``single_task[<arch>]`` (``single_task``): the return-only model at the horizon the signal
  trades (``traded_return``); also the ensemble's member for that task.
- ``single_task[<arch>]:<task>`` (``single_task``): one model per other configured task.

Every single-task model has the *same* architecture, widths, data, folds (its config sets
``walk_forward.purge_bars`` to the base config's largest horizon), seeds and epochs as the MTL
models; with one task, early stopping watches that task's own validation loss.

Backtest-only variants (no training; they trade the trained variants' fold models):

- ``st_ensemble[<arch>]`` (``ensemble``): the single-task models of every task joined into
  one model (``EnsemblePredictor``), traded by the *same* rule with the *same* heads as the
  MTL model, so ΔSharpe(MTL − ensemble) isolates joint training.
- ``<arch>+<weighting>:no_aux`` (``no_aux``): the MTL model traded with the rule's auxiliary
  inputs off (``use_direction = use_volatility = false``; rules that have them), against the
  return-only model: the effect of a better return head alone.
- ``linear``, ``lightgbm`` (``simple``): strong simple baselines
  (``mtl_bt.compare.baselines``): ridge / logistic and LightGBM, one per task, fitted per
  fold on the same rows, features, scaler, folds and purge as the MTL models (deterministic
  fits, so run once, at the first seed), and traded by the *same* rule reading the *same* heads. They borrow the fold jobs of
  the first MTL variant for its fold dates and feature pipeline (not its weights).

Equal-weight buy-and-hold needs no training and is computed once by the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtl_bt import registry
from mtl_bt.config import Config
from mtl_bt.errors import ConfigError, UserError
from mtl_bt.signals.base import pick_horizon

SINGLE_TASK = "single_task"
ENSEMBLE = "ensemble"
NO_AUX = "no_aux"
SIMPLE = "simple"
BUY_AND_HOLD = "buy_and_hold"
#: signal options that switch a rule's auxiliary inputs off (the ``no_aux`` variants)
AUX_OFF = {"use_direction": False, "use_volatility": False}


@dataclass(frozen=True)
class Variant:
    """One configuration; ``name`` is also its folder name under ``runs/``.

    ``task``: the one task of a single-task model. ``source``: the MTL variant a ``no_aux``
    variant trades (``simple``: whose fold jobs it borrows). ``members``: the single-task variants (task -> name) of an ensemble.
    """

    name: str
    kind: Literal["mtl", "single_task", "ensemble", "no_aux", "simple"]
    architecture: str
    weighting: str
    task: str | None = None
    source: str | None = None
    members: tuple[tuple[str, str], ...] = ()

    @property
    def trained(self) -> bool:
        return self.kind in ("mtl", SINGLE_TASK)

    @property
    def seedless(self) -> bool:
        """True when the seed cannot change the result (the simple baselines: ridge /
        logistic and LightGBM without bagging are deterministic fits on the same rows), so
        it runs once, at the first seed: copies would add nothing but time and would be
        counted as extra trials by the DSR."""
        return self.kind == SIMPLE

    @property
    def traded_alone(self) -> bool:
        """False for a single-task model of another task than the traded return: it has
        no return head, so it is only evaluated and traded inside the ensemble."""
        return not (self.kind == SINGLE_TASK and self.task is not None and ":" in self.name)

    def config(self, base: Config, seed: int) -> Config:
        """The variant's full config for one seed (pure: the base config is not touched)."""
        from mtl_bt.training import single_task

        model = base.model.model_copy(update={"architecture": self.architecture})
        cfg = base.model_copy(update={"model": model}, deep=True)
        if self.kind == SINGLE_TASK:
            cfg = single_task(cfg, self.task or traded_return(base))
            if cfg.walk_forward.purge_bars is None:  # the MTL folds: purged by its horizon
                wf = cfg.walk_forward.model_copy(update={"purge_bars": base.max_horizon()})
                cfg = cfg.model_copy(update={"walk_forward": wf})
        elif self.kind == ENSEMBLE:
            weighting = base.weighting.model_copy(update={"name": "equal", "options": {}})
            cfg = cfg.model_copy(update={"weighting": weighting})
        else:
            weighting = base.weighting.model_copy(update={"name": self.weighting})
            if self.weighting != base.weighting.name:
                weighting = weighting.model_copy(update={"options": {}})
            cfg = cfg.model_copy(update={"weighting": weighting})
            if self.kind == NO_AUX:
                options = {**cfg.backtest.signal_options, **AUX_OFF}
                bt = cfg.backtest.model_copy(update={"signal_options": options})
                cfg = cfg.model_copy(update={"backtest": bt})
        training = cfg.training.model_copy(update={"seed": seed})
        return cfg.model_copy(update={"training": training})

    @property
    def baseline(self) -> str:
        """Name of the return-only single-task variant of the same architecture."""
        return single_task_name(self.architecture)

    @property
    def ensemble(self) -> str:
        """Name of the single-task ensemble of the same architecture."""
        return ensemble_name(self.architecture)


def mtl_name(architecture: str, weighting: str) -> str:
    return f"{architecture}+{weighting}"


def single_task_name(architecture: str, task: str | None = None) -> str:
    """``single_task[arch]`` (the return-only model) or ``single_task[arch]:<task>``."""
    base = f"{SINGLE_TASK}[{architecture}]"
    return base if task is None else f"{base}:{task}"


def ensemble_name(architecture: str) -> str:
    return f"st_ensemble[{architecture}]"


def has_aux_switch(base: Config) -> bool:
    """True when the configured rule accepts ``use_direction`` / ``use_volatility``."""
    bt = base.backtest
    try:
        registry.create("signal", bt.signal, **{**bt.signal_options, **AUX_OFF})
    except (TypeError, UserError):
        return False
    return True


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
    base: Config,
    architectures: list[str] | None = None,
    weightings: list[str] | None = None,
    baselines: list[str] | None = None,
) -> list[Variant]:
    """MTL variants (architecture x weighting), then per architecture the single-task models
    (the return-only model first, then one per other task), the single-task ensemble, the
    MTL variants with the rule's auxiliary inputs off, and the simple ``baselines``
    (``linear``, ``lightgbm``; none by default), which borrow the fold jobs of the demo
    variant (``demo_variant``).

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
    traded = traded_return(base)  # the rule's return head exists (the return-only model keeps it)
    variants = [Variant(mtl_name(a, w), "mtl", a, w) for a in archs for w in weights]
    others = [t for t in base.task_names() if t != traded]
    for a in archs:
        variants.append(Variant(single_task_name(a), SINGLE_TASK, a, "equal", task=traded))
        variants += [
            Variant(single_task_name(a, t), SINGLE_TASK, a, "equal", task=t) for t in others
        ]
    for a in archs:
        members = tuple(
            (t, single_task_name(a) if t == traded else single_task_name(a, t))
            for t in base.task_names()
        )
        variants.append(Variant(ensemble_name(a), ENSEMBLE, a, "equal", members=members))
    if has_aux_switch(base):
        variants += [
            Variant(f"{mtl_name(a, w)}:{NO_AUX}", NO_AUX, a, w, source=mtl_name(a, w))
            for a in archs
            for w in weights
        ]
    demo = demo_variant(base, variants)
    variants += [
        Variant(name, SIMPLE, demo.architecture, demo.weighting, source=demo.name)
        for name in baselines or []
    ]
    return variants


def demo_variant(base: Config, variants: list[Variant]) -> Variant:
    """The MTL variant of the base config's own architecture and weighting (what ``mtl-bt
    run`` trains), else the first MTL variant: the simple baselines borrow its fold jobs and
    the placebo study trades it."""
    mtl = [v for v in variants if v.kind == "mtl"]
    own = mtl_name(base.model.architecture, base.weighting.name)
    return next((v for v in mtl if v.name == own), mtl[0])
