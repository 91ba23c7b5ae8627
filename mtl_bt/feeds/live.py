"""Live bars for Backtrader: one polling thread per market, one feed per symbol.

A :class:`LiveMarket` owns the connection to a :class:`BarSource` (ccxt, yfinance)
and a background thread that, every ``poll_seconds``:

1. reads the exchange's own clock (``source.now()``),
2. asks for each symbol's bars after the newest one it accepted,
3. keeps only **closed** bars (``start + timeframe <= exchange now``: the still
   forming candle is never delivered), drops out-of-order, repeated or bad bars with
   a warning naming the symbol and the time,
4. releases bar times in order, each once every symbol has that bar, has a newer
   one (it had no bar then), or a timeout (one poll interval past the bar's end)
   has passed: a portfolio decision sees every asset that was due.

Every bar released in one poll except the newest is *back-fill* (the warm-up
history at start, the gap after an outage): its ``live`` line is 0 and the feed
reports ``DELAYED``; the newest is ``live`` 1 (status ``LIVE``). A strategy decides
on live bars only. A poll that fails after the source's bounded retries reports
``DISCONNECTED`` and the thread keeps trying; the gap is back-filled on reconnect.

:class:`LiveFeed` is a plain Backtrader feed (``islive()`` True, ``_load`` returns
None while waiting and False at the end), usable with any strategy.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from mtl_bt.data.timeframe import parse_timeframe
from mtl_bt.errors import DataError

log = logging.getLogger("mtl_bt.feeds")

_OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Bar:
    """One closed bar as released to a feed."""

    time: pd.Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float
    live: bool


class SourceDown(Exception):
    """The source could not be reached after its own bounded retries; ``rate_limited``: it
    answered, but refused for too many requests (HTTP 429, Bybit 10006)."""

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited


class GaveUp(DataError):
    """The source stayed unreachable longer than ``give_up_seconds`` on a bounded run."""


class BarSource:
    """What a live market polls. Subclasses: ccxt, yfinance."""

    name = "source"

    def now(self) -> pd.Timestamp:
        """The exchange's current time (UTC)."""
        raise NotImplementedError

    def history(
        self, symbols: list[str], since: pd.Timestamp, until: pd.Timestamp
    ) -> dict[str, pd.DataFrame]:
        """Closed bars in ``[since, until)`` per symbol (warm-up; cache first)."""
        raise NotImplementedError

    def recent(self, symbol: str, since: pd.Timestamp) -> list[list[float]]:
        """Raw rows ``[ms, o, h, l, c, v]`` from ``since`` on (may hold the forming bar)."""
        raise NotImplementedError


def bad_value(row: list[float]) -> str | None:
    """Why a raw OHLCV row cannot be a real bar (None: it can)."""
    try:
        o, h, lo, c, v = (float(x) for x in row[1:6])
    except (TypeError, ValueError):
        return f"has non-numeric values {row[1:6]}"
    if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
        return f"has non-finite values {[o, h, lo, c, v]}"
    if min(o, h, lo, c) <= 0:
        return f"has a price <= 0 ({[o, h, lo, c]})"
    if v < 0:
        return f"has a negative volume {v}"
    if h < max(o, c, lo) or lo > min(o, c, h):
        return f"has a high/low inconsistent with open/close ({[o, h, lo, c]})"
    return None


class LiveMarket:
    """Polls ``source`` for ``symbols`` and releases closed bars to their feeds (see module).

    ``warmup_bars``: bars of history delivered before the first live bar.
    ``resume_after``: bars at or before this time are history even if newest (resume).
    ``until``: no bar ending after it is released; then the feeds end.
    ``give_up_seconds``: a bounded run (``until``, or the caller's bar count) ends with
    :class:`GaveUp` once the source has been unreachable that long without a break
    (``None``: keep trying for ever). Failed polls are retried with exponential backoff
    from ``retry_seconds`` up to ``max_retry_seconds``; identical errors are logged once,
    with their count when they stop or change.
    """

    def __init__(
        self,
        source: BarSource,
        symbols: list[str],
        timeframe: str,
        *,
        poll_seconds: float = 10.0,
        warmup_bars: int = 500,
        timeout_seconds: float | None = None,
        until: pd.Timestamp | None = None,
        resume_after: pd.Timestamp | None = None,
        retry_seconds: float | None = None,
        max_retry_seconds: float = 60.0,
        give_up_seconds: float | None = 600.0,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if not symbols:
            raise DataError("a live market needs at least one symbol")
        if len(set(symbols)) != len(symbols):
            raise DataError(f"symbols listed twice: {symbols}")
        self.source = source
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.step = parse_timeframe(timeframe)
        self.poll_seconds = float(poll_seconds)
        self.warmup_bars = int(warmup_bars)
        #: how long past a bar's end the others wait for a late symbol (exchange time)
        self.timeout = pd.Timedelta(
            seconds=self.poll_seconds if timeout_seconds is None else timeout_seconds
        )
        self.until = until
        self.resume_after = resume_after
        #: first bar of the history (set at warm-up; give it to replay a run's history)
        self.history_start: pd.Timestamp | None = None
        self.retry_seconds = self.poll_seconds if retry_seconds is None else retry_seconds
        self.max_retry_seconds = max(float(max_retry_seconds), self.retry_seconds)
        self.give_up = give_up_seconds
        #: the current outage: (first failure, monotonic), failed polls, last error text
        self._down_since: float | None = None
        self._rate_limited = False
        self._failures = 0
        self._last_error: str | None = None
        self._repeats = 0
        self._wall: float | None = None
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._cond = threading.Condition()
        self._queues: dict[str, collections.deque[Bar]] = {s: collections.deque() for s in symbols}
        self._pending: dict[str, dict[pd.Timestamp, Bar]] = {s: {} for s in symbols}
        self._seen: dict[str, pd.Timestamp | None] = dict.fromkeys(symbols)
        self._values: dict[str, dict[pd.Timestamp, Bar]] = {s: {} for s in symbols}
        #: newest bar time released: a bar at or before it comes too late for its decision
        self._released: pd.Timestamp | None = None
        self._now: pd.Timestamp | None = None
        self._feeds: dict[str, LiveFeed] = {}
        self._thread: threading.Thread | None = None
        self._started = 0
        self._finished = False
        self._warm = False
        self.error: BaseException | None = None
        #: (symbol, time, reason) of every bar dropped
        self.dropped: list[tuple[str, pd.Timestamp, str]] = []
        #: every status change as (symbol, status name)
        self.statuses: list[tuple[str, str]] = []
        #: bar times released as live / as back-fill
        self.live_times: list[pd.Timestamp] = []
        self.backfill_times: list[pd.Timestamp] = []
        self.polls = 0

    # -- feeds ----------------------------------------------------------------
    def feed(self, symbol: str, **kwargs: Any) -> LiveFeed:
        """The Backtrader feed of ``symbol`` (named after it)."""
        if symbol not in self._queues:
            raise DataError(f"{symbol!r} is not one of this market's symbols {self.symbols}")
        from mtl_bt.backtesting.calendar import bt_timeframe

        if "timeframe" not in kwargs:
            kwargs["timeframe"], kwargs["compression"] = bt_timeframe(self.step.total_seconds())
        feed = LiveFeed(market=self, symbol=symbol, name=symbol, **kwargs)
        self._feeds[symbol] = feed
        return feed

    def feeds(self, **kwargs: Any) -> list[LiveFeed]:
        return [self.feed(s, **kwargs) for s in self.symbols]

    def _feed_started(self) -> None:
        with self._cond:
            self._started += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mtl-bt-live-market", daemon=True
                )
                self._thread.start()

    def _feed_stopped(self) -> None:
        with self._cond:
            self._started -= 1
            last = self._started <= 0
        if last:
            self.close()

    def close(self) -> None:
        """Stop polling; feeds end once their queues are empty."""
        self._stop.set()
        with self._cond:
            self._finished = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def next_bar(self, symbol: str, timeout: float) -> Bar | None | bool:
        """The symbol's next released bar; None if none arrived within ``timeout``
        seconds; False once the market has finished and the queue is empty."""
        with self._cond:
            queue = self._queues[symbol]
            if not queue and not self._finished and timeout > 0:
                self._cond.wait(timeout)
            if queue:
                return queue.popleft()
            if self.error is not None:
                raise self.error
            return False if self._finished else None

    def has_bars(self, symbol: str) -> bool:
        return bool(self._queues[symbol])

    # -- the polling thread -------------------------------------------------------
    def _status(self, status: int, symbols: list[str] | None = None) -> None:
        changed = []
        name = bt.feed.DataBase._NOTIFNAMES[status]
        if status == bt.feed.DataBase.DISCONNECTED and self._rate_limited:
            name = "RATE-LIMITED"
        for s in symbols or self.symbols:
            feed = self._feeds.get(s)
            if feed is not None and feed._laststatus != status:
                feed.put_notification(status)
                self.statuses.append((s, bt.feed.DataBase._NOTIFNAMES[status]))
                changed.append(s)
        if changed:
            what = self._down_text if status == bt.feed.DataBase.DISCONNECTED else ""
            level = logging.WARNING if status == bt.feed.DataBase.DISCONNECTED else logging.INFO
            log.log(level, "%s: %s%s", ", ".join(changed), name, what)

    @property
    def _down_text(self) -> str:
        if self._last_error is None:
            return ""
        kind = "rate-limited by" if self._rate_limited else "cannot reach"
        return f" ({kind} {self.source.name}); retrying with backoff"

    def _failed(self, exc: SourceDown) -> float:
        """One failed poll: log it (identical errors once, counted), report DISCONNECTED or
        RATE-LIMITED, give up when bounded; returns how long to wait before the next try."""
        import time

        text = str(exc)
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        self._failures += 1
        self._rate_limited = exc.rate_limited
        if text == self._last_error:
            self._repeats += 1
        else:
            self._flush_repeats()
            self._last_error = text
            log.warning("%s: %s", self.source.name, text)
        self._status(bt.feed.DataBase.DISCONNECTED)
        down = now - self._down_since
        if self.give_up is not None and down >= self.give_up:
            self._flush_repeats()
            raise GaveUp(
                f"{self.source.name} unreachable for {down:.0f} s ({self._failures} failed "
                f"polls; last error: {text}); gave up (give_up_seconds = {self.give_up:g}, "
                "applies when --max-bars or --until is set). Every bar decided so far is in "
                "the journal: run the same command again to resume"
            )
        delay = min(self.retry_seconds * 2 ** (self._failures - 1), self.max_retry_seconds)
        if self.give_up is not None:
            delay = min(delay, max(0.0, self.give_up - down) + 1e-3)
        return delay

    def _flush_repeats(self) -> None:
        if self._repeats:
            log.warning(
                "%s: the same error %d more times: %s",
                self.source.name,
                self._repeats,
                self._last_error,
            )
        self._repeats = 0

    def _recovered(self) -> None:
        import time

        if self._down_since is None:
            return
        self._flush_repeats()
        log.info(
            "%s: reachable again after %d failed polls (%.1f s)",
            self.source.name,
            self._failures,
            time.monotonic() - self._down_since,
        )
        self._down_since, self._failures, self._last_error = None, 0, None
        self._rate_limited = False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._poll()
                except SourceDown as exc:
                    if self._wait(self._failed(exc)):
                        break
                    continue
                if self._done():
                    break
                if self._wait(self.poll_seconds):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the Backtrader thread
            self.error = exc
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _done(self) -> bool:
        """Past ``until``: every bar ending by then has been fetched; release what waits."""
        if self.until is None or self._now is None or self._now < self.until:
            return False
        self._release(self._now, force=True)
        return True

    def _poll(self) -> None:
        import time

        now = self.source.now()
        self._recovered()  # it answered
        wall = time.monotonic()
        self._clock_jump(now, wall)
        self._now, self._wall = now, wall
        self.polls += 1
        if not self._warm:
            self._warmup(now)
            self._warm = True
        for symbol in self.symbols:
            seen = self._seen[symbol]
            since = seen + self.step if seen is not None else now - self.warmup_bars * self.step
            self._accept(symbol, self.source.recent(symbol, since), now)
        self._release(now)

    def _clock_jump(self, now: pd.Timestamp, wall: float) -> None:
        """Say when the exchange's clock moved otherwise than the wall clock did: backwards,
        or forwards by more than two bars beyond the wall time elapsed (a suspended
        machine, a changed system clock, a restarted exchange)."""
        if self._now is None or self._wall is None:
            return
        moved = now - self._now
        elapsed = pd.Timedelta(seconds=wall - self._wall)
        if moved < pd.Timedelta(0):
            log.warning(
                "%s clock went back by %s (from %s to %s); bars already decided stay decided",
                self.source.name, -moved, self._now.isoformat(), now.isoformat(),
            )  # fmt: skip
        elif moved - elapsed > 2 * self.step:
            log.warning(
                "%s clock jumped forward by %s in %.1f s of wall time (from %s to %s); "
                "the bars in between are back-filled, not traded",
                self.source.name, moved, elapsed.total_seconds(), self._now.isoformat(),
                now.isoformat(),
            )  # fmt: skip

    def _warmup(self, now: pd.Timestamp) -> None:
        end = _floor(now, self.step)  # bars starting before it have closed
        start = end - self.warmup_bars * self.step
        if self.history_start is not None:  # a resumed run replays the same history
            start = min(start, self.history_start)
        self.history_start = start
        frames = self.source.history(self.symbols, start, end)
        for symbol in self.symbols:
            frame = frames.get(symbol)
            if frame is None or frame.empty:
                continue
            frame = frame[frame.index < end]
            ms = frame.index.as_unit("ms").asi8
            values = frame[list(_OHLCV)].to_numpy(np.float64)
            rows = [[int(t), *v] for t, v in zip(ms, values.tolist(), strict=True)]
            self._accept(symbol, rows, now)

    def _accept(self, symbol: str, rows: list[list[float]], now: pd.Timestamp) -> None:
        """Closed, valid, new bars of ``rows`` into the symbol's pending set."""
        pending = self._pending[symbol]
        step_ms = int(self.step.total_seconds() * 1000)
        for row in sorted(rows, key=lambda r: int(r[0])):
            t = pd.Timestamp(int(row[0]), unit="ms", tz="UTC")
            if t + self.step > now:
                continue  # still forming: never delivered
            if self.until is not None and t + self.step > self.until:
                continue
            seen = self._seen[symbol]
            reason = None
            if t in pending or (seen is not None and t == seen and t in self._values[symbol]):
                first = pending[t] if t in pending else self._values[symbol][t]
                have = [first.open, first.high, first.low, first.close, first.volume]
                again = [float(x) for x in row[1:6]]
                if have == again:
                    self.dropped.append((symbol, t, "arrived twice (same values)"))
                    log.warning(
                        "%s: the bar at %s arrived twice with the same values; one copy kept",
                        symbol, t.isoformat(),
                    )  # fmt: skip
                    continue
                self.dropped.append((symbol, t, "arrived again with other values"))
                log.warning(
                    "%s: the bar at %s arrived again with other values (%s, first copy %s); "
                    "the first copy is kept",
                    symbol, t.isoformat(), again, have,
                )  # fmt: skip
                continue
            if seen is not None and t <= seen:
                reason = "arrived twice" if t == seen else "arrived out of order"
            elif self._released is not None and t <= self._released:
                reason = "arrived after the portfolio decided that bar (late)"
            elif int(row[0]) % step_ms:
                reason = f"is off the {self.timeframe} grid"
            else:
                reason = bad_value(row)
            if reason is not None:
                if seen is None or t > seen:  # a bad bar is not asked for again every poll
                    self._seen[symbol] = t
                self.dropped.append((symbol, t, reason))
                log.warning(
                    "%s: dropped the bar at %s (never traded): it %s", symbol, t.isoformat(), reason
                )
                continue
            o, h, lo, c, v = (float(x) for x in row[1:6])
            pending[t] = Bar(t, o, h, lo, c, v, live=False)
            self._seen[symbol] = t
            self._values[symbol] = {t: pending[t]}  # the newest accepted bar, to compare

    def _release(self, now: pd.Timestamp, force: bool = False) -> None:
        """Release complete bar times in order; the newest of this poll is live."""
        times = sorted({t for p in self._pending.values() for t in p})
        ready: list[pd.Timestamp] = []
        for t in times:
            late = force or now >= t + self.step + self.timeout
            if not late and not all(
                t in self._pending[s] or (self._seen[s] is not None and self._seen[s] > t)
                for s in self.symbols
            ):
                break
            ready.append(t)
        if not ready:
            return
        with self._cond:
            for i, t in enumerate(ready):
                live = i == len(ready) - 1 and (self.resume_after is None or t > self.resume_after)
                members = [s for s in self.symbols if t in self._pending[s]]
                self._status(bt.feed.DataBase.LIVE if live else bt.feed.DataBase.DELAYED, members)
                for s in members:
                    bar = self._pending[s].pop(t)
                    self._queues[s].append(Bar(**{**bar.__dict__, "live": live}))
                (self.live_times if live else self.backfill_times).append(t)
                self._released = t
            self._cond.notify_all()
        filled = [t for t in ready if not self.live_times or self.live_times[-1] != t]
        if filled:
            what = "history" if not self.live_times or self.live_times[0] > filled[-1] else "gap"
            log.info(
                "back-filled %d bar%s (%s, %s .. %s; not traded)",
                len(filled), "" if len(filled) == 1 else "s", what, filled[0].isoformat(),
                filled[-1].isoformat(),
            )  # fmt: skip


def _floor(ts: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    ns = step.value
    return pd.Timestamp(ts.value // ns * ns, unit="ns", tz="UTC")


class LiveFeed(bt.feed.DataBase):
    """A Backtrader live feed over one symbol of a :class:`LiveMarket`.

    Extra line ``live``: 1.0 on the bar that was the newest closed bar when it was
    delivered, 0.0 on back-filled history. Decide on ``data.live[0] == 1`` only.
    """

    lines = ("live",)
    params = (("market", None), ("symbol", None), ("qcheck", 0.05))

    def islive(self) -> bool:
        return True

    def haslivedata(self) -> bool:
        return self.p.market.has_bars(self.p.symbol)

    def start(self) -> None:
        super().start()
        self.p.market._feed_started()

    def stop(self) -> None:
        self.p.market._feed_stopped()

    def _load(self) -> bool | None:
        bar = self.p.market.next_bar(self.p.symbol, self._qcheck)
        if bar is None or bar is False:
            return bar
        lines = self.lines
        lines.datetime[0] = bt.date2num(
            bar.time.tz_convert("UTC").tz_localize(None).to_pydatetime()
        )
        lines.open[0] = bar.open
        lines.high[0] = bar.high
        lines.low[0] = bar.low
        lines.close[0] = bar.close
        lines.volume[0] = bar.volume
        lines.openinterest[0] = 0.0
        lines.live[0] = 1.0 if bar.live else 0.0
        return True
