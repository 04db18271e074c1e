"""Engine errors that retrying cannot fix."""


class TrainingInputError(ValueError):
    """Bad parameters or data: a deterministic failure."""


class UnknownStrategy(TrainingInputError):
    pass


class InvalidParams(TrainingInputError):
    pass


class InvalidCandles(TrainingInputError):
    """A candle the engine cannot trade on: a missing, non-finite or non-positive price, a high
    below a low, times out of order. The message names the bar (index and time) and the field."""


class InvalidPositions(TrainingInputError):
    """Positions that are not one of -1, 0, +1 per candle."""


class StrategyError(TrainingInputError):
    """A strategy's own code raised: the message names the strategy and the error."""


class StrategyUnavailable(TrainingInputError):
    """The strategy a job names is not installed here, or at another version than the job's."""


class InvalidCosts(TrainingInputError):
    pass


class NoViableConfiguration(TrainingInputError):
    """No parameter set met the minimum number of trades with a defined score: nothing worth
    saving. Deterministic for the same data and request, so never retried."""


class StrategyBias(TrainingInputError):
    """A bias check found positions that depend on what they must not (see `bias`). Carries the
    first bar where it showed (index in the data checked, and its open time) and the parameters."""

    def __init__(self, message: str, *, bar: int, time: str, params: dict) -> None:
        super().__init__(message)
        self.bar, self.time, self.params = bar, time, dict(params)


class LookaheadBias(StrategyBias):
    """Positions up to a bar changed when only the bars after it changed: the strategy reads the
    future. Deterministic for the strategy, its parameters and the data: never retried."""


class WarmupTooShort(StrategyBias):
    """Positions changed when more history than the declared warm-up was put in front: the
    strategy's indicators need more history than it says. Never retried."""
