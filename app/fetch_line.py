"""`trad candles fetch`'s progress and summary.

Progress goes to stderr: on a terminal one line redrawn in place (a bar, bars fetched, requests,
ETA); otherwise a plain line each time a batch is written, so a log stays short.
"""

from __future__ import annotations

from typing import TextIO

from app.progress_line import BAR_WIDTH, _duration
from app.services.candle_fetch import FetchProgress, FetchReport, utc_text


def render(p: FetchProgress) -> str:
    filled = round(BAR_WIDTH * p.fraction)
    eta = p.eta_s
    parts = [
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {100 * p.fraction:5.1f}%",
        f"{p.fetched} bars fetched",
        f"{p.stored} stored",
        f"{p.requests} requests",
        f"up to {utc_text(p.cursor_ms)}",
        f"ETA {_duration(eta)}" if eta is not None else "ETA ?",
    ]
    return "  ".join(parts)


class ProgressWriter:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._stored = 0
        self._drawn = False

    def __call__(self, p: FetchProgress) -> None:
        if self.tty:
            self.out.write("\r" + render(p) + "\033[K")
            self._drawn = True
        elif p.stored != self._stored:
            self.out.write(render(p) + "\n")
        self._stored = p.stored
        self.out.flush()

    def note(self, message: str) -> None:
        """A line of its own (a retry), above the redrawn progress line on a terminal."""
        self.out.write(("\r\033[K" if self._drawn else "") + message + "\n")
        self.out.flush()

    def retrying(self, error: Exception, wait_s: float) -> None:
        self.note(f"{type(error).__name__}: retrying in {wait_s:.1f}s")

    def close(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self.out.flush()


def summary(r: FetchReport) -> list[str]:
    p = r.progress
    m = r.market
    head = f"{m.exchange} {m.symbol} {m.timeframe} -> {r.symbol} (source {r.source}): "
    if r.up_to_date:
        lines = [head + f"up to date, nothing to fetch (last stored bar {utc_text(r.resumed_after_ms or p.start_ms)})"]
    else:
        lines = [head + f"{p.fetched} bars fetched in {p.requests} requests, {p.inserted} new"]
    if r.stored_from_ms is not None:
        lines.append(
            f"  the stored bars begin at {utc_text(r.stored_from_ms)}: a fetch extends them forward only, "
            "so earlier history was not fetched (store it under another symbol with --as)"
        )
    if r.up_to_date:
        return lines
    if r.first_ms is not None:
        lines.append(f"  from {utc_text(r.first_ms)} to {utc_text(r.last_ms)} (open times)")
    if r.resumed_after_ms is not None:
        lines.append(f"  resumed after the last stored bar, {utc_text(r.resumed_after_ms)}")
    if r.open_bar_ms is not None:
        lines.append(f"  the bar still open at {utc_text(r.open_bar_ms)} was left out")
    largest = r.largest_gap
    if largest is None:
        lines.append("  gaps: none")
    else:
        lines.append(
            f"  gaps: {len(r.gaps)}, {sum(g.missing for g in r.gaps)} bars missing; the largest {largest.missing} "
            f"bars between {utc_text(largest.after_ms)} and {utc_text(largest.before_ms)}"
        )
    return lines
