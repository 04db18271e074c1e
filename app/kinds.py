"""The registry of job kinds. The queue and execution layers look kinds up here and know
nothing else about what a kind does."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from app.execution.context import JobContext


class Handler(Protocol):
    def __call__(self, ctx: JobContext) -> None: ...


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: str  # dotted path "module:function"; imported lazily in the job process
    max_attempts: int = 3
    timeout_s: int = 30 * 60  # hard limit for one attempt
    stall_timeout_s: int = 5 * 60  # no progress for this long: the attempt is stalled

    def load_handler(self) -> Handler:
        module, _, attr = self.handler.partition(":")
        return getattr(importlib.import_module(module), attr)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("training", "app.training.job:run_training_job"),
        JobKind("smoke", "app.smoke:run_smoke_job", max_attempts=2, timeout_s=120, stall_timeout_s=60),
    )
}


class UnknownKind(KeyError):
    pass


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None
