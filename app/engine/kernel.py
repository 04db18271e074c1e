"""The backtest and its metrics in one compiled call: positions in; equity, trades and the
metrics' sums out (the model is `backtest`'s; docs/backtesting.md explains it).

`simulate` and `metrics_of` in `backtest` compute the same with whole-array NumPy operations,
each reading and writing every bar again; this walks the bars once, bar by bar, with the same
arithmetic in the same order, so the equity, the trades, the drawdown, the exposure and the
win rate are the NumPy path's to the last bit. The Sharpe ratio's mean and standard deviation
come from compensated sums (Neumaier) instead of NumPy's pairwise ones: they agree to ~1e-13
relative. Tests compare the two paths on random markets, ruin, flat prices, gaps and stops.

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
    returns, the sum of their squared deviations from it)."""
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
    for i in range(n):
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
                    zero_from, checked = i, i + 1
                    break
            else:
                ratio = o / p0
                ret = side * (ratio - 1.0) - c * (1.0 + ratio)
                entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, i, side, p0
                exit_price[k], stopped[k] = o, False
                k += 1
                if 1.0 + ret <= 0.0:  # the exit's cost took the rest
                    ret_of[k - 1] = -1.0
                    zero_from, checked = i, i + 1
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
            continue
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
                zero_from, checked = i, i + 1
                break
            ret_of[k - 1], stopped[k - 1] = ret, True
            growth *= 1.0 + ret
            equity[i] = growth
            side = 0.0
            continue
        m = close[i] / p0
        m -= 1.0
        m *= side
        m += keep
        if m <= 0.0:  # marked at the close: ruin
            entry[k], exit_[k], side_of[k], entry_price[k] = first_bar, i + 1, side, p0
            exit_price[k], ret_of[k], stopped[k] = close[i], -1.0, False
            k += 1
            zero_from, checked = i, i + 1
            break
        equity[i] = growth * m
    else:
        if side != 0.0:  # the backtest ends flat: closed at the last close
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
    # Per-bar returns (equity over the previous close, from 1; 0 after ruin), drawdown, and the
    # compensated sums of the returns and their squares per segment (the bars before the first
    # block, then each block), whose compensated sum is the whole run's.
    prev, peak, max_dd = 1.0, 1.0, 0.0
    floor = _dd_floor(peak, max_dd)
    s1, e1, s2, e2 = 0.0, 0.0, 0.0, 0.0
    n_blocks = blocks.shape[0]
    size = n // n_blocks
    skipped = n - size * n_blocks if size >= 2 else n  # returns before the first block
    blocks[:, :] = 0.0
    for b in range(-1, n_blocks if size >= 2 else 0):
        lo = 0 if b < 0 else skipped + b * size
        hi = skipped if b < 0 else lo + size
        b1, f1, b2, f2 = 0.0, 0.0, 0.0, 0.0
        for i in range(lo, hi):
            e = equity[i]
            r = e / prev - 1.0 if prev > 0.0 else 0.0
            prev = e
            if e > peak:
                peak = e
                floor = _dd_floor(peak, max_dd)
            elif e < floor:  # above the floor the drawdown cannot beat max_dd: no division
                dd = 1.0 - e / peak
                if dd > max_dd:
                    max_dd = dd
                    floor = _dd_floor(peak, max_dd)
            t = b1 + r
            f1 += (b1 - t) + r if abs(b1) >= abs(r) else (r - t) + b1
            b1 = t
            q = r * r
            t = b2 + q
            f2 += (b2 - t) + q if b2 >= q else (q - t) + b2
            b2 = t
        b1 += f1
        b2 += f2
        # The whole run's sums: the segments' compensated sums added up, compensated.
        t = s1 + b1
        e1 += (s1 - t) + b1 if abs(s1) >= abs(b1) else (b1 - t) + s1
        s1 = t
        t = s2 + b2
        e2 += (s2 - t) + b2 if s2 >= b2 else (b2 - t) + s2
        s2 = t
        if b >= 0:
            blocks[b, 0] = size
            blocks[b, 1] = b1
            blocks[b, 2] = b2
    total, squares = s1 + e1, s2 + e2
    mean = total / n
    m2 = 0.0
    if n > 1:
        if total * mean > _CANCELLATION * squares:  # the returns barely vary around their mean: two passes
            prev, s2, e2 = 1.0, 0.0, 0.0
            for i in range(n):
                e = equity[i]
                d = (e / prev - 1.0 if prev > 0.0 else 0.0) - mean
                prev = e
                q = d * d
                t = s2 + q
                e2 += (s2 - t) + q if s2 >= q else (q - t) + s2
                s2 = t
            m2 = s2 + e2
        else:
            m2 = max(squares - total * mean, 0.0)
    return k, -1, held_bars, wins, max_dd, mean, m2


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
    one array instead of four."""
    n = len(x)
    for t in range(min(slow - 1, n)):
        out[t] = 0
    inv_fast, inv_slow = 1.0 / fast, 1.0 / slow
    for t in range(slow - 1, n):
        if nonnegative:
            top = high[t + 1]
            s = (top - high[t + 1 - slow]) * inv_slow
            d = (top - high[t + 1 - fast]) * inv_fast - s
            if abs(d) > rtol * abs(s) * (1.0 + 1e-6) + 8e-16 * top + 1e-14 * abs(s) + 1e-14 * abs(d):
                out[t] = 1 if d > 0 else -1
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
    """`strategies._liquidity_sweep_numpy` in one pass: the prior `lookback`-bar high and low from
    monotonic queues (exact: maxima round nothing), each sweep from `start` on entered at the
    next open unless a trade is still running, its stop searched forward from there."""
    n = len(close)
    for t in range(n):
        positions[t] = 0
        exits[t] = np.nan
    highs = np.empty(n, dtype=np.int64)  # indices of a decreasing run of highs: the window's max first
    lows = np.empty(n, dtype=np.int64)
    h_first, h_end, l_first, l_end = 0, 0, 0, 0
    busy_until = -1
    for t in range(n):
        while h_first < h_end and highs[h_first] < t - lookback:
            h_first += 1
        while l_first < l_end and lows[l_first] < t - lookback:
            l_first += 1
        if t >= lookback and t >= start and t > busy_until and t + 1 < n:
            prior_high, prior_low = high[highs[h_first]], low[lows[l_first]]
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
        while h_end > h_first and high[highs[h_end - 1]] <= high[t]:
            h_end -= 1
        highs[h_end] = t
        h_end += 1
        while l_end > l_first and low[lows[l_end - 1]] >= low[t]:
            l_end -= 1
        lows[l_end] = t
        l_end += 1


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
    """`strategies._bollinger_breakout_numpy` in one pass: `Rolling.mean` and `Rolling.std` of
    each window (the same sums, the same flat-window rule), its bands at ±k deviations, and the
    band events' held states, with no array in between."""
    previous = np.nan
    state = 0.0
    for t in range(len(x)):
        mid, upper, lower = np.nan, np.nan, np.nan
        if t >= window - 1:
            flat = changes[t] == changes[t + 1 - window]
            mid = _window_sum(high, low, t, window) / window
            mean = _window_sum(first_high, first_low, t, window) / window
            var = _window_sum(second_high, second_low, t, window) / window
            mean *= mean
            var -= mean
            sd = math.sqrt(max(var, 0.0))
            if flat:
                mid, sd = x[t], 0.0
            band = k * sd
            upper, lower = mid + band, mid - band
        event, previous = _band_step(x[t], upper, lower, mid, True, previous, rtol)
        if t < start:
            out[t] = 0.0
            continue
        if not np.isnan(event):
            state = event
        out[t] = state


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
    """`strategies._rsi_reversion_numpy` in one pass: `indicators.rsi` from the rolling means
    of the gains and losses (the same sums and rules), and the band events' held states at the
    fixed levels around 50. Division by zero follows IEEE (error_model="numpy") as in NumPy."""
    previous = np.nan
    state = 0.0
    for t in range(len(gains)):
        r, mid = np.nan, np.nan
        if t >= period:
            gain = _mean_at(gains, gain_high, gain_low, gain_changes, t, period)
            loss = _mean_at(losses, loss_high, loss_low, loss_changes, t, period)
            r = 100.0 - 100.0 / (1.0 + gain / loss)
            if loss == 0 and gain > 0:
                r = 100.0
            if loss == 0 and gain == 0:
                r = 50.0
            mid = np.nan if np.isnan(r) else 50.0
        event, previous = _band_step(r, upper, lower, mid, False, previous, rtol)
        if t < start:
            out[t] = 0.0
            continue
        if not np.isnan(event):
            state = event
        out[t] = state


_sign = numba.njit(inline="always")(_sign)
_band_step = numba.njit(inline="always")(_band_step)
_window_sum = numba.njit(inline="always")(_window_sum)
_mean_at = numba.njit(inline="always")(_mean_at)
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
