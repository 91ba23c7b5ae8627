"""docs/paper.md's Backtrader snippet runs as written (against the loopback Bybit server)."""

from __future__ import annotations

import re
from pathlib import Path

from data_testkit import ExchangeClock
from paper_testkit import HOUR, START

DOC = Path(__file__).resolve().parents[2] / "docs" / "paper.md"


def test_paper_doc_snippet_runs(exchange, capsys):
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(code) == 1
    clock = ExchangeClock(START, speed=3600 / 0.2)
    clock.pause()
    url, _ = exchange(clock)
    clock.resume()
    exec(compile(code[0], str(DOC), "exec"), {"API_URL": url, "UNTIL": START + 3 * HOUR})
    out = capsys.readouterr().out
    assert "BTC/USDT DELAYED" in out and "BTC/USDT LIVE" in out
    assert re.search(r"2024-03-01 1\d:00:00 \d+\.\d+", out)
    # every live bar line is a closed bar: the last one ends by UNTIL
    stamps = re.findall(r"2024-03-01 (\d\d):00:00", out)
    assert max(int(h) for h in stamps) <= (START + 2 * HOUR).hour
