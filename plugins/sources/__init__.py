"""Built-in sources (entry point `builtin_sources`)."""

from mtl_bt import hookimpl
from mtl_bt.plugins.sources.csv_file import CsvSource
from mtl_bt.plugins.sources.sample import SampleSource
from mtl_bt.plugins.sources.yfinance_source import YFinanceSource


def make_ccxt_source(**kwargs):
    """Build a ``CcxtSource``; importing ccxt takes ~0.5 s, so only when used."""
    from mtl_bt.plugins.sources.ccxt_source import CcxtSource

    return CcxtSource(**kwargs)


@hookimpl
def register_sources(register):
    register(
        "sample",
        SampleSource,
        "Real bundled bars: 5 US stocks (1d, 2000-2013), 5 crypto pairs (1h, 2024).",
    )
    register("csv", CsvSource, "A local CSV/Parquet bar file, or a folder of <symbol>.csv files.")
    register("yfinance", YFinanceSource, "Yahoo Finance via yfinance (adjusted OHLC), cached.")
    register(
        "ccxt",
        make_ccxt_source,
        "Any ccxt exchange (Bybit spot by default), paged, retried, cached.",
    )
