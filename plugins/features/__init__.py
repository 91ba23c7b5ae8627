"""Built-in features (entry point `builtin_features`)."""

from mtl_bt import hookimpl
from mtl_bt.plugins.features.cross import cross_asset, higher_tf, market
from mtl_bt.plugins.features.price import (
    bollinger,
    close_ema,
    close_sma,
    log_return,
    macd,
    momentum,
    rsi,
    volatility,
)
from mtl_bt.plugins.features.range_vol import garman_klass, parkinson
from mtl_bt.plugins.features.volume import volume_ratio, volume_zscore


@hookimpl
def register_features(register):
    register("log_return", log_return, "Log returns over 1/5/10 bars (param windows).")
    register("close_sma", close_sma, "log(close / SMA(close, window=20)).")
    register("close_ema", close_ema, "log(close / EMA(close, span=20)), recursive EMA.")
    register("volatility", volatility, "Rolling std of 1-bar log returns (window=20).")
    register("momentum", momentum, "log(close[t] / close[t-window]), window=20.")
    register("rsi", rsi, "Wilder's RSI in [0, 100] (window=14).")
    register("macd", macd, "(EMA fast=12 - EMA slow=26) / close.")
    register("bollinger", bollinger, "(close - SMA) / (k * std), window=20, k=2.")
    register("volume_ratio", volume_ratio, "log(volume / SMA(volume, window=20)); needs volume.")
    register("volume_zscore", volume_zscore, "Volume z-score over window=20; needs volume.")
    register("parkinson", parkinson, "Parkinson high-low volatility over window=20.")
    register("garman_klass", garman_klass, "Garman-Klass OHLC volatility over window=20.")
    register(
        "cross_asset",
        cross_asset,
        "Another symbol's feature (param of; default log_return) at its last closed bar.",
    )
    register("market", market, "Equal-weight mean over the run's symbols of a feature.")
    register(
        "higher_tf",
        higher_tf,
        "A feature on closed higher-timeframe bars (param timeframe, e.g. '1d'; tz).",
    )
