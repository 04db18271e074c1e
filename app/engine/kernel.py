"""The backtest and its metrics in one compiled call: positions in; equity, trades and the
metrics' sums out (the model is `backtest`'s; docs/backtesting.md explains it).

`simulate` and `metrics_of` in `backtest` compute the same with whole-array NumPy operations,
each reading and writing every bar again. Here a bar where something can happen (a position
changes, a stop, a mark that could reach zero) is walked on its own, and the bars between two
such bars are marked in one branch-free loop the compiler turns into vector instructions, with
the same arithmetic, so the equity, the trades, the drawdown, the exposure and the win rate are
the NumPy path's to the last bit. The metrics then take one more pass, in chunks of 128 bars
(`_metrics`). Their mean and standard deviation come from compensated sums of vector-summed
chunks instead of NumPy's pairwise sums: they agree to ~1e-13 relative. Tests compare the two
paths on random markets, ruin, flat prices, gaps, stops and positions held for long runs.

What bounds the speed is the two divisions a bar (a mark, a per-bar return), not the passes:
a single pass that folded the metrics into the bar loop measured no faster (3.15 against
2.99 ms for a year of 1-minute bars) than the two passes it would have replaced, because a
bar-by-bar loop cannot use vector instructions for them.

The built-in strategies' signals are here too, each one pass with the arithmetic of the NumPy
version it replaced (kept beside it in `strategies` as the reference its tests compare with):
`crossover` (sma_crossover), `sweep` (liquidity_sweep), `bollinger`, `rsi_states`.

Compiled with numba (`cache=True`): the machine code is kept in numba's cache directory
(NUMBA_CACHE_DIR, which the worker unit sets to its systemd cache directory) so a process
loads it instead of compiling it again. Where no cache directory can be written the kernel is
compiled in each process, as it would be without a cache.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from app.engine.stats import CSCV_BLOCKS

_CANCELLATION = 1e-3  # sum² / n above this share of the sum of squares: recompute the variance in two passes


def _dd_floor(peak, max_dd):
    """The equity at or above which 1 − equity/peak cannot exceed `max_dd`, with a margin of
    1e-9 relative that rounding cannot cross; +inf (always divide) near a total drawdown, where
    that margin is below the rounding of 1 − x."""
    if max_dd >= 1.0 - 1e-7:
        return math.inf
    return peak * (1.0 - max_dd) * (1.0 + 1e-9)


_dd_floor = numba.njit(inline="always")(_dd_floor)


def _kernel(
    open_, close, positions, exits, c, equity, entry, exit_, side_of, entry_price, exit_price, ret_of, stopped, blocks
):
    """Fills `equity` (one value per bar) and the trade arrays (one row per trade, sized for the
    most trades there can be), and `blocks` (B, 3) with [count, sum, sum of squares] of the
    per-bar returns in B equal consecutive blocks (the first n % B returns left out; zeros when
    a block would hold fewer than 2; `stats.block_sums`). Returns (trades, first invalid
    position or -1, bars holding a position, winning trades, max drawdown, mean of the per-bar
    returns, the sum of their squared deviations from it).

    A bar where something may happen (a position changes, a stop, a mark near ruin) is walked
    on its own; the bars between two such bars are marked in one loop the compiler turns into
    vector instructions (`_hold`, `_stay_flat`)."""
    n = len(open_)
    has_exits = len(exits) > 0
    keep = 1.0 - c
    growth = 1.0  # equity before the current trade: the product of 1 + each closed trade's return
    side, p0, first_bar = 0.0, 0.0, 0
    safe = 0.0
    k = 0
    held_bars = 0
    zero_from = n  # equity is 0 from this bar on (ruin)
    wanted = 0.0  # the position decided on the previous bar's close: held during this bar
    checked = n  # positions checked for validity up to here
    ruined = False
    i = 0
    while i < n:
        p = positions[i]
        if not (p == 0 or p == 1 or p == -1):
            return k, i, 0, 0, 0.0, 0.0, 0.0
        held = wanted
        wanted = float(p)
        o = open_[i]
        if side != 0.0:
            if held == side:
                m = 1.0  # the open's mark, computed only where it could be ≤ 0 (see `safe`)
                if o <= safe if side > 0.0 else o >= safe:
                    m = o / p0
                    m -= 1.0
                    m *= side
                    m += keep
                if m <= 0.0:  # marked at the open: ruin
                    entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, i, side, p0
                    exit_price[k], ret_of[k], stopped[k] = o, -1.0, False
                    k += 1
                    zero_from, checked, ruined = i, i + 1, True
                    break
            else:
                ratio = o / p0
                ret = side * (ratio - 1.0) - c * (1.0 + ratio)
                entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, i, side, p0
                exit_price[k], stopped[k] = o, False
                k += 1
                if 1.0 + ret <= 0.0:  # the exit's cost took the rest
                    ret_of[k - 1] = -1.0
                    zero_from, checked, ruined = i, i + 1, True
                    break
                ret_of[k - 1] = ret
                growth *= 1.0 + ret
                side = 0.0
        if side == 0.0 and held != 0.0:
            side, p0, first_bar = held, o, i
            # The open's mark 1 − c + side·(o/p0 − 1) is > 0 (no ruin) wherever o is above this for
            # a long, below it for a short: a bound 1e-12 inside, so rounding cannot cross it.
            safe = p0 * (c + 1e-12) if side > 0.0 else p0 * (1.0 + keep) * (1.0 - 1e-12)
        if side == 0.0:
            equity[i] = growth
        else:
            held_bars += 1
            if has_exits and not math.isnan(exits[i]):  # a stop closed the position within this bar
                s = exits[i]
                m = s / p0
                m -= 1.0
                m *= side
                m += keep
                ratio = s / p0
                ret = side * (ratio - 1.0) - c * (1.0 + ratio)
                entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, i + 1, side, p0
                exit_price[k] = s
                k += 1
                if m <= 0.0 or 1.0 + ret <= 0.0:
                    ret_of[k - 1], stopped[k - 1] = -1.0, False
                    zero_from, checked, ruined = i, i + 1, True
                    break
                ret_of[k - 1], stopped[k - 1] = ret, True
                growth *= 1.0 + ret
                equity[i] = growth
                side = 0.0
            else:
                m = close[i] / p0
                m -= 1.0
                m *= side
                m += keep
                if m <= 0.0:  # marked at the close: ruin
                    entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, i + 1, side, p0
                    exit_price[k], ret_of[k], stopped[k] = close[i], -1.0, False
                    k += 1
                    zero_from, checked, ruined = i, i + 1, True
                    break
                equity[i] = growth * m
        # The bars after i that keep what bar i left (the same position wanted, no stop).
        end = i + 1
        if positions[i] == side:
            end = min(_run_end(positions, i + 1, positions[i]) + 1, n)
            if has_exits:
                for j in range(i + 1, end):
                    if not math.isnan(exits[j]):
                        end = j
                        break
        if end > i + 1:
            if side == 0.0:
                _stay_flat(equity, i + 1, end, growth)
            else:
                end = _hold(open_, close, equity, i + 1, end, p0, side, keep, safe, growth)
                held_bars += end - i - 1
            p = positions[end - 1]  # the position wanted at the close of the last of them
            if not (p == 0 or p == 1 or p == -1):
                return k, end - 1, 0, 0, 0.0, 0.0, 0.0
            wanted = float(p)
        i = end
    if not ruined and side != 0.0:  # the backtest ends flat: closed at the last close
        last = close[n - 1]
        ratio = last / p0
        ret = side * (ratio - 1.0) - c * (1.0 + ratio)
        entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, n, side, p0
        exit_price[k], stopped[k] = last, False
        k += 1
        if 1.0 + ret <= 0.0:
            ret_of[k - 1] = -1.0
            zero_from = n - 1
        else:
            ret_of[k - 1] = ret
            equity[n - 1] = growth * (1.0 + ret)
    for i in range(checked, n):  # positions after a ruin are ignored, but must still be valid
        p = positions[i]
        if not (p == 0 or p == 1 or p == -1):
            return k, i, 0, 0, 0.0, 0.0, 0.0
    for i in range(zero_from, n):
        equity[i] = 0.0

    wins = 0
    for j in range(k):
        if ret_of[j] > 0.0:
            wins += 1
    max_dd, mean, m2 = _metrics(equity, blocks)
    return k, -1, held_bars, wins, max_dd, mean, m2


def _run_end(positions, lo, value):
    """The first index from lo whose position is not `value` (the length if none). One byte
    positions are compared eight at a time."""
    n = len(positions)
    i = lo
    if positions.itemsize == 1:
        while i < n and i % 8:
            if positions[i] != value:
                return i
            i += 1
        words = positions[: n - n % 8].view(np.uint64)
        pattern = np.uint64(np.int64(value) & 0xFF) * np.uint64(0x0101010101010101)
        while i + 8 <= n and words[i // 8] == pattern:
            i += 8
    while i < n and positions[i] == value:
        i += 1
    return i


def _stay_flat(equity, lo, hi, growth):
    equity[lo:hi] = growth


def _hold(open_, close, equity, lo, hi, p0, side, keep, safe, growth):
    """Bars lo..hi−1 holding the position opened at p0: each marked at its close, as the bar
    loop marks it, in one loop with no branch. Returns the first bar where the open could mark
    at or below 0 or the close does (the bar loop decides those), or hi."""
    trouble = False
    # Slices indexed from 0 (here and in the chunk loops below): an index the compiler knows is
    # not negative needs no wraparound check, and the loop becomes vector instructions.
    opens, closes, marks = open_[lo:hi], close[lo:hi], equity[lo:hi]
    if side > 0.0:
        for j in range(hi - lo):
            m = closes[j] / p0
            m -= 1.0
            m += keep
            marks[j] = growth * m
            trouble |= (opens[j] <= safe) | (m <= 0.0)
    else:
        for j in range(hi - lo):
            m = closes[j] / p0
            m -= 1.0
            m = -m
            m += keep
            marks[j] = growth * m
            trouble |= (opens[j] >= safe) | (m <= 0.0)
    if not trouble:
        return hi
    for j in range(lo, hi):
        m = close[j] / p0
        m -= 1.0
        m *= side
        m += keep
        if (open_[j] <= safe if side > 0.0 else open_[j] >= safe) or m <= 0.0:
            return j
    return hi


_CHUNK = 128  # bars summed or scanned by one vector loop


def _metrics(equity, blocks):
    """(max drawdown, mean of the per-bar returns, the sum of their squared deviations from
    it), and `blocks` filled, in one pass over the equity in chunks of 128 bars. The per-bar
    returns (equity over the previous bar's, from 1; 0 after ruin) are summed per segment (the
    returns before the first block, then each block): compensated (Neumaier) sums of the
    chunks, each chunk summed in vector lanes, within ~1e-15 relative of the exact sums as
    NumPy's pairwise sums are. The drawdown takes a chunk whole unless it holds a new peak."""
    n = len(equity)
    returns = np.empty(_CHUNK)  # one chunk's
    bits = equity.view(np.int64)
    cell = np.empty(1, dtype=np.int64)  # an integer's bits read back as a float
    as_float = cell.view(np.float64)
    peak, max_dd = 1.0, 0.0
    floor = _dd_floor(peak, max_dd)
    n_blocks = blocks.shape[0]
    size = n // n_blocks
    skipped = n - size * n_blocks if size >= 2 else n  # returns before the first block
    blocks[:, :] = 0.0
    s1, e1, s2, e2 = 0.0, 0.0, 0.0, 0.0
    for b in range(-1, n_blocks if size >= 2 else 0):
        lo = 0 if b < 0 else skipped + b * size
        hi = skipped if b < 0 else lo + size
        c1, d1, c2, d2 = 0.0, 0.0, 0.0, 0.0
        for start in range(lo, hi, _CHUNK):
            stop = min(start + _CHUNK, hi)
            _chunk_returns(equity, start, stop, returns)
            a, q = _chunk_sums(returns, stop - start)
            c1, d1 = _add(c1, d1, a)
            c2, d2 = _add(c2, d2, q)
            # Equity is never negative nor NaN, and such floats order as their bits do as
            # integers, whose minimum and maximum the compiler does in vector lanes.
            low_bits, high_bits = _chunk_range(bits, start, stop)
            cell[0] = high_bits
            if as_float[0] <= peak:  # no new peak: the lowest equity has the largest drawdown
                cell[0] = low_bits
                low = as_float[0]
                if low < floor:  # above the floor the drawdown cannot beat max_dd: no division
                    dd = 1.0 - low / peak
                    if dd > max_dd:
                        max_dd = dd
                        floor = _dd_floor(peak, max_dd)
                continue
            for i in range(start, stop):
                e = equity[i]
                if e > peak:
                    peak = e
                    floor = _dd_floor(peak, max_dd)
                elif e < floor:
                    dd = 1.0 - e / peak
                    if dd > max_dd:
                        max_dd = dd
                        floor = _dd_floor(peak, max_dd)
        b1, b2 = c1 + d1, c2 + d2
        s1, e1 = _add(s1, e1, b1)
        s2, e2 = _add(s2, e2, b2)
        if b >= 0:
            blocks[b, 0] = size
            blocks[b, 1] = b1
            blocks[b, 2] = b2
    total, squares = s1 + e1, s2 + e2
    mean = total / n
    m2 = 0.0
    if n > 1:
        if total * mean > _CANCELLATION * squares:  # the returns barely vary around their mean: two passes
            s2, e2 = 0.0, 0.0
            for start in range(0, n, _CHUNK):
                stop = min(start + _CHUNK, n)
                _chunk_returns(equity, start, stop, returns)
                for j in range(stop - start):
                    d = returns[j] - mean
                    s2, e2 = _add(s2, e2, d * d)
            m2 = s2 + e2
        else:
            m2 = max(squares - total * mean, 0.0)
    return max_dd, mean, m2


def _add(s, e, x):
    """Neumaier's compensated addition: x added to the sum s with its error e."""
    t = s + x
    e += (s - t) + x if abs(s) >= abs(x) else (x - t) + s
    return t, e


def _chunk_returns(equity, lo, hi, out):
    """The per-bar returns of bars lo..hi−1 into out[0:hi−lo]: equity over the previous bar's,
    less 1 (the first bar's over 1; 0 after ruin, where the previous equity is 0)."""
    first = lo
    if lo == 0:
        out[0] = equity[0] - 1.0
        first = 1
    now, before, into = equity[first:hi], equity[first - 1 : hi - 1], out[first - lo : hi - lo]
    for j in range(hi - first):
        prev = before[j]
        r = now[j] / prev - 1.0
        into[j] = r if prev > 0.0 else 0.0


def _chunk_sums(x, count):
    """Sum and sum of squares of x[0:count], which the compiler may reorder into vector lanes."""
    a, b = 0.0, 0.0
    for j in range(count):
        v = x[j]
        a += v
        b += v * v
    return a, b


def _chunk_range(x, lo, hi):
    """(min, max) of x[lo:hi]."""
    low, high = x[lo], x[lo]
    values = x[lo + 1 : hi]
    for j in range(hi - lo - 1):
        v = values[j]
        low = min(low, v)
        high = max(high, v)
    return low, high


_run_end = numba.njit(nogil=True)(_run_end)
_stay_flat = numba.njit(nogil=True)(_stay_flat)
_hold = numba.njit(nogil=True, error_model="numpy")(_hold)
_add = numba.njit(inline="always")(_add)
_chunk_returns = numba.njit(nogil=True, error_model="numpy")(_chunk_returns)
_chunk_sums = numba.njit(nogil=True, fastmath={"reassoc"})(_chunk_sums)
_chunk_range = numba.njit(nogil=True)(_chunk_range)
_metrics = numba.njit(nogil=True)(_metrics)


def _compiled(function, **options):
    """`function` compiled with numba, kept in its cache directory; compiled in each process
    instead when no cache directory is writable (numba: "no locator available")."""
    try:
        return numba.njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:
        return numba.njit(nogil=True, **options)(function)


fused = _compiled(_kernel)


def run(open_: np.ndarray, close: np.ndarray, positions: np.ndarray, exits: np.ndarray | None, c: float):
    """The kernel on fresh output arrays; the trade arrays trimmed to the trades made, the
    blocks as `stats.block_sums` gives them."""
    n = len(open_)
    equity = np.empty(n)
    entry, exit_ = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    side, entry_price, exit_price, ret = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    stopped = np.empty(n, dtype=np.bool_)
    no_exits = np.empty(0) if exits is None else exits
    blocks = np.empty((CSCV_BLOCKS, 3))
    k, bad, held_bars, wins, max_dd, mean, m2 = fused(
        open_, close, positions, no_exits, c, equity, entry, exit_, side, entry_price, exit_price, ret, stopped, blocks
    )
    trades = {
        "entry": entry[:k].copy(),
        "exit": exit_[:k].copy(),
        "side": side[:k].copy(),
        "entry_price": entry_price[:k].copy(),
        "exit_price": exit_price[:k].copy(),
        "ret": ret[:k].copy(),
        "stopped": stopped[:k].copy(),
    }
    block_list = blocks.tolist() if n // CSCV_BLOCKS >= 2 else []
    return bad, equity, trades, held_bars, wins, max_dd, mean, m2, block_list


def _crossover(x, high, low, changes, fast, slow, rtol, nonnegative, out):
    """`out[t]` = the sign of mean(fast) − mean(slow) over the windows ending at bar t, 0 where
    the difference is within `rtol`·|mean(slow)| or a window is not full: what
    `np.nan_to_num(indicators.sign(mean(fast) − mean(slow), mean(slow)))` gives from
    `indicators.Rolling`, in one pass over its prefix sums with no array in between.

    For a series of values ≥ 0 (`nonnegative`: prices, gains, losses) each bar first takes the
    two means from the plain prefix sums `high` alone, with a multiplication for the division:
    `high` is NumPy's sequential cumsum, so each of its additions rounds by at most u·high[t+1]
    (u = 2⁻⁵³, the prefixes never decrease), and a window's mean taken so is within u·high[t+1]
    + 3u·|mean| of the exact one. Where the difference clears the tie band by more than twice
    that, its sign is the exact one's; the bars closer to a tie (a few in a million) take the
    exact means, compensated and with the flat-window rule, as `Rolling.mean` does. This reads
    one array instead of four, in vector instructions (the bars near a tie are redone after)."""
    n = len(x)
    for t in range(min(slow - 1, n)):
        out[t] = 0
    inv_fast, inv_slow = 1.0 / fast, 1.0 / slow
    if nonnegative:
        # One loop with no branch, which the compiler turns into vector instructions: each bar
        # its sign, or 2 where it is too close to a tie to tell (counted).
        band = rtol * (1.0 + 1e-6) + 1e-14
        near_ties = 0
        # Bar t = slow − 1 + j reads high[t + 1], high[t + 1 − slow] and high[t + 1 − fast]:
        # slices indexed from 0, so no index can be negative and none needs a wraparound check.
        tops, slows, fasts = high[slow : n + 1], high[: n + 1 - slow], high[slow - fast : n + 1 - fast]
        signs = out[slow - 1 : n]
        for j in range(n + 1 - slow):
            top = tops[j]
            s = (top - slows[j]) * inv_slow
            d = (top - fasts[j]) * inv_fast - s
            near = abs(d) <= band * abs(s) + 8e-16 * top + 1e-14 * abs(d)
            near_ties += near
            signs[j] = np.int8(2) if near else (np.int8(1) if d > 0 else np.int8(-1))
        if near_ties == 0:
            return
    for t in range(slow - 1, n):
        if nonnegative and out[t] != 2:
            continue
        s = _mean_at(x, high, low, changes, t, slow)
        d = _mean_at(x, high, low, changes, t, fast) - s
        if abs(d) <= rtol * abs(s):
            out[t] = 0
        elif d > 0:
            out[t] = 1
        else:
            out[t] = -1


crossover = _compiled(_crossover)


def _sweep(open_, high, low, close, lookback, stop, max_hold, start, positions, exits):
    """`strategies._liquidity_sweep_numpy` in one pass: the prior `lookback`-bar high and low
    (exact: maxima round nothing), each sweep from `start` on entered at the next open unless a
    trade is still running, its stop searched forward from there."""
    n = len(close)
    for t in range(n):
        positions[t] = 0
        exits[t] = np.nan
    # The highest high of bars a .. a + lookback − 1 is the larger of two running maxima of
    # lookback-bar blocks (van Herk, Gil and Werman): from a to its block's end, and from the
    # next block's start to a + lookback − 1. Scans with no branch to mispredict, unlike a
    # monotonic queue's.
    high_to_here, high_from_here = _block_extremes(high, lookback, True)
    low_to_here, low_from_here = _block_extremes(low, lookback, False)
    busy_until = -1
    for t in range(max(lookback, start), n - 1):
        if t <= busy_until:
            continue
        a = t - lookback
        prior_high = max(high_from_here[a], high_to_here[t - 1])
        prior_low = min(low_from_here[a], low_to_here[t - 1])
        short = high[t] > prior_high and close[t] < prior_high
        if short or (low[t] < prior_low and close[t] > prior_low):
            side = -1 if short else 1
            entry = open_[t + 1]
            end = min(t + max_hold, n - 1)
            level = entry * (1 + stop) if side == -1 else entry * (1 - stop)
            hit = -1
            for j in range(t + 1, end + 1):
                if (high[j] >= level) if side == -1 else (low[j] <= level):
                    hit = j
                    break
            if hit >= 0:
                for j in range(t, hit):
                    positions[j] = side
                exits[hit] = max(level, open_[hit]) if side == -1 else min(level, open_[hit])
                busy_until = hit
            else:
                for j in range(t, end):
                    positions[j] = side
                busy_until = end


def _block_extremes(x, size, highest):
    """For blocks of `size` values: the maximum (`highest`, else the minimum) of x from each
    block's start to each value, and from each value to its block's end."""
    n = len(x)
    to_here, from_here = np.empty(n), np.empty(n)
    for first in range(0, n, size):
        last = min(first + size, n) - 1
        m = x[first]
        to_here[first] = m
        for i in range(first + 1, last + 1):
            v = x[i]
            m = (v if v > m else m) if highest else (v if v < m else m)
            to_here[i] = m
        m = x[last]
        from_here[last] = m
        for i in range(last - 1, first - 1, -1):
            v = x[i]
            m = (v if v > m else m) if highest else (v if v < m else m)
            from_here[i] = m
    return to_here, from_here


_block_extremes = numba.njit(nogil=True)(_block_extremes)


sweep = _compiled(_sweep)


def _sign(diff, scale, rtol):
    """`indicators.sign` of one value: 0 within rtol·|scale|, NaN for NaN."""
    if abs(diff) <= rtol * abs(scale):
        return 0.0
    if diff > 0:
        return 1.0
    if diff < 0:
        return -1.0
    return np.nan


def _band_step(value, upper, lower, mid, breakout, previous, rtol):
    """One bar of `strategies._band_events`: (the event, NaN for none; the side of mid)."""
    side = _sign(value - mid, mid, rtol)
    event = np.nan
    if side != previous and not np.isnan(mid):
        event = 0.0
    above = _sign(value - upper, upper, rtol) > 0
    below = _sign(value - lower, lower, rtol) < 0
    if above if breakout else below:
        event = 1.0
    if below if breakout else above:
        event = -1.0
    return event, side


def _window_sum(high, low, t, window):
    """`indicators._window_sums` at bar t: the window ending at t from a compensated prefix pair."""
    s = high[t + 1] - high[t + 1 - window]
    s += low[t + 1]
    s -= low[t + 1 - window]
    return s


def _bollinger(x, high, low, first_high, first_low, second_high, second_low, changes, window, k, start, rtol, out):
    """`strategies._bollinger_breakout_numpy`: `Rolling.mean` and `Rolling.std` of each window
    (the same sums, the same flat-window rule), its bands at ±k deviations and the band event of
    each bar, in a vector loop (`_bollinger_events`), then the events' held states."""
    events = np.empty(len(x))
    _bollinger_events(x, high, low, first_high, first_low, second_high, second_low, changes, window, k, rtol, events)
    _hold_events(events, start, out)


def _bollinger_events(x, high, low, first_high, first_low, second_high, second_low, changes, window, k, rtol, events):
    """`_band_step` of each bar against its band; the side of the bar before recomputed from its
    own mean, so no state goes from bar to bar and the loop from bar `window` on (over slices
    indexed from 0) becomes vector instructions. No band (NaN: no event) before `window` − 1."""
    n = len(x)
    first = window - 1
    events[: min(first, n)] = np.nan
    if n <= first:
        return
    flat = changes[first] == changes[0]
    mid, upper, lower = _band(
        x[first],
        flat,
        _window_sum(high, low, first, window),
        _window_sum(first_high, first_low, first, window),
        _window_sum(second_high, second_low, first, window),
        window,
        k,
    )
    events[first], _ = _band_step(x[first], upper, lower, mid, True, np.nan, rtol)
    if n <= window:
        return
    now, last_change, first_change = x[window:], changes[window:], changes[1 : n + 1 - window]
    ends, starts = high[window + 1 :], high[1 : n + 1 - window]
    low_ends, low_starts = low[window + 1 :], low[1 : n + 1 - window]
    first_ends, first_starts = first_high[window + 1 :], first_high[1 : n + 1 - window]
    first_low_ends, first_low_starts = first_low[window + 1 :], first_low[1 : n + 1 - window]
    second_ends, second_starts = second_high[window + 1 :], second_high[1 : n + 1 - window]
    second_low_ends, second_low_starts = second_low[window + 1 :], second_low[1 : n + 1 - window]
    # The bar before: its value, its window's change counts and sums (the window ending at t − 1).
    before, before_last, before_first = x[first : n - 1], changes[first : n - 1], changes[: n - window]
    before_ends, before_starts = high[window:n], high[: n - window]
    before_low_ends, before_low_starts = low[window:n], low[: n - window]
    into = events[window:]
    for j in range(n - window):
        s = before_ends[j] - before_starts[j]
        s += before_low_ends[j]
        s -= before_low_starts[j]
        previous_mid = before[j] if before_last[j] == before_first[j] else s / window
        previous = _sign(before[j] - previous_mid, previous_mid, rtol)
        s_mid = ends[j] - starts[j]
        s_mid += low_ends[j]
        s_mid -= low_starts[j]
        s_first = first_ends[j] - first_starts[j]
        s_first += first_low_ends[j]
        s_first -= first_low_starts[j]
        s_second = second_ends[j] - second_starts[j]
        s_second += second_low_ends[j]
        s_second -= second_low_starts[j]
        mid, upper, lower = _band(now[j], last_change[j] == first_change[j], s_mid, s_first, s_second, window, k)
        into[j], _ = _band_step(now[j], upper, lower, mid, True, previous, rtol)


def _band(value, flat, s_mid, s_first, s_second, window, k):
    """(mid, upper, lower) of a window from its sums of the values, of their deviations and of
    their squares: `Rolling.mean` and `Rolling.std`'s arithmetic, and their flat-window rule."""
    mid = s_mid / window
    mean = s_first / window
    var = s_second / window
    mean *= mean
    var -= mean
    sd = math.sqrt(max(var, 0.0))
    mid = value if flat else mid
    sd = 0.0 if flat else sd
    band = k * sd
    return mid, mid + band, mid - band


def _mean_at(x, high, low, changes, t, window):
    """`Rolling.mean` of the window ending at bar t (t ≥ window − 1)."""
    if changes[t] == changes[t + 1 - window]:
        return x[t]
    return _window_sum(high, low, t, window) / window


def _rsi_states(
    gains,
    gain_high,
    gain_low,
    gain_changes,
    losses,
    loss_high,
    loss_low,
    loss_changes,
    period,
    upper,
    lower,
    start,
    rtol,
    out,
):
    """`strategies._rsi_reversion_numpy`: `indicators.rsi` from the rolling means of the gains
    and losses (the same sums and rules), in a vector loop (`_rsi_values`), then the band
    events' held states at the fixed levels around 50, bar by bar. Division by zero follows IEEE
    (error_model="numpy") as in NumPy."""
    n = len(gains)
    values = np.empty(n)
    _rsi_values(gains, gain_high, gain_low, gain_changes, losses, loss_high, loss_low, loss_changes, period, values)
    events = np.empty(n)
    _rsi_events(values, upper, lower, rtol, events)
    _hold_events(events, start, out)


def _rsi_events(values, upper, lower, rtol, events):
    """`_band_step` of each bar, its previous side recomputed from the bar before (NaN before
    the first): no state carried from bar to bar, so the compiler uses vector instructions."""
    n = len(values)
    if n == 0:
        return
    events[0], _ = _band_step(values[0], upper, lower, _rsi_mid(values[0]), False, np.nan, rtol)
    now, before, into = values[1:], values[: n - 1], events[1:]
    for j in range(n - 1):
        previous = _sign(before[j] - _rsi_mid(before[j]), _rsi_mid(before[j]), rtol)
        into[j], _ = _band_step(now[j], upper, lower, _rsi_mid(now[j]), False, previous, rtol)


def _rsi_mid(value):
    return np.nan if np.isnan(value) else 50.0


def _hold_events(events, start, out):
    """The held states: flat before `start`, then each event's side held until the next event
    (NaN: no event)."""
    state = 0.0
    for t in range(len(events)):
        if t < start:
            out[t] = 0.0
            continue
        event = events[t]
        if not np.isnan(event):
            state = event
        out[t] = state


def _rsi_values(gains, gain_high, gain_low, gain_changes, losses, loss_high, loss_low, loss_changes, period, out):
    """The RSI of each bar (NaN before `period`) from `_mean_at`'s means of the gains and the
    losses, over slices indexed from 0 and with no branch, so the compiler uses vector
    instructions."""
    n = len(gains)
    out[: min(period, n)] = np.nan
    if n <= period:
        return
    values = out[period:]
    g_now, g_ends, g_firsts = gains[period:], gain_high[period + 1 :], gain_high[1 : n + 1 - period]
    g_low_ends, g_low_firsts = gain_low[period + 1 :], gain_low[1 : n + 1 - period]
    g_last, g_first = gain_changes[period:], gain_changes[1 : n + 1 - period]
    l_now, l_ends, l_firsts = losses[period:], loss_high[period + 1 :], loss_high[1 : n + 1 - period]
    l_low_ends, l_low_firsts = loss_low[period + 1 :], loss_low[1 : n + 1 - period]
    l_last, l_first = loss_changes[period:], loss_changes[1 : n + 1 - period]
    for j in range(n - period):
        s = g_ends[j] - g_firsts[j]
        s += g_low_ends[j]
        s -= g_low_firsts[j]
        mean = s / period
        gain = g_now[j] if g_last[j] == g_first[j] else mean
        s = l_ends[j] - l_firsts[j]
        s += l_low_ends[j]
        s -= l_low_firsts[j]
        mean = s / period
        loss = l_now[j] if l_last[j] == l_first[j] else mean
        r = 100.0 - 100.0 / (1.0 + gain / loss)
        r = 100.0 if loss == 0 and gain > 0 else r
        values[j] = 50.0 if loss == 0 and gain == 0 else r


_sign = numba.njit(inline="always")(_sign)
_band_step = numba.njit(inline="always")(_band_step)
_window_sum = numba.njit(inline="always")(_window_sum)
_mean_at = numba.njit(inline="always")(_mean_at)
_band = numba.njit(inline="always")(_band)
_bollinger_events = numba.njit(nogil=True, error_model="numpy")(_bollinger_events)
_rsi_values = numba.njit(nogil=True, error_model="numpy")(_rsi_values)
_rsi_mid = numba.njit(inline="always")(_rsi_mid)
_rsi_events = numba.njit(nogil=True, error_model="numpy")(_rsi_events)
_hold_events = numba.njit(nogil=True)(_hold_events)
bollinger = _compiled(_bollinger)
rsi_states = _compiled(_rsi_states, error_model="numpy")


def warm() -> None:
    """Load (or compile) the kernels for the argument types the engine passes, on a few bars.
    A process that forks job processes (the worker) may call it first, so they inherit the
    machine code instead of each loading it from the cache."""
    prices = np.full(3, 100.0)
    for positions in (np.zeros(3, dtype=np.int8), np.zeros(3)):
        run(prices, prices, positions, None, 0.0)
        run(prices, prices, positions, np.full(3, np.nan), 0.0)
    crossover(
        prices, np.zeros(4), np.zeros(4), np.zeros(3, dtype=np.int64), 1, 2, 1e-12, True, np.empty(3, dtype=np.int8)
    )
    sweep(prices, prices, prices, prices, 1, 0.01, 1, 0, np.empty(3, dtype=np.int8), np.empty(3))
    sums = [np.zeros(4)] * 6  # the (high, low) prefix pairs of the values, deviations and squares
    bollinger(prices, *sums, np.zeros(3, dtype=np.int64), 2, 1.0, 0, 1e-12, np.empty(3))
    counts = np.zeros(3, dtype=np.int64)
    rsi_states(prices, *sums[:2], counts, prices, *sums[:2], counts, 2, 70.0, 30.0, 0, 1e-12, np.empty(3))
    log_ndtr(np.zeros(2))  # the optimiser's TPE sampler (`optimise.compiled_tpe_normal`)


def _ndtr_one(a):
    """Optuna's `_truncnorm._ndtr_single`: the standard normal CDF at `a`, the same operations."""
    x = a / 2**0.5
    if x < -1 / 2**0.5:
        return 0.5 * math.erfc(-x)
    if x < 1 / 2**0.5:
        return 0.5 + 0.5 * math.erf(x)
    return 1.0 - 0.5 * math.erfc(x)


_ndtr_one = numba.njit(inline="always")(_ndtr_one)


def _log_ndtr_flat(a, out, two):
    """Optuna's `_truncnorm._log_ndtr_single` on each value of `a`, the same operations in the
    same order (libm's erf, erfc, log and pow, as Python calls them). `two` is 2.0: Python's
    `a**2` is libm's pow, which differs from a·a in the last bit for some values, and LLVM turns
    a constant exponent into that multiplication."""
    eps = np.finfo(np.float64).eps
    for j in range(len(a)):
        v = a[j]
        if v > 6:
            out[j] = -_ndtr_one(-v)
            continue
        if v > -20:
            out[j] = math.log(_ndtr_one(v))
            continue
        log_lhs = -0.5 * v**two - math.log(-v) - 0.5 * math.log(2 * math.pi)
        last_total = 0.0
        right_hand_side = 1.0
        numerator = 1.0
        denom_factor = 1.0
        denom_cons = 1 / v**two
        sign = 1
        i = 0
        while abs(last_total - right_hand_side) > eps:
            i += 1
            last_total = right_hand_side
            sign = -sign
            denom_factor *= denom_cons
            numerator *= 2 * i - 1
            right_hand_side += sign * numerator * denom_factor
        out[j] = log_lhs + math.log(right_hand_side)


log_ndtr_flat = _compiled(_log_ndtr_flat)


def log_ndtr(a: np.ndarray) -> np.ndarray:
    """The log of the standard normal CDF, elementwise: Optuna's TPE `_truncnorm._log_ndtr`
    (a Python function called per value, most of a TPE sample's time) compiled, equal to the
    last bit (`tests/engine/test_optimise_speed.py`). `optimise` puts it in Optuna's place."""
    values = np.ascontiguousarray(a, dtype=np.float64)
    out = np.empty(values.shape)
    log_ndtr_flat(values.reshape(-1), out.reshape(-1), 2.0)
    return out
