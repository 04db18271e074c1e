"""A whole training run: data preparation, optimisation, validation. The caller saves the
result (the fourth phase) and supplies hooks for progress, trial persistence and stopping.

Two validation modes: `holdout` (optimise and choose on the head; the held-out tail scores the
one chosen configuration once) and `walk_forward` (each window re-optimised on its in-sample
range and run on the out-of-sample range after it; the stitched out-of-sample result is the
answer). Every range is scored with the strategy's warm-up of history in front (`ranges`), so
no evaluation starts with cold indicators. Before the result is returned, the chosen parameters
(every window's, in walk-forward) pass the look-ahead and warm-up bias checks (`bias`) on all
the bars, or the run fails with `LookaheadBias` / `WarmupTooShort`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from app.engine import bias, stats
from app.engine.backtest import MIN_ANNUALISED_DAYS, Costs, backtest
from app.engine.benchmark import buy_and_hold, excess
from app.engine.candles import TIMEFRAMES, Candles, resample
from app.engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from app.engine.errors import NoViableConfiguration, TrainingInputError
from app.engine.optimise import (
    OBJECTIVES,
    OptimisationResult,
    TrialRecord,
    block_matrix,
    optimise,
    score_of,
    trial_sharpes,
)
from app.engine.ranges import ScoredRange, for_strategy
from app.engine.registry import get_strategy
from app.engine.report import Evidence, equity_curve, judge, stitch, trade_list
from app.engine.strategy import Strategy
from app.engine.validate import TOP_K, choose, scaled_min_trades, split_at
from app.engine.walkforward import Window, windows

MIN_BARS = 200
VALIDATION_MODES = ("holdout", "walk_forward")
# Minimum trades over the training window (each in-sample window in walk-forward) by timeframe:
# about 30 trades makes a Sharpe estimate worth reading; higher timeframes have far fewer bars
# for the same history, so they ask for fewer.
DEFAULT_MIN_TRADES: dict[str, int] = {"1m": 30, "5m": 30, "15m": 30, "1h": 30, "4h": 20, "1d": 10}


@dataclass(frozen=True)
class TrainingSpec:
    strategy: str
    symbol: str
    timeframe: str
    n_iterations: int
    seed: int
    objective: str = "sharpe"
    holdout_fraction: float = 0.2
    folds: int = 0
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    min_trades: int | None = None
    validation_mode: str = "holdout"
    windows: int = 5
    anchored: bool = False
    # Per parameter, a fixed value or a narrowed range the search keeps to (`Strategy.narrowed`).
    params: dict[str, Any] | None = None

    @property
    def required_trades(self) -> int:
        return self.min_trades if self.min_trades is not None else DEFAULT_MIN_TRADES[self.timeframe]

    @property
    def total_iterations(self) -> int:
        return self.n_iterations * (self.windows if self.validation_mode == "walk_forward" else 1)


# What a training job gets for each parameter its request leaves out: the one place they are
# written (the start's schema and the job's spec read them from here).
SPEC_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainingSpec) if f.default is not MISSING}


class TrainingHooks(Protocol):
    def progress(
        self,
        phase: str,
        fraction: float,
        message: str,
        *,
        iteration: int | None = None,
        best_score: float | None = None,
        eta_seconds: float | None = None,
    ) -> None: ...

    def completed_trials(self) -> list[TrialRecord]: ...

    def save_trial(self, trial: TrialRecord) -> None: ...

    def check(self) -> None: ...


@dataclass
class TrainingOutcome:
    params: dict[str, Any]
    score: float | None
    train_metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    overfit: bool
    overfit_reason: str | None
    n_bars: int
    n_trials: int
    folds: dict[str, Any]
    train_range_ms: list[int]
    validation_range_ms: list[int]
    data_start_ms: int
    data_end_ms: int
    validation_mode: str = "holdout"
    min_trades: int = 1
    equity_curve: dict[str, list] = field(default_factory=dict)
    validation_start_ms: int | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    benchmark_metrics: dict[str, Any] = field(default_factory=dict)
    excess: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    param_importances: dict[str, float] = field(default_factory=dict)
    bias_checks: dict[str, Any] = field(default_factory=dict)


def no_viable(trials: list[TrialRecord], min_trades: int, where: str) -> NoViableConfiguration:
    """The error for a search with no feasible trial, saying what was tried and why it failed."""
    reasons = Counter(
        "invalid parameters"
        if (t.reason or "").startswith("invalid")
        else "too few trades"
        if "fewer than" in (t.reason or "")
        else (t.reason or "undefined score")
        for t in trials
        if not t.feasible
    )
    most = max((int(t.metrics.get("n_trades") or 0) for t in trials), default=0)
    why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
    return NoViableConfiguration(
        f"no viable configuration {where}: {len(trials)} trials tried, "
        f"{sum(reasons.values())} infeasible ({why}); the most trades any trial made was {most}, "
        f"the minimum is {min_trades}. Try a longer range, a lower min_trades or another strategy."
    )


def thin_evidence(metrics: dict[str, Any], needed: int) -> str | None:
    """Words for an out-of-sample result with fewer trades than the training density implies."""
    made = int(metrics.get("n_trades") or 0)
    if made >= needed:
        return None
    return f"only {made} trades out of sample, fewer than the {needed} the training minimum implies: too few to judge"


def _search_statistics(result: OptimisationResult, returns: np.ndarray) -> tuple[float | None, float | None]:
    """(DSR of the selected returns allowing for every trial run, PBO by CSCV of the feasible ones)."""
    dsr = stats.deflated_sharpe_of(returns, trial_sharpes(result.trials), len(result.trials))
    matrix = block_matrix(result.trials)
    found = stats.pbo(matrix) if matrix is not None else None
    return dsr, (found.pbo if found else None)


def _evidence(open_time, strategy, benchmark, validation_start_ms, verdict, importances) -> dict[str, Any]:
    """What a result shows beside its metrics: the curve of strategy and buy-and-hold over the
    trained range, the out-of-sample trades, the benchmark and excess, and the statistics.
    `strategy` and `benchmark` are (in-sample, out-of-sample) backtests."""
    (train_bt, test_bt), (bench_train, bench_test) = strategy, benchmark
    return dict(
        equity_curve=equity_curve(
            open_time, stitch([train_bt.equity, test_bt.equity]), stitch([bench_train.equity, bench_test.equity])
        ),
        validation_start_ms=validation_start_ms,
        trades=trade_list(test_bt),
        benchmark_metrics={"train": bench_train.metrics, "validation": bench_test.metrics},
        excess={
            "train": excess(train_bt.metrics, bench_train.metrics),
            "validation": excess(test_bt.metrics, bench_test.metrics),
        },
        statistics=verdict.as_dict(),
        param_importances=importances,
    )


class _Run:
    def __init__(self, spec: TrainingSpec, data: Candles, hooks: TrainingHooks) -> None:
        self.spec, self.data, self.hooks = spec, data, hooks
        self.strategy: Strategy = get_strategy(spec.strategy).narrowed(spec.params)
        self.costs = Costs(spec.fee_bps, spec.slippage_bps)
        self.min_trades = spec.required_trades
        self.completed = hooks.completed_trials()
        self.started = time.monotonic()
        self.first = len(self.completed)
        self.done = len(self.completed)
        self.best = max((t.score for t in self.completed if t.score is not None), default=None)

    def search(self, train: ScoredRange, window: int, label: str) -> OptimisationResult:
        spec, total = self.spec, self.spec.total_iterations
        days = train.bars.span_years * 365.25
        if spec.objective == "calmar" and days < MIN_ANNUALISED_DAYS:
            where = f"window {window + 1}'s in-sample range" if label else "the training range"
            raise TrainingInputError(
                f"the calmar objective needs at least {MIN_ANNUALISED_DAYS} days to annualise, and {where} spans "
                f"{days:.1f} days: use sharpe or total_return, or a longer range"
            )
        mine = [t for t in self.completed if t.window == window]

        def on_trial(trial: TrialRecord) -> None:
            self.hooks.save_trial(trial)
            if trial.score is not None and (self.best is None or trial.score > self.best):
                self.best = trial.score
            self.done += 1
            rate = (time.monotonic() - self.started) / max(1, self.done - self.first)
            in_window = trial.number - window * spec.n_iterations + 1
            self.hooks.progress(
                "optimisation",
                self.done / total,
                f"{label}trial {in_window} of {spec.n_iterations}",
                iteration=self.done,
                best_score=self.best,
                eta_seconds=rate * (total - self.done),
            )

        result = optimise(
            train,
            self.strategy,
            n_iterations=spec.n_iterations,
            seed=spec.seed,
            objective=spec.objective,
            costs=self.costs,
            completed=mine,
            on_trial=on_trial,
            should_stop=self.hooks.check,
            min_trades=self.min_trades,
            window=window,
            first_number=window * spec.n_iterations,
        )
        if not result.feasible():
            where = f"in window {window + 1}" if label else "in training"
            raise no_viable(result.trials, self.min_trades, where)
        return result

    def common(self, outcome: TrainingOutcome) -> TrainingOutcome:
        outcome.n_bars = len(self.data)
        outcome.data_start_ms = int(self.data.open_time[0])
        outcome.data_end_ms = int(self.data.open_time[-1])
        outcome.min_trades = self.min_trades
        outcome.validation_mode = self.spec.validation_mode
        return outcome

    def check_bias(self, param_sets: list[dict[str, Any]], fraction: float) -> dict[str, Any]:
        """The bias checks on the chosen parameters over all the bars (raises on a bias)."""
        self.hooks.check()
        self.hooks.progress("validation", fraction, "checking the chosen parameters for look-ahead and warm-up bias")
        report = bias.check_all(self.strategy, self.data, param_sets, seed=self.spec.seed, should_stop=self.hooks.check)
        return report.as_dict()

    def scored(self, first: int, end: int) -> ScoredRange:
        return for_strategy(self.data, first, end, self.strategy)

    def run(self, scored: ScoredRange, params: dict[str, Any]):
        return scored.backtest(self.strategy, params, self.costs)

    def holdout(self) -> TrainingOutcome:
        spec, hooks, data = self.spec, self.hooks, self.data
        cut = split_at(len(data), spec.holdout_fraction)
        train, holdout = self.scored(0, cut), self.scored(cut, len(data))
        hooks.progress("data_preparation", 1.0, f"{len(train)} training and {len(holdout)} validation bars")
        hooks.check()
        result = self.search(train, 0, "")

        hooks.check()
        hooks.progress("validation", 0.0, "scoring the chosen configuration on the holdout")
        chosen = choose(
            data,
            cut,
            self.strategy,
            result.top(TOP_K),
            objective=spec.objective,
            costs=self.costs,
            folds=spec.folds,
            should_stop=hooks.check,
        )
        checked = self.check_bias([chosen.params], 0.5)
        hooks.check()
        train_bt, val_bt = self.run(train, chosen.params), self.run(holdout, chosen.params)
        bench_train, bench_val = buy_and_hold(train.bars, self.costs), buy_and_hold(holdout.bars, self.costs)
        dsr, pbo = _search_statistics(result, stats.bar_returns(train_bt.equity))
        verdict = judge(
            Evidence(
                train=train_bt.metrics,
                train_benchmark=bench_train.metrics,
                validation=val_bt.metrics,
                validation_benchmark=bench_val.metrics,
                n_trials=len(result.trials),
                n_feasible=len(result.feasible()),
                deflated_sharpe=dsr,
                dsr_trials=len(result.trials),
                pbo=pbo,
                thin=thin_evidence(val_bt.metrics, scaled_min_trades(self.min_trades, len(holdout), len(train))),
            )
        )
        hooks.progress("validation", 1.0, verdict.verdict.split(":", 1)[0])
        return self.common(
            TrainingOutcome(
                params=chosen.params,
                score=score_of(val_bt.metrics, spec.objective),
                train_metrics=train_bt.metrics,
                validation_metrics=val_bt.metrics,
                overfit=verdict.overfit,
                overfit_reason=verdict.reason,
                n_bars=0,
                n_trials=len(result.trials),
                folds={"k": spec.folds, "scores": chosen.fold_scores, "candidates": chosen.candidates},
                train_range_ms=[int(train.bars.open_time[0]), int(train.bars.open_time[-1])],
                validation_range_ms=[int(holdout.bars.open_time[0]), int(holdout.bars.open_time[-1])],
                data_start_ms=0,
                data_end_ms=0,
                bias_checks=checked,
                **_evidence(
                    data.open_time,
                    (train_bt, val_bt),
                    (bench_train, bench_val),
                    int(holdout.bars.open_time[0]),
                    verdict,
                    result.importances,
                ),
            )
        )

    def walk_forward(self) -> TrainingOutcome:
        spec, hooks, data = self.spec, self.hooks, self.data
        plan = windows(len(data), spec.windows, spec.anchored)
        if min(w.out_of_sample[1] - w.out_of_sample[0] for w in plan) < 2:
            raise TrainingInputError(f"{len(data)} bars is too few for {spec.windows} walk-forward windows")
        hooks.progress("data_preparation", 1.0, f"{len(data)} bars in {spec.windows} walk-forward windows")
        rows: list[dict[str, Any]] = []
        positions: list[np.ndarray] = []
        exits: list[np.ndarray] = []
        last: tuple[OptimisationResult, TrialRecord, Window] | None = None
        pbos, all_trials, all_feasible = [], 0, 0
        for w in plan:
            hooks.check()
            train = self.scored(*w.in_sample)
            result = self.search(train, w.index, f"window {w.index + 1} of {spec.windows}: ")
            best = result.top(1)[0]
            oos = self.scored(*w.out_of_sample)
            oos_positions, oos_exits = oos.orders(self.strategy, best.params)
            oos_exits = np.full(len(oos), np.nan) if oos_exits is None else oos_exits
            oos_bt = backtest(oos.bars, oos_positions, self.costs, oos_exits)
            is_bt = self.run(train, best.params)
            dsr, pbo = _search_statistics(result, stats.bar_returns(is_bt.equity))
            if pbo is not None:
                pbos.append(pbo)
            all_trials += len(result.trials)
            all_feasible += len(result.feasible())
            positions.append(oos_positions)
            exits.append(oos_exits)
            rows.append(
                {
                    "index": w.index,
                    "in_sample_start": int(data.open_time[w.in_sample[0]]),
                    "in_sample_end": int(data.open_time[w.in_sample[1] - 1]),
                    "out_of_sample_start": int(oos.bars.open_time[0]),
                    "out_of_sample_end": int(oos.bars.open_time[-1]),
                    "params": best.params,
                    "in_sample_score": best.score,
                    "out_of_sample_score": score_of(oos_bt.metrics, spec.objective),
                    "in_sample_trades": int(best.metrics.get("n_trades") or 0),
                    "out_of_sample_trades": int(oos_bt.metrics.get("n_trades") or 0),
                    "deflated_sharpe": dsr,
                    "pbo": pbo,
                }
            )
            last = (result, best, w)
        checked = self.check_bias([r["params"] for r in rows], 0.0)
        hooks.check()
        hooks.progress("validation", 0.0, "stitching the out-of-sample windows")
        assert last is not None
        result, best, w_last = last
        first_oos, end = plan[0].out_of_sample[0], plan[-1].out_of_sample[1]
        oos_all = data[first_oos:end]
        oos_bt = backtest(oos_all, np.concatenate(positions), self.costs, np.concatenate(exits))
        head = self.scored(0, first_oos)
        head_bt = self.run(head, rows[0]["params"])
        last_is = self.scored(*w_last.in_sample)
        last_is_bt = self.run(last_is, best.params)
        bench_train, bench_oos = buy_and_hold(head.bars, self.costs), buy_and_hold(oos_all, self.costs)
        is_scores = [r["in_sample_score"] for r in rows]
        oos_scores = [r["out_of_sample_score"] for r in rows]
        wfe = None
        if all(s is not None for s in oos_scores) and float(np.mean(is_scores)) > 0:
            wfe = float(np.mean(oos_scores)) / float(np.mean(is_scores))
        pbo = float(np.mean(pbos)) if pbos else None
        needed = scaled_min_trades(self.min_trades, len(oos_all), len(last_is))
        verdict = judge(
            Evidence(
                train=last_is_bt.metrics,
                train_benchmark=buy_and_hold(last_is.bars, self.costs).metrics,
                validation=oos_bt.metrics,
                validation_benchmark=bench_oos.metrics,
                n_trials=all_trials,
                n_feasible=all_feasible,
                deflated_sharpe=rows[-1]["deflated_sharpe"],
                dsr_trials=len(result.trials),
                pbo=pbo,
                wfe=wfe,
                thin=thin_evidence(oos_bt.metrics, needed),
            )
        )
        hooks.progress("validation", 1.0, verdict.verdict.split(":", 1)[0])
        return self.common(
            TrainingOutcome(
                params=best.params,
                score=score_of(oos_bt.metrics, spec.objective),
                train_metrics=last_is_bt.metrics,
                validation_metrics=oos_bt.metrics,
                overfit=verdict.overfit,
                overfit_reason=verdict.reason,
                n_bars=0,
                n_trials=all_trials,
                folds={"k": 0, "scores": [], "candidates": []},
                train_range_ms=[int(last_is.bars.open_time[0]), int(last_is.bars.open_time[-1])],
                validation_range_ms=[int(oos_all.open_time[0]), int(oos_all.open_time[-1])],
                data_start_ms=0,
                data_end_ms=0,
                windows=rows,
                bias_checks=checked,
                **_evidence(
                    data.open_time[:end],
                    (head_bt, oos_bt),
                    (bench_train, bench_oos),
                    int(oos_all.open_time[0]),
                    verdict,
                    result.importances,
                ),
            )
        )


def run_training(spec: TrainingSpec, candles: Candles, hooks: TrainingHooks) -> TrainingOutcome:
    get_strategy(spec.strategy).narrowed(spec.params)
    if spec.objective not in OBJECTIVES:
        raise TrainingInputError(f"unknown objective {spec.objective!r}")
    if spec.timeframe not in TIMEFRAMES:
        raise TrainingInputError(f"unknown timeframe {spec.timeframe!r}")
    if spec.validation_mode not in VALIDATION_MODES:
        raise TrainingInputError(f"unknown validation mode {spec.validation_mode!r}")

    # Phase 1: data preparation.
    hooks.check()
    data = resample(candles, spec.timeframe) if candles.timeframe != spec.timeframe else candles
    if len(data) < MIN_BARS:
        raise TrainingInputError(f"{len(data)} {spec.timeframe} bars is too few to train on (need {MIN_BARS})")
    run = _Run(spec, data, hooks)
    return run.walk_forward() if spec.validation_mode == "walk_forward" else run.holdout()
