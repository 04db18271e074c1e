"""Engine errors that retrying cannot fix."""


class TrainingInputError(ValueError):
    """Bad parameters or data: a deterministic failure."""


class UnknownStrategy(TrainingInputError):
    pass


class InvalidParams(TrainingInputError):
    pass
