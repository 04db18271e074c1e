"""The statistics of the search against independent computations: the Deflated Sharpe Ratio's
worked example (Bailey & López de Prado, 2014) recomputed with SciPy, and PBO by CSCV against a
brute-force loop over every split of the raw return matrix (Bailey, Borwein, López de Prado &
Zhu, 2015)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from app.engine import stats


def test_deflated_sharpe_matches_the_papers_worked_example():
    # The paper's example: annualised SR 2.5 over 1,250 daily returns (250 a year), 100 trials
    # whose annualised Sharpe ratios have variance 0.5, skewness -3, kurtosis 10 → DSR ≈ 0.9004.
    sr, t, n, skew, kurt = 2.5 / math.sqrt(250), 1250, 100, -3.0, 10.0
    variance = 0.5 / 250
    gamma = np.euler_gamma
    sr0 = math.sqrt(variance) * ((1 - gamma) * sps.norm.ppf(1 - 1 / n) + gamma * sps.norm.ppf(1 - 1 / (n * math.e)))
    expected = sps.norm.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert expected == pytest.approx(0.9004, abs=5e-5)
    assert stats.expected_max_sharpe(n, variance) == pytest.approx(sr0, rel=1e-9)
    assert stats.deflated_sharpe(sr, t, skew, kurt, n, variance) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 300))
def test_deflated_sharpe_of_returns_matches_scipy_moments(seed, n_trials):
    rng = np.random.default_rng(seed)
    returns = rng.standard_t(5, 500) * 0.01 + 0.001
    trial_sharpes = list(rng.normal(0, 0.05, n_trials))
    sr = returns.mean() / returns.std()
    skew, kurt = sps.skew(returns), sps.kurtosis(returns, fisher=False)
    var = np.var(trial_sharpes, ddof=1)
    g = np.euler_gamma
    sr0 = math.sqrt(var) * ((1 - g) * sps.norm.ppf(1 - 1 / n_trials) + g * sps.norm.ppf(1 - 1 / (n_trials * math.e)))
    z = (sr - sr0) * math.sqrt(len(returns) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert stats.deflated_sharpe_of(returns, trial_sharpes) == pytest.approx(sps.norm.cdf(z), abs=1e-9)


def test_deflated_sharpe_is_undefined_for_flat_returns():
    assert stats.deflated_sharpe_of(np.zeros(100), [0.1, 0.2]) is None


def brute_force_pbo(matrix: np.ndarray, s: int) -> float:
    """CSCV straight from the paper on a T×N return matrix: every split of S blocks in halves."""
    t, n = matrix.shape
    size = t // s
    m = matrix[t - size * s :]
    blocks = [m[i * size : (i + 1) * size] for i in range(s)]
    below = 0
    combos = list(itertools.combinations(range(s), s // 2))
    for combo in combos:
        train = np.vstack([blocks[i] for i in combo])
        test = np.vstack([blocks[i] for i in range(s) if i not in combo])

        def perf(x):
            sd = x.std(axis=0)
            return np.where(sd > 0, x.mean(axis=0) / np.where(sd > 0, sd, 1), 0.0)

        best = int(np.argmax(perf(train)))
        rank = sps.rankdata(perf(test))[best]
        omega = rank / (n + 1)
        below += math.log(omega / (1 - omega)) <= 0
    return below / len(combos)


def as_blocks(matrix: np.ndarray, s: int) -> np.ndarray:
    return np.array([stats.block_sums(matrix[:, j], s) for j in range(matrix.shape[1])])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 12), st.sampled_from([2, 4, 6, 8]), st.integers(0, 3))
def test_pbo_matches_brute_force_cscv(seed, n_trials, s, skill):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0, 0.01, (s * 40 + 3, n_trials))
    matrix[:, 0] += skill * 0.002  # sometimes one trial is really better
    found = stats.pbo(as_blocks(matrix, s))
    assert found is not None and found.n_splits == math.comb(s, s // 2)
    assert found.pbo == pytest.approx(brute_force_pbo(matrix, s), abs=1e-12)


def test_pbo_is_zero_when_one_trial_dominates_and_near_half_for_noise():
    rng = np.random.default_rng(1)
    good = rng.normal(0, 0.01, (1600, 20))
    good[:, 3] += 0.01
    assert stats.pbo(as_blocks(good, 16)).pbo == 0.0
    # Pure noise: the in-sample winner is a coin flip out of sample.
    noise = stats.pbo(as_blocks(rng.normal(0, 0.01, (1600, 20)), 16)).pbo
    assert 0.25 < noise < 0.75


def test_pbo_needs_two_trials():
    assert stats.pbo(np.ones((1, 16, 3))) is None


def test_bar_returns_survive_ruin():
    assert stats.bar_returns(np.array([1.1, 0.0, 0.0])).tolist() == pytest.approx([0.1, -1.0, 0.0])
