"""Walk-forward windows: in-sample ranges (rolling or anchored), each followed by its
out-of-sample range. The data is cut into `IN_SAMPLE_RATIO + windows` equal segments; window i
trains on the IN_SAMPLE_RATIO segments before its out-of-sample segment (rolling) or on all the
data before it (anchored). The last out-of-sample segment takes the remainder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.engine.candles import Candles
from app.engine.strategies import Strategy

IN_SAMPLE_RATIO = 4  # in-sample length in out-of-sample lengths (an 80/20 split per window)


@dataclass(frozen=True)
class Window:
    index: int
    in_sample: tuple[int, int]  # bar indices [start, end)
    out_of_sample: tuple[int, int]


def windows(n_bars: int, count: int, anchored: bool) -> list[Window]:
    segment = n_bars // (IN_SAMPLE_RATIO + count)
    out = []
    for i in range(count):
        oos_start = (IN_SAMPLE_RATIO + i) * segment
        oos_end = n_bars if i == count - 1 else oos_start + segment
        is_start = 0 if anchored else i * segment
        out.append(Window(i, (is_start, oos_start), (oos_start, oos_end)))
    return out


def out_of_sample_positions(data: Candles, strategy: Strategy, params: dict, window: Window) -> np.ndarray:
    """The window's out-of-sample positions, computed with its in-sample bars as history so the
    indicators are warm at the first out-of-sample bar."""
    a, b = window.in_sample[0], window.out_of_sample[1]
    return strategy.signals(data[a:b], params)[window.out_of_sample[0] - a :]
