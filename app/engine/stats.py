"""Statistics that account for the search: the Deflated Sharpe Ratio and the Probability of
Backtest Overfitting.

- Deflated Sharpe Ratio (Bailey & López de Prado, 2014): the probability that the true Sharpe
  ratio of the selected strategy is above the Sharpe ratio the best of N skill-less trials
  would show by luck, given the variance of the trials' Sharpe ratios, the skewness and
  kurtosis of the selected strategy's returns and the sample length. All Sharpe ratios here
  are per bar (not annualised).
- Probability of Backtest Overfitting by combinatorially symmetric cross-validation (Bailey,
  Borwein, López de Prado & Zhu, 2015): the time axis is cut into S equal blocks; for every way
  of choosing S/2 blocks as in-sample (the rest out-of-sample), the trial with the best
  in-sample Sharpe is ranked out of sample; PBO is the share of splits where it lands at or
  below the median (logit of its relative rank ≤ 0).

Per-trial returns are summarised per block by (count, sum, sum of squares), which is enough to
compute the Sharpe ratio of any union of blocks exactly without keeping every return.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
CSCV_BLOCKS = 16  # S in the paper; C(16, 8) = 12,870 splits
_NORMAL = NormalDist()
_CHUNK = 1024


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """Simple per-bar returns of an equity curve that starts from 1 before its first bar.
    A bar after equity reached zero (ruin) returns 0."""
    prev = np.r_[1.0, equity[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(prev != 0, equity / prev - 1.0, 0.0)
    return np.where(np.isfinite(out), out, 0.0)


def sharpe(returns: np.ndarray) -> float | None:
    """Per-bar Sharpe ratio (mean over population standard deviation); None if undefined."""
    if len(returns) < 2:
        return None
    sd = float(np.std(returns))
    if not sd > 0:
        return None
    value = float(np.mean(returns)) / sd
    return value if math.isfinite(value) else None


def block_sums(returns: np.ndarray, blocks: int = CSCV_BLOCKS) -> list[list[float]]:
    """[count, sum, sum of squares] of the returns in each of `blocks` equal consecutive blocks
    (the first len % blocks returns are dropped so every block has the same length)."""
    size = len(returns) // blocks
    if size < 2:
        return []
    r = returns[len(returns) - size * blocks :].reshape(blocks, size)
    return [[float(size), float(s), float(q)] for s, q in zip(r.sum(axis=1), (r * r).sum(axis=1), strict=True)]


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR₀: the expected maximum of `n_trials` Sharpe ratios drawn with zero mean and the given
    variance (the false-strategy theorem's approximation)."""
    if n_trials < 2 or sharpe_variance <= 0:
        return 0.0
    n = float(n_trials)
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(sr: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float | None:
    """PSR: P(true SR > benchmark) for an estimate `sr` from `n_obs` returns with the given
    skewness and (non-excess) kurtosis. None when the variance term is not positive."""
    if n_obs < 2:
        return None
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not denom > 0:
        return None
    z = (sr - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)
    return _NORMAL.cdf(z)


def deflated_sharpe(sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, sharpe_variance: float):
    """DSR = PSR(SR₀) with SR₀ the expected best Sharpe of `n_trials` skill-less trials."""
    return probabilistic_sharpe(sr, expected_max_sharpe(n_trials, sharpe_variance), n_obs, skew, kurtosis)


def moments(returns: np.ndarray) -> tuple[float, float] | None:
    """(skewness, non-excess kurtosis) of the returns, population estimates; None if flat."""
    sd = float(np.std(returns))
    if not sd > 0:
        return None
    z = (returns - returns.mean()) / sd
    return float(np.mean(z**3)), float(np.mean(z**4))


def deflated_sharpe_of(returns: np.ndarray, trial_sharpes: list[float], n_trials: int | None = None) -> float | None:
    """DSR of the selected strategy's per-bar returns. N is `n_trials`, every trial run (an
    infeasible trial was still tried: leaving it out would understate the search), defaulting
    to the number of Sharpe ratios given; their variance is that of the trials that have one."""
    sr = sharpe(returns)
    m = moments(returns)
    if sr is None or m is None or not trial_sharpes:
        return None
    variance = float(np.var(trial_sharpes, ddof=1)) if len(trial_sharpes) > 1 else 0.0
    n = max(len(trial_sharpes), n_trials or 0)
    return deflated_sharpe(sr, len(returns), m[0], m[1], n, variance)


@dataclass(frozen=True)
class PBO:
    pbo: float
    n_splits: int
    logits: np.ndarray


def _union_sharpe(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
    mean = sums / counts
    var = np.maximum(squares / counts - mean * mean, 0.0)
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sd > 0, mean / sd, 0.0)
    return out


def pbo(blocks: np.ndarray) -> PBO | None:
    """CSCV over per-trial block sums: `blocks` has shape (trials, S, 3) with S even.
    A union of blocks with no variation has Sharpe 0 for ranking. Ranks are averaged on ties;
    the best in-sample trial is the first of equals. None with fewer than 2 trials."""
    n_trials, s, _ = blocks.shape
    if n_trials < 2 or s < 2 or s % 2:
        return None
    combos = np.array(list(itertools.combinations(range(s), s // 2)))
    counts, sums, squares = blocks[:, :, 0].T, blocks[:, :, 1].T, blocks[:, :, 2].T  # (S, trials)
    logits = np.empty(len(combos))
    for start in range(0, len(combos), _CHUNK):  # bounded memory for many trials
        part = combos[start : start + _CHUNK]
        chosen = np.zeros((len(part), s))
        chosen[np.arange(len(part))[:, None], part] = 1.0
        rest = 1.0 - chosen
        is_sr = _union_sharpe(chosen @ counts, chosen @ sums, chosen @ squares)  # (splits, trials)
        oos_sr = _union_sharpe(rest @ counts, rest @ sums, rest @ squares)
        best = np.argmax(is_sr, axis=1)
        picked = oos_sr[np.arange(len(part)), best][:, None]
        rank = (oos_sr < picked).sum(axis=1) + ((oos_sr == picked).sum(axis=1) + 1) / 2.0
        omega = rank / (n_trials + 1)
        logits[start : start + len(part)] = np.log(omega / (1.0 - omega))
    return PBO(pbo=float(np.mean(logits <= 0)), n_splits=len(combos), logits=logits)
