"""Why an attempt stopped. Each exception maps to one way of ending an attempt."""

from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError

# Errors that a wait or another attempt may cure: the database connection or Redis went away,
# or a call timed out. A DataError, IntegrityError or ProgrammingError will fail the same way
# again: it is not among them.
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class TransientJobError(Exception):
    """A failure of the job's own that another attempt may cure (e.g. an exchange that did not
    answer within its retry budget): retried with backoff while the job's attempts last."""


TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    *TRANSIENT_DB_ERRORS,
    RedisError,
    ConnectionError,
    TimeoutError,
    TransientJobError,
)


class AttemptStopped(Exception):
    """Base of the controlled stops raised from JobContext.check()."""


class Canceled(AttemptStopped):
    """The user asked to cancel: the job ends `canceled`."""


class Preempted(AttemptStopped):
    """The worker is stopping (SIGTERM): checkpoint, re-queue at the front, no attempt used up."""


class WorkerLost(AttemptStopped):
    """The worker process that forked this job is gone."""


class Fenced(AttemptStopped):
    """This attempt is no longer the job's current attempt (the reaper gave the job to another)."""


class Stalled(Exception):
    """No progress for longer than the kind's stall timeout."""


class AttemptTimeout(Exception):
    """The attempt ran longer than the kind's hard timeout."""


class JobInputError(Exception):
    """A deterministic failure (bad parameters, no data): retrying cannot help."""
