"""The registry of job kinds. The queue and execution layers look kinds up here and know
nothing else about what a kind does."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from app.execution.context import JobContext
    from app.settings import Settings


class Handler(Protocol):
    def __call__(self, ctx: JobContext) -> None: ...


@dataclass(frozen=True)
class JobKind:
    """A kind of job. Its limits (max attempts, hard timeout, stall timeout) are settings:
    `<kind>_max_attempts`, `<kind>_timeout_s`, `<kind>_stall_timeout_s`."""

    name: str
    handler: str  # dotted path "module:function"; imported lazily in the job process

    def load_handler(self) -> Handler:
        module, _, attr = self.handler.partition(":")
        return getattr(importlib.import_module(module), attr)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("training", "app.training.job:run_training_job"),
        JobKind("smoke", "app.smoke:run_smoke_job"),
    )
}


@dataclass(frozen=True)
class Limits:
    max_attempts: int
    timeout_s: int  # hard limit for one attempt
    stall_timeout_s: int  # no progress for this long: the attempt is stalled


def limits(settings: Settings, kind: str) -> Limits:
    get_kind(kind)
    return Limits(
        getattr(settings, f"{kind}_max_attempts"),
        getattr(settings, f"{kind}_timeout_s"),
        getattr(settings, f"{kind}_stall_timeout_s"),
    )


class UnknownKind(KeyError):
    pass


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None
