"""The registry of job kinds. Each kind owns its knowledge in its own module (`training`,
`smoke`, `candles_refresh`): how it reads its limits from the settings, how it counts iterations, and where its
handler lives. The queue and execution layers look kinds up here and know nothing else about
what a kind does. A leaf: it imports nothing of the service but the settings' type."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.kinds import candles_refresh, smoke, training
from app.kinds.limits import Limits

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ["KINDS", "JobKind", "Limits", "UnknownKind", "get_kind", "limits"]


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: str  # dotted path "module:function"; the worker imports it before it forks
    read_limits: Callable[[Settings], Limits]  # the kind's limits, from its settings
    count_iterations: Callable[[dict[str, Any]], int | None]  # from the job's params

    def load_handler(self) -> Callable[..., Any]:
        """The handler: it runs one attempt with the job's context (`app.execution.runner.Handler`)."""
        module, _, attr = self.handler.partition(":")
        return getattr(importlib.import_module(module), attr)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(training.NAME, training.HANDLER, training.limits, training.count_iterations),
        JobKind(smoke.NAME, smoke.HANDLER, smoke.limits, smoke.count_iterations),
        JobKind(
            candles_refresh.NAME, candles_refresh.HANDLER, candles_refresh.limits, candles_refresh.count_iterations
        ),
    )
}


class UnknownKind(KeyError):
    pass


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def limits(settings: Settings, kind: str) -> Limits:
    return get_kind(kind).read_limits(settings)
