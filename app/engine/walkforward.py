"""Walk-forward windows: in-sample ranges (rolling or anchored), each followed by its
out-of-sample range. The data is cut into `IN_SAMPLE_RATIO + windows` equal segments; window i
trains on the IN_SAMPLE_RATIO segments before its out-of-sample segment (rolling) or on all the
data before it (anchored). The last out-of-sample segment takes the remainder. Each range is
scored with the strategy's warm-up of the bars before it in front (`ranges`)."""

from __future__ import annotations

from dataclasses import dataclass

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
