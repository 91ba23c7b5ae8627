"""Cross-frame built-ins: another symbol's feature, the market's mean, a higher timeframe's.

Each wraps an ordinary single-frame feature (the *inner* feature, default ``log_return``)
and declares the frame it runs on (``mtl_bt.features.frames.Reads``); the engine puts the
rows on the target's bars causally (last closed bar; closed higher-timeframe periods only).
Several instances are named ``plugin@label`` in ``features.names`` (``"cross_asset@eth"``),
each with its own ``features.params`` entry; columns are prefixed so instances never clash.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.errors import ConfigError
from mtl_bt.features.base import feature
from mtl_bt.features.frames import Reads, period_us, safe_name
from mtl_bt.features.spec import FeatureSpec, compute
from mtl_bt.features.streaming import BarBuffer, FeatureStream


def inner_spec(who: str, name: Any, params: Any) -> FeatureSpec:
    """The wrapped single-frame feature, validated (a ConfigError names ``who``'s key)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"features.params.{who}.feature = {name!r}: expected a feature name")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"features.params.{who}.params = {params!r}: expected a table")
    spec = FeatureSpec(names=[name], params={name: dict(params)} if params else {})
    if spec.reads():
        raise ConfigError(
            f"features.params.{who}.feature = {name!r} reads other frames itself; wrap a "
            "single-frame feature"
        )
    return spec


def _symbol(who: str, of: Any, required: bool) -> str:
    if of is None or of == "":
        if required:
            raise ConfigError(
                f"features.params.{who}.of is required: the symbol to read, one of data.symbols "
                "(e.g. of = 'BTC/USDT')"
            )
        return ""
    if not isinstance(of, str):
        raise ConfigError(f"features.params.{who}.of = {of!r}: expected a symbol string")
    return of


def _prefixed(prefix: str, spec: FeatureSpec) -> list[str]:
    return [f"{prefix}_{c}" for c in spec.columns()]


class _InnerStream:
    """The inner feature's ``FeatureStream`` over the source's bars (keeps its own history)."""

    window = 0

    def __init__(self, spec: FeatureSpec) -> None:
        self.stream = FeatureStream(spec)

    def update(self, bars: BarBuffer) -> np.ndarray:
        return self.stream.push(bars.bar)


def _values(frame: pd.DataFrame, spec: FeatureSpec, prefix: str) -> pd.DataFrame:
    out = compute(frame, spec)
    out.columns = _prefixed(prefix, spec)
    return out


# -- cross_asset --------------------------------------------------------------------


def _x_prefix(of: str, prefix: str | None) -> str:
    return prefix or f"x_{safe_name(of)}"


def _x_spec(of, feature, params):  # noqa: ANN001, ANN202
    _symbol("cross_asset", of, required=True)
    return inner_spec("cross_asset", feature, params)


@feature(
    warmup=lambda of="", feature="log_return", params=None, staleness=False, prefix=None: _x_spec(
        of, feature, params
    ).warmup(),
    columns=lambda of="", feature="log_return", params=None, staleness=False, prefix=None: (
        _prefixed(_x_prefix(of, prefix), _x_spec(of, feature, params))
    ),
    reads=lambda of="", feature="log_return", params=None, staleness=False, prefix=None: Reads(
        symbol=_symbol("cross_asset", of, required=True),
        staleness=f"{_x_prefix(of, prefix)}_stale" if staleness else None,
    ),
    stream=lambda of="", feature="log_return", params=None, staleness=False, prefix=None: (
        _InnerStream(_x_spec(of, feature, params))
    ),
)
def cross_asset(
    frame: pd.DataFrame,
    of: str = "",
    feature: str = "log_return",
    params: dict[str, Any] | None = None,
    staleness: bool = False,
    prefix: str | None = None,
) -> pd.DataFrame:
    """Symbol ``of``'s ``feature`` at its last closed bar (columns ``x_<of>_<column>``)."""
    return _values(frame, _x_spec(of, feature, params), _x_prefix(of, prefix))


# -- market ------------------------------------------------------------------------


@feature(
    warmup=lambda feature="log_return", params=None, prefix="mkt": inner_spec(
        "market", feature, params
    ).warmup(),
    columns=lambda feature="log_return", params=None, prefix="mkt": _prefixed(
        prefix, inner_spec("market", feature, params)
    ),
    reads=Reads(all_symbols=True),
    stream=lambda feature="log_return", params=None, prefix="mkt": _InnerStream(
        inner_spec("market", feature, params)
    ),
)
def market(
    frame: pd.DataFrame,
    feature: str = "log_return",
    params: dict[str, Any] | None = None,
    prefix: str = "mkt",
) -> pd.DataFrame:
    """The equal-weight mean over every symbol of the run of ``feature`` at each symbol's
    last closed bar (columns ``mkt_<column>``)."""
    return _values(frame, inner_spec("market", feature, params), prefix)


# -- higher_tf -----------------------------------------------------------------------


def _tf_prefix(timeframe: str, of: str, prefix: str | None) -> str:
    if prefix:
        return prefix
    return f"tf{timeframe}" + (f"_{safe_name(of)}" if of else "")


def _tf_spec(timeframe, tz, feature, of, params):  # noqa: ANN001, ANN202
    if not isinstance(timeframe, str):
        raise ConfigError(
            f"features.params.higher_tf.timeframe = {timeframe!r}: expected e.g. '1d'"
        )
    period_us(timeframe, "higher_tf")
    _symbol("higher_tf", of, required=False)
    return inner_spec("higher_tf", feature, params)


@feature(
    warmup=lambda timeframe="1d", tz="UTC", feature="log_return", params=None, of="", staleness=False, prefix=None: (  # noqa: E501
        _tf_spec(timeframe, tz, feature, of, params).warmup()
    ),
    columns=lambda timeframe="1d", tz="UTC", feature="log_return", params=None, of="", staleness=False, prefix=None: (  # noqa: E501
        _prefixed(_tf_prefix(timeframe, of, prefix), _tf_spec(timeframe, tz, feature, of, params))
    ),
    reads=lambda timeframe="1d", tz="UTC", feature="log_return", params=None, of="", staleness=False, prefix=None: (
        Reads(  # noqa: E501
            symbol=_symbol("higher_tf", of, required=False) or None,
            timeframe=timeframe,
            tz=tz,
            staleness=f"{_tf_prefix(timeframe, of, prefix)}_stale" if staleness else None,
        )
    ),
    stream=lambda timeframe="1d", tz="UTC", feature="log_return", params=None, of="", staleness=False, prefix=None: (  # noqa: E501
        _InnerStream(_tf_spec(timeframe, tz, feature, of, params))
    ),
)
def higher_tf(
    frame: pd.DataFrame,
    timeframe: str = "1d",
    tz: str = "UTC",
    feature: str = "log_return",
    params: dict[str, Any] | None = None,
    of: str = "",
    staleness: bool = False,
    prefix: str | None = None,
) -> pd.DataFrame:
    """``feature`` on the closed ``timeframe`` bars (of the symbol itself, or of ``of``);
    ``frame`` here is those aggregated bars (columns ``tf<timeframe>_<column>``)."""
    return _values(
        frame, _tf_spec(timeframe, tz, feature, of, params), _tf_prefix(timeframe, of, prefix)
    )
