"""A third-party-style plugin package of probes: what a plugin author writes, honest or not.

Registered in-process by this folder's ``conftest.py`` (as ``tests/testing`` registers its
bad plugins); every probe here once got past mtl-bt's checks (issue 26):

- ``hour_of_day``: honest and time-aware; streamed it once saw years like -12273.
- ``eth_peek``: a one-bar peek on ETH/USDT only (the second symbol of the tiny config).
- ``cached_once`` / ``cached_by_first_bar``: a one-bar peek hidden behind a module-level
  cache filled from the first frame they see (keyed by nothing / by the first bar), so every
  later call (a truncated prefix, a perturbed future) is served from it.
- ``log_range``: a scale-free target, log(high / low) of the bar h ahead (honest).
- ``uses_five`` / ``range_five``: declare h but read bar t+5 (a return; a scale-free range).
- ``raising``: a feature that raises.
- ``stream_raising``, ``stream_wide``, ``batch_raising``, ``batch_scalar``: features whose own
  streaming / batch updaters raise or return the wrong shape.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from mtl_bt import hookimpl
from mtl_bt.errors import ConfigError
from mtl_bt.features import feature
from mtl_bt.models import MTLModel
from mtl_bt.tasks.base import Task


def _col(frame: pd.DataFrame, name: str, values) -> pd.DataFrame:
    return pd.DataFrame({name: np.asarray(values, dtype=np.float64)}, index=frame.index)


@feature(warmup=0, columns=lambda: ["hour_sin", "hour_cos"])
def hour_of_day(frame):
    """The bar's UTC hour on the unit circle: reads the index only."""
    angle = 2 * np.pi * frame.index.hour.to_numpy() / 24.0
    return pd.DataFrame({"hour_sin": np.sin(angle), "hour_cos": np.cos(angle)}, index=frame.index)


def _peek(frame: pd.DataFrame) -> np.ndarray:
    """Next bar's log return (0 on the last bar)."""
    return np.log(frame["close"]).diff().shift(-1).fillna(0.0).to_numpy()


@feature(warmup=1, columns=lambda: ["eth_peek"])
def eth_peek(frame):
    """Yesterday's return honestly, except on ETH/USDT: there, the next bar's."""
    if frame.attrs.get("symbol") == "ETH/USDT":
        return _col(frame, "eth_peek", _peek(frame))
    return _col(frame, "eth_peek", np.log(frame["close"]).diff())


_ONCE: dict[str, pd.Series] = {}
_BY_FIRST_BAR: dict[object, pd.Series] = {}


@feature(warmup=0, columns=lambda: ["cached_once"])
def cached_once(frame):
    """The peek of the first frame it ever sees, served to every later call."""
    if "peek" not in _ONCE:
        _ONCE["peek"] = pd.Series(_peek(frame), index=frame.index)
    return _col(frame, "cached_once", _ONCE["peek"].reindex(frame.index).fillna(0.0))


@feature(warmup=0, columns=lambda: ["cached_by_first_bar"])
def cached_by_first_bar(frame):
    """The peek, cached per first bar: a prefix or a perturbed future reuses the full result."""
    key = (frame.attrs.get("symbol"), frame.index[0])
    if key not in _BY_FIRST_BAR:
        _BY_FIRST_BAR[key] = pd.Series(_peek(frame), index=frame.index)
    cached = _BY_FIRST_BAR[key].reindex(frame.index).fillna(0.0)
    return _col(frame, "cached_by_first_bar", cached)


# -- honest controls: none of these may be flagged ----------------------------------------


@feature(warmup=60, window=400, columns=lambda: ["ewm_adjusted"])
def ewm_adjusted(frame):
    """log(close / its EWM, adjust=True): infinite memory, fading (a long streaming window)."""
    lc = np.log(frame["close"])
    return _col(frame, "ewm_adjusted", lc - lc.ewm(span=10, adjust=True).mean())


@feature(warmup=60, columns=lambda: ["ewm_no_window"])
def ewm_no_window(frame):
    """The same EWM without a streaming window: honest, but it streams over its last 61
    bars only (warm-up + 1), so its streamed rows differ (the kit and `check` say so)."""
    lc = np.log(frame["close"])
    return _col(frame, "ewm_no_window", lc - lc.ewm(span=10, adjust=True).mean())


@feature(warmup=200, columns=lambda: ["std_200"])
def std_200(frame):
    """Rolling 200-bar standard deviation of log returns (NaN for 200 bars)."""
    return _col(frame, "std_200", np.log(frame["close"]).diff().rolling(200).std())


@feature(warmup=30, columns=lambda: ["nan_warmup"])
def nan_warmup(frame):
    """A 30-bar momentum: NaN through its warm-up."""
    c = frame["close"]
    return _col(frame, "nan_warmup", np.log(c / c.shift(30)))


@feature(warmup=20, columns=lambda: ["slow_loop"])
def slow_loop(frame):
    """A 20-bar mean range, written as a plain Python loop over the bars."""
    hl = (frame["high"] / frame["low"]).to_numpy()
    out = np.full(len(hl), np.nan)
    for t in range(20, len(hl)):
        out[t] = float(np.log(hl[t - 19 : t + 1]).mean())
    return _col(frame, "slow_loop", out)


HONEST = ["ewm_adjusted", "std_200", "nan_warmup", "slow_loop"]


@feature(warmup=0, columns=lambda: ["raising"])
def raising(frame):
    raise ZeroDivisionError("probe: division by zero in the plugin")


class _FailsOnThirdBar:
    """A plugin's own streaming updater (``stream=``) that raises on its third bar."""

    window = 1

    def __init__(self) -> None:
        self.seen = 0

    def update(self, bars):
        self.seen += 1
        if self.seen == 3:
            raise ZeroDivisionError("probe: the updater divided by zero")
        return [0.0]


class _TwoValues(_FailsOnThirdBar):
    """A streaming updater that returns two values for its one column."""

    def update(self, bars):
        return [0.0, 1.0]


class _BatchFails:
    """A plugin's own batch updater (``batch=``): raises on its second step."""

    def __init__(self, n: int) -> None:
        self.steps = 0

    def update(self, step):
        self.steps += 1
        if self.steps == 2:
            raise ValueError("probe: the batch updater failed")
        return [np.zeros(len(step.idx))]


class _BatchScalar(_BatchFails):
    """A batch updater whose column is one number, not one value per asset."""

    def update(self, step):
        return [0.0]


def _zeros(frame, name):
    return _col(frame, name, np.zeros(len(frame)))


@feature(warmup=0, columns=lambda: ["stream_raising"], stream=_FailsOnThirdBar)
def stream_raising(frame):
    """Zeros; its streaming updater raises on its third bar."""
    return _zeros(frame, "stream_raising")


@feature(warmup=0, columns=lambda: ["stream_wide"], stream=_TwoValues)
def stream_wide(frame):
    """Zeros; its streaming updater returns two values for one column."""
    return _zeros(frame, "stream_wide")


@feature(warmup=0, columns=lambda: ["batch_raising"], stream=_FailsOnThirdBar, batch=_BatchFails)
def batch_raising(frame):
    """Zeros; its batch updater raises on its second step."""
    return _zeros(frame, "batch_raising")


@feature(warmup=0, columns=lambda: ["batch_scalar"], stream=_FailsOnThirdBar, batch=_BatchScalar)
def batch_scalar(frame):
    """Zeros; its batch updater returns a number where a column of the assets belongs."""
    return _zeros(frame, "batch_scalar")


UPDATERS = ["stream_raising", "stream_wide", "batch_raising", "batch_scalar"]


class LogRange(Task):
    """log(high / low) of the bar ``horizon`` bars ahead: scale-free (any common factor on
    that bar's OHLC cancels), and honest about its horizon."""

    kind = "log_range"

    def build_target(self, frame):
        r = np.log(frame["high"] / frame["low"])
        return r.shift(-self.horizon)

    def loss(self, output, target):
        return (output - target.reshape(output.shape)).pow(2).mean()

    def metrics(self, prediction, target):
        return {"rmse": float(np.sqrt(np.nanmean((prediction - target) ** 2)))}


class UsesFive(LogRange):
    """Declares its horizon but returns log(close[t+5] / close[t]): looks 5 bars ahead."""

    kind = "uses_five"

    def build_target(self, frame):
        lc = np.log(frame["close"])
        return lc.shift(-5) - lc


class RangeFive(LogRange):
    """Declares its horizon but returns log(high/low) of bar t+5: scale-free and too far."""

    kind = "range_five"

    def build_target(self, frame):
        return np.log(frame["high"] / frame["low"]).shift(-5)


class IgnoresDropout(MTLModel):
    """One linear head per task on the input stage; model.dropout silently unused."""

    architecture = "ignores_dropout"

    def __init__(self, in_features, tasks, **common):
        super().__init__(in_features, tasks, **common)
        self.heads = nn.ModuleDict({t.name: nn.Linear(self.stage_features, 1) for t in self.tasks})

    def predict(self, h):
        return {name: self._out(head(h)) for name, head in self.heads.items()}

    def task_modules(self, name):
        return [self.heads[name]]


class RefusesDropout(IgnoresDropout):
    """The same, saying so: model.dropout > 0 is a ConfigError."""

    architecture = "refuses_dropout"

    def __init__(self, in_features, tasks, **common):
        super().__init__(in_features, tasks, **common)
        if self.dropout > 0:
            raise ConfigError(
                f"architecture 'refuses_dropout' has no dropout; set model.dropout = 0 "
                f"(got {self.dropout})"
            )


def reset() -> None:
    """Empty the probes' caches (each test starts as a fresh interpreter would)."""
    _ONCE.clear()
    _BY_FIRST_BAR.clear()


# -- registration, as in a third-party package (its entry point names this module) ------------


@hookimpl
def register_features(register):
    for fn in (
        hour_of_day,
        eth_peek,
        cached_once,
        cached_by_first_bar,
        raising,
        stream_raising,
        stream_wide,
        batch_raising,
        batch_scalar,
        ewm_adjusted,
        ewm_no_window,
        std_200,
        nan_warmup,
        slow_loop,
    ):
        register(fn.__name__, fn, (fn.__doc__ or fn.__name__).split("\n")[0])


@hookimpl
def register_tasks(register):
    register("log_range", LogRange, "log(high/low) of the bar h ahead")
    register("uses_five", UsesFive, "looks 5 bars ahead whatever its horizon")
    register("range_five", RangeFive, "log(high/low) of bar t+5 whatever its horizon")


@hookimpl
def register_architectures(register):
    register("ignores_dropout", IgnoresDropout, "linear heads; ignores model.dropout")
    register("refuses_dropout", RefusesDropout, "linear heads; refuses model.dropout > 0")
