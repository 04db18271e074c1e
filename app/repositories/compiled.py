"""SQLAlchemy statements compiled once to the driver's SQL, for the paths that send them with
psycopg straight from the event loop (`app.loop_pool`).

A statement is written with SQLAlchemy as everywhere else, compiled here once for the psycopg
dialect, and then sent by the driver with a request's parameters: no statement built, cached
or compiled per request. `params` applies the bind processors SQLAlchemy itself would (a JSONB
value wrapped for the driver), so what reaches PostgreSQL is what the ORM path sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.sql import ClauseElement

_DIALECT = psycopg_dialect()


@dataclass(frozen=True)
class Compiled:
    sql: str
    constants: dict[str, Any]  # parameters fixed when the statement was written (e.g. a status)
    processors: dict[str, Callable[[Any], Any]]

    def params(self, **values: Any) -> dict[str, Any]:
        """The statement's parameters for one execution: its constants and `values`, each
        converted for the driver as SQLAlchemy would."""
        params = {**self.constants, **values}
        for key, process in self.processors.items():
            if params.get(key) is not None:
                params[key] = process(params[key])
        return params


def compile_statement(stmt: ClauseElement) -> Compiled:
    """Compile `stmt` for psycopg. A `bindparam` needs a value (or a type) while the statement
    is compiled; a request gives its own through `Compiled.params`."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    processors = {}
    for name, bind in compiled.binds.items():  # each parameter's type, as the dialect implements it
        process = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
        if process is not None:
            processors[name] = process
    return Compiled(str(compiled), dict(compiled.params), processors)
