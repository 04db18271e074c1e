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
