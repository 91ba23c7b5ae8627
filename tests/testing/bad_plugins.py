"""Small throwaway plugins that each break one law (imported by the kit's tests)."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import torch
from torch import nn

from mtl_bt import hookimpl
from mtl_bt.data.source import Source
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.features import feature
from mtl_bt.models import MTLModel
from mtl_bt.signals import SignalRule
from mtl_bt.tasks.base import Task
from mtl_bt.weighting import Weighting


def _col(frame: pd.DataFrame, name: str, values) -> pd.DataFrame:
    return pd.DataFrame({name: np.asarray(values, dtype=np.float64)}, index=frame.index)


@feature(warmup=1, columns=lambda: ["peek"])
def peek(frame):
    """Next bar's log return, last row filled with 0: a one-bar look into the future."""
    r = np.log(frame["close"]).diff().shift(-1).fillna(0.0)
    return _col(frame, "peek", r.where(r.index > r.index[0]))


@feature(warmup=10, columns=lambda: ["centred"])
def centred(frame):
    """A centred rolling mean: uses 5 bars after t."""
    return _col(frame, "centred", frame["close"].rolling(11, center=True).mean() / frame["close"])


@feature(warmup=0, columns=lambda: ["anchored"])
def anchored(frame):
    """Price relative to the first bar of whatever history it is given."""
    return _col(frame, "anchored", np.log(frame["close"] / frame["close"].iloc[0]))


@feature(warmup=5, columns=lambda: ["short_declared"])
def short_declared(frame):
    """A 20-bar mean declared as a 5-bar warm-up."""
    return _col(frame, "short_declared", np.log(frame["close"] / frame["close"].rolling(20).mean()))


@feature(warmup=19, columns=lambda: ["good_sma"])
def good_sma(frame):
    return _col(frame, "good_sma", np.log(frame["close"] / frame["close"].rolling(20).mean()))


class PastReturn(Task):
    """Misaligned: the 'target' is the last h bars' return (no future in it)."""

    kind = "past_return"

    def build_target(self, frame):
        lc = np.log(frame["close"])
        out = lc - lc.shift(self.horizon)
        out.iloc[len(out) - self.horizon :] = np.nan
        return out

    def loss(self, output, target):
        return (output - target.reshape(output.shape)).pow(2).mean()

    def metrics(self, prediction, target):
        return {"rmse": float(np.sqrt(np.nanmean((prediction - target) ** 2)))}


class TooFar(PastReturn):
    """Looks h+3 bars ahead while declaring h."""

    kind = "too_far"

    def build_target(self, frame):
        lc = np.log(frame["close"].to_numpy())
        out = np.full(len(lc), np.nan)
        k = self.horizon + 3
        out[: len(lc) - k] = lc[k:] - lc[:-k]
        return pd.Series(out, index=frame.index)


class GoodReturn(PastReturn):
    kind = "good_return"

    def build_target(self, frame):
        lc = np.log(frame["close"].to_numpy())
        out = np.full(len(lc), np.nan)
        out[: len(lc) - self.horizon] = lc[self.horizon :] - lc[: -self.horizon]
        return pd.Series(out, index=frame.index)


class ForgetsHead(MTLModel):
    """Builds a head for every task but the last."""

    architecture = "forgets_head"

    def __init__(self, in_features, tasks, **options):
        super().__init__(in_features, tasks, **options)
        self.body = nn.Linear(self.stage_features, 8)
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in self.task_names[:-1]})

    def predict(self, h):
        z = torch.relu(self.body(h))
        return {t: self._out(head(z)) for t, head in self.heads.items()}

    def task_modules(self, name):
        return [self.heads[name]] if name in self.heads else []


class TwoTower(MTLModel):
    """Heads kept in a ModuleDict named ``towers`` (not ``heads``): the docs' example."""

    architecture = "two_tower"

    def __init__(self, in_features, tasks, **options):
        super().__init__(in_features, tasks, **options)
        self.body = nn.Linear(self.stage_features, 8)
        self.drop = nn.Dropout(self.dropout)
        self.towers = nn.ModuleDict(
            {t: nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1)) for t in self.task_names}
        )

    def predict(self, h):
        z = self.drop(torch.relu(self.body(h)))
        return {t: self._out(tower(z)) for t, tower in self.towers.items()}

    def task_modules(self, name):
        return [self.towers[name]]


class NaNWeighting(Weighting):
    """Every task loss is finite, the combined loss is NaN."""

    def combine(self, losses):
        return sum(losses.values()) * float("nan")


class Drifting(Weighting):
    """reset() forgets to restore its state."""

    def __init__(self, task_names, **options):
        super().__init__(task_names, **options)
        self.steps = 0

    def weights(self):
        return {n: 1.0 + self.steps for n in self.task_names}

    def combine(self, losses):
        self.steps += 1
        return super().combine(losses)


class SumsToFive(SignalRule):
    """Weights summing to 5: breaks max_weight and max_gross_leverage."""

    def weights(self, predictions, **context):
        n = len(next(iter(predictions.values())))
        return np.full(n, 5.0 / n)


class AlwaysShort(SignalRule):
    def weights(self, predictions, **context):
        n = len(next(iter(predictions.values())))
        return np.full(n, -0.1)


class EpochMixup(Source):
    """Millisecond timestamps read as microseconds: bars in January 1970, 3 s apart."""

    def fetch(self, symbols, *, timeframe=None, since=None, until=None, **options):
        out = {}
        for symbol in symbols:
            frame = garch_bars(50, freq="1h")
            ms = frame.index.asi8 // 1_000_000  # real epoch milliseconds ...
            frame.index = pd.DatetimeIndex(pd.to_datetime(ms, unit="us", utc=True), name="datetime")
            frame.attrs.update(symbol=symbol, timeframe="1h", source="epoch_mixup")
            out[symbol] = frame  # ... read as microseconds
        return out


def plugin() -> types.ModuleType:
    """A module registering every item above."""
    module = types.ModuleType("bad_plugins_for_tests")

    def register_features(register):
        for fn in (peek, centred, anchored, short_declared, good_sma):
            register(fn.__name__, fn, fn.__doc__ or fn.__name__)

    def register_tasks(register):
        register("past_return", PastReturn, "misaligned")
        register("too_far", TooFar, "looks too far")
        register("good_return", GoodReturn, "fine")

    def register_architectures(register):
        register("forgets_head", ForgetsHead, "forgets a head")
        register("two_tower", TwoTower, "towers")

    def register_weightings(register):
        register("nan_weighting", NaNWeighting, "NaN total")
        register("drifting", Drifting, "reset forgets")

    def register_signals(register):
        register("sums_to_five", SumsToFive, "too big")
        register("always_short", AlwaysShort, "short")

    def register_sources(register):
        register("epoch_mixup", EpochMixup, "1970")

    for fn in (
        register_features,
        register_tasks,
        register_architectures,
        register_weightings,
        register_signals,
        register_sources,
    ):
        setattr(module, fn.__name__, hookimpl(fn))
    return module
