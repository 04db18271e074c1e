"""What a service answers when a request cannot be carried out, in the service's words.

One base and four kinds; the API maps each kind to its HTTP answer in one place
(`app.api.errors`), the CLI prints the message and exits 1. Services, and routes that read
without a service, raise these rather than an HTTP status.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be carried out; `message` says why, for a person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    """No such job, schedule, configuration… (404)."""


class Conflict(ServiceError):
    """The request conflicts with the resource's state or with another one (409)."""


class InvalidRequest(ServiceError):
    """A well-formed request that cannot be run (e.g. no candles for it) (422). With `field`,
    the answer names it as a validation error does; without, it is the message alone."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class QueueFull(ServiceError):
    """Backpressure: no room for new work now; try again after `retry_after_s` (429)."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s
