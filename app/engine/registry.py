"""The installed strategies: every entry point of the `trad.strategies` group, trad's own four
included (its `pyproject.toml` declares them the same way), each with the distribution (package
name and version) that declared it.

An entry point that fails to import, is not a `Strategy`, is named differently from its
strategy, or whose space, defaults or warm-up do not hold together is left out and kept in
`broken` with the reason; `log_broken` writes one ERROR line per such strategy (the API and
the workers call it at start). The others stay usable. Without trad's own strategies (trad is
then not installed as a distribution: its entry points are its metadata) `load` fails, saying so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata

from app.engine.errors import StrategyUnavailable, UnknownStrategy
from app.engine.strategy import Strategy

GROUP = "trad.strategies"
BUILTIN_PACKAGE = "trad"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
log = logging.getLogger(__name__)


class StrategiesMissing(RuntimeError):
    """trad's own strategies are not registered: trad is not installed as a distribution."""


@dataclass(frozen=True)
class Registry:
    strategies: dict[str, Strategy]  # by name, sorted
    broken: dict[str, str]  # entry-point name → why it was left out


def _checked(entry: metadata.EntryPoint) -> Strategy:
    """The entry point's strategy with its distribution, or an exception saying what is wrong."""
    found = entry.load()
    if not isinstance(found, Strategy):
        raise TypeError(f"{entry.value} is a {type(found).__name__}, not a Strategy (see docs/strategies.md)")
    if found.name != entry.name:
        raise ValueError(f"the entry point is named {entry.name!r} but the strategy {found.name!r}")
    if not NAME.match(found.name):
        raise ValueError("a strategy's name is lower-case letters, digits and _, at most 64")
    names = [p.name for p in found.space]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"the space must name each parameter once: {names}")
    found.validate_params(found.defaults)  # the defaults are in the space and meet the constraint
    for params in (found.defaults, None):
        bars = found.max_warmup if params is None else found.warmup(params)
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 0:
            raise ValueError(f"warmup must return a whole number of bars ≥ 0, got {bars!r}")
    dist = entry.dist
    return replace(found, package=dist.name if dist else "", version=dist.version if dist else "")


@lru_cache(maxsize=1)
def load() -> Registry:
    """Read the entry points once per process."""
    found: dict[str, Strategy] = {}
    broken: dict[str, str] = {}
    seen: dict[str, str] = {}
    for entry in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        package = entry.dist.name if entry.dist else "?"
        if entry.name in seen:
            if seen[entry.name] != package:  # two packages claim the name: neither is trusted
                broken[entry.name] = f"declared by both {seen[entry.name]} and {package}"
                found.pop(entry.name, None)
            continue
        seen[entry.name] = package
        try:
            found[entry.name] = _checked(entry)
        except Exception as exc:  # a package's import or declaration: report it, carry on
            broken[entry.name] = f"{package}: {type(exc).__name__}: {exc}"
    if not any(s.package == BUILTIN_PACKAGE for s in found.values()):
        raise StrategiesMissing(
            f"trad's own strategies are not registered under the {GROUP!r} entry points: install trad "
            "as a distribution into this virtualenv (`pip install -e .` in a checkout; the deploy installs the "
            "release's wheel)"
        )
    return Registry(dict(sorted(found.items())), broken)


def strategies() -> dict[str, Strategy]:
    return load().strategies


def get_strategy(name: str) -> Strategy:
    registry = load()
    try:
        return registry.strategies[name]
    except KeyError:
        if name in registry.broken:
            raise UnknownStrategy(f"strategy {name!r} is installed but broken: {registry.broken[name]}") from None
        raise UnknownStrategy(f"unknown strategy {name!r}; known: {', '.join(registry.strategies)}") from None


def for_job(name: str, package: str | None, version: str | None, where: str) -> Strategy:
    """The strategy a job asks for, at the package and version it was started with (a job that
    names none, started before versions were kept, takes the installed one), or
    StrategyUnavailable saying what `where` (a worker's name) has instead."""
    registry = load()
    found = registry.strategies.get(name)
    wanted = f"{name} {version}" if version else name
    if found is None:
        why = f" (broken: {registry.broken[name]})" if name in registry.broken else ""
        raise StrategyUnavailable(f"{where} does not have {wanted}{why}; install its package on every worker")
    if (package and found.package != package) or (version and found.version != version):
        raise StrategyUnavailable(
            f"{where} has {name} {found.version} from {found.package}, the job asks for {version} from {package}; "
            "deploy the same strategy packages to the API and every worker"
        )
    return found


def log_broken() -> None:
    """One ERROR line per strategy left out (the API and the workers at start)."""
    for name, why in load().broken.items():
        log.error("strategy %s is not available: %s", name, why)
