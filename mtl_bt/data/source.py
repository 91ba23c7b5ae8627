"""The source interface: every data plugin returns canonical frames."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

#: canonical OHLCV columns, in order, all float64
COLUMNS = ("open", "high", "low", "close", "volume")
#: name of the tz-aware UTC DatetimeIndex
INDEX_NAME = "datetime"


class Source:
    """Fetches bars for symbols.

    ``fetch`` returns ``{symbol: frame}``; each frame is canonical (UTC
    ``DatetimeIndex`` named ``datetime``, float ``open, high, low, close,
    volume``, sorted, unique) with ``frame.attrs`` holding ``symbol``,
    ``timeframe`` and ``source``.
    """

    name: str = ""

    def fetch(
        self,
        symbols: list[str],
        *,
        timeframe: str | None = None,
        since: datetime | pd.Timestamp | None = None,
        until: datetime | pd.Timestamp | None = None,
        **options: Any,
    ) -> dict[str, pd.DataFrame]:
        raise NotImplementedError
