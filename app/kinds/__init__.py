"""The registry of job kinds. Each kind owns its knowledge in its own module (`training`,
`smoke`): its default limits, how it counts iterations, and its handler. The queue and
execution layers look kinds up here and know nothing else about what a kind does."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.kinds import smoke, training
from app.kinds.limits import Limits

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.execution.context import JobContext
    from app.settings import Settings

# A handler runs one attempt. It may return a writer that stores the result in the same
# transaction that marks the job succeeded.
ResultWriter = Callable[["Session"], None]
Handler = Callable[["JobContext"], ResultWriter | None]

__all__ = ["KINDS", "Handler", "JobKind", "Limits", "ResultWriter", "UnknownKind", "get_kind", "limits"]


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: str  # dotted path "module:function"; the worker imports it before it forks
    defaults: Limits  # overridable per kind in settings (`Settings.kind_limits`)
    count_iterations: Callable[[dict[str, Any]], int | None]  # from the job's params

    def load_handler(self) -> Handler:
        module, _, attr = self.handler.partition(":")
        return getattr(importlib.import_module(module), attr)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(training.NAME, training.HANDLER, training.DEFAULT_LIMITS, training.count_iterations),
        JobKind(smoke.NAME, smoke.HANDLER, smoke.DEFAULT_LIMITS, smoke.count_iterations),
    )
}


def preload() -> None:
    """Import every kind's handler (and the job entrypoint) in the worker before it forks, so a
    job process inherits them instead of paying the imports (NumPy, Optuna: ~0.4 s) per job."""
    import app.execution.runner
    import app.jobs  # noqa: F401

    for kind in KINDS.values():
        kind.load_handler()


class UnknownKind(KeyError):
    pass


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def limits(settings: Settings, kind: str) -> Limits:
    get_kind(kind)
    return settings.kind_limits[kind]
