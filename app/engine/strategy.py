"""The strategy interface: what a strategy package imports (see docs/strategies.md).

A strategy is a name, a parameter space (`IntParam`, `FloatParam` — optionally log-scaled —
and `CategoricalParam`, each with bounds and a default), an optional cross-parameter
`constraint` (a message when the parameters do not fit together, such as fast ≥ slow), its
warm-up in bars as a function of its parameters, and a vectorised function from candles to
positions in {−1, 0, 1}: the position wanted from the next bar's open, decided on bar t's close
with data up to bar t only. Write one with the `vectorised` decorator and declare it under the
`trad.strategies` entry-point group; the registry (`registry`) adds its package and version.

The engine calls `signals(candles, params, start)`: the bars before `start` are history only,
so they are flat whatever the function returned there. What a package's function returns is
checked (one number per candle, each −1, 0 or 1); anything else fails the job with
`InvalidPositions`, and an exception it raises with `StrategyError`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.engine.candles import Candles
from app.engine.errors import InvalidParams, InvalidPositions, StrategyError

Params = dict[str, Any]
Scalar = int | float | str | bool
_MAX_CORNERS = 256  # parameter-space corners tried when a narrowed space's constraint is checked


def _number(name: str, value: Any, integer: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParams(f"parameter {name!r} must be {'an integer' if integer else 'a number'}")
    if integer:
        if int(value) != value:
            raise InvalidParams(f"parameter {name!r} must be an integer")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class _Bounded:
    """A number between `low` and `high` (both included)."""

    name: str
    low: float
    high: float
    default: float | None = None

    kind = "number"
    log = False

    def _clean(self, value: Any) -> int | float:
        return _number(self.name, value, self.kind == "int")

    def validate(self, value: Any) -> int | float:
        value = self._clean(value)
        if not self.low <= value <= self.high:
            raise InvalidParams(f"parameter {self.name!r} must be between {self.low:g} and {self.high:g}")
        return value

    def narrowed(self, given: Any) -> _Bounded:
        """This parameter fixed to a value, or narrowed to `{"low": …, "high": …}` within it."""
        if isinstance(given, Mapping):
            if set(given) - {"low", "high"} or not given:
                raise InvalidParams(f"parameter {self.name!r}: a range is {{'low': …, 'high': …}}")
            low = self.validate(given.get("low", self.low))
            high = self.validate(given.get("high", self.high))
            if low > high:
                raise InvalidParams(f"parameter {self.name!r}: low {low:g} is above high {high:g}")
        else:
            low = high = self.validate(given)
        default = self.default if self.default is not None and low <= self.default <= high else low
        return replace(self, low=low, high=high, default=default)

    def corners(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def sample(self, rng: np.random.Generator) -> int | float:
        """A value drawn uniformly from the range (on a log scale for a log-scaled one)."""
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class IntParam(_Bounded):
    kind = "int"

    def __post_init__(self) -> None:
        _check_bounds(self, self.low, self.high, integer=True)
        object.__setattr__(self, "low", int(self.low))
        object.__setattr__(self, "high", int(self.high))
        default = (self.low + self.high) // 2 if self.default is None else self.default
        object.__setattr__(self, "default", self.validate(default))


@dataclass(frozen=True)
class FloatParam(_Bounded):
    log: bool = False  # type: ignore[misc]  # searched on a log scale (low must be > 0)

    kind = "float"

    def __post_init__(self) -> None:
        _check_bounds(self, self.low, self.high, integer=False)
        if self.log and self.low <= 0:
            raise InvalidParams(f"parameter {self.name!r}: a log-scaled range must start above 0")
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        if self.default is None:
            mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
            object.__setattr__(self, "default", mid)
        object.__setattr__(self, "default", self.validate(self.default))


def _check_bounds(param: _Bounded, low: Any, high: Any, *, integer: bool) -> None:
    if not isinstance(param.name, str) or not param.name.isidentifier():
        raise InvalidParams(f"parameter name {param.name!r} must be an identifier")
    low, high = _number(f"{param.name}.low", low, integer), _number(f"{param.name}.high", high, integer)
    if low > high:
        raise InvalidParams(f"parameter {param.name!r}: low {low:g} is above high {high:g}")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class CategoricalParam:
    """One of `choices` (strings, numbers or booleans)."""

    name: str
    choices: tuple[Scalar, ...]
    default: Scalar | None = None

    kind = "categorical"
    log = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidParams(f"parameter name {self.name!r} must be an identifier")
        choices = tuple(self.choices)
        if not choices or not all(isinstance(c, Scalar) for c in choices):
            raise InvalidParams(f"parameter {self.name!r}: choices must be strings, numbers or booleans")
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "default", self.validate(choices[0] if self.default is None else self.default))

    def validate(self, value: Any) -> Scalar:
        for choice in self.choices:
            if _same(choice, value) or (isinstance(choice, float) and _same(float(choice), value)):
                return choice
        raise InvalidParams(f"parameter {self.name!r} must be one of {list(self.choices)!r}")

    def narrowed(self, given: Any) -> CategoricalParam:
        """This parameter fixed to one choice, or narrowed to `{"choices": […]}` of its own."""
        if isinstance(given, Mapping):
            if set(given) != {"choices"} or not isinstance(given["choices"], list | tuple) or not given["choices"]:
                raise InvalidParams(f"parameter {self.name!r}: a subset is {{'choices': […]}}")
            chosen = tuple(dict.fromkeys(self.validate(c) for c in given["choices"]))
        else:
            chosen = (self.validate(given),)
        default = self.default if self.default in chosen else chosen[0]
        return replace(self, choices=chosen, default=default)

    def corners(self) -> tuple[Any, ...]:
        return self.choices

    def sample(self, rng: np.random.Generator) -> Scalar:
        """One of the choices, drawn uniformly."""
        return self.choices[int(rng.integers(len(self.choices)))]

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "choices": list(self.choices)}


Param = IntParam | FloatParam | CategoricalParam
Compute = Callable[[Candles, Params, int], Any]


def _no_constraint(params: Params) -> str | None:
    return None


@dataclass(frozen=True)
class Strategy:
    """What the engine trains. `compute(candles, params, start)` gives positions (or positions
    and stop exits, see `backtest`); `package` and `version` are the distribution it came from
    (filled in by the registry)."""

    name: str
    space: tuple[Param, ...]
    compute: Compute
    warmup: Callable[[Params], int]  # bars of history needed before the first traded bar
    constraint: Callable[[Params], str | None] = _no_constraint
    package: str = ""
    version: str = ""
    checked: bool = field(default=False, compare=False)  # check what compute returns (package code)

    def validate_params(self, params: Params) -> Params:
        names = [s.name for s in self.space]
        unknown = set(params) - set(names)
        if unknown:
            raise InvalidParams(f"unknown parameter(s) for {self.name}: {', '.join(sorted(unknown))}")
        missing = set(names) - set(params)
        if missing:
            raise InvalidParams(f"missing parameter(s) for {self.name}: {', '.join(sorted(missing))}")
        clean = {s.name: s.validate(params[s.name]) for s in self.space}
        problem = self.constraint(clean)
        if problem:
            raise InvalidParams(problem)
        return clean

    @property
    def defaults(self) -> Params:
        return {s.name: s.default for s in self.space}

    def narrowed(self, given: Mapping[str, Any] | None) -> Strategy:
        """The strategy with its space narrowed to `given` (per parameter: a fixed value, a
        `{"low", "high"}` range, or a `{"choices"}` subset), or InvalidParams naming the first
        parameter that is unknown, out of the space or of the wrong type, or a constraint that
        no parameters of the narrowed space can meet."""
        if not given:
            return self
        if not isinstance(given, Mapping):
            raise InvalidParams("params must be an object of parameter names")
        by_name = {s.name: s for s in self.space}
        for name in given:
            if name not in by_name:
                raise InvalidParams(f"unknown parameter {name!r} for {self.name}; it has {', '.join(by_name)}")
        space = tuple(s.narrowed(given[s.name]) if s.name in given else s for s in self.space)
        narrow = replace(self, space=space)
        narrow.check_constraint()
        return narrow

    def check_constraint(self) -> None:
        """InvalidParams unless some parameters of the space meet the constraint: the defaults,
        or one of the space's corners."""
        candidates = [self.defaults]
        corners = itertools.product(*(s.corners() for s in self.space))
        candidates += [
            dict(zip([s.name for s in self.space], c, strict=True)) for c in itertools.islice(corners, _MAX_CORNERS)
        ]
        problem = None
        for params in candidates:
            problem = self.constraint(params)
            if not problem:
                return
        raise InvalidParams(f"no parameters of the space meet the constraint: {problem}")

    def orders(self, candles: Candles, params: Params, start: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Positions for every bar (the bars before `start` are history only: flat), and the
        price at which a stop closed the position within a bar (NaN elsewhere), or None for a
        strategy without stops (see `backtest`)."""
        candles = candles.validate()
        made = self.compute(candles, params, start)
        positions, exits = made if isinstance(made, tuple) else (made, None)
        if self.checked:
            positions = _checked(self.name, positions, len(candles))
        positions = positions.astype(np.int8)
        positions[:start] = 0
        if exits is not None:
            exits[:start] = np.nan
        return positions, exits

    def signals(self, candles: Candles, params: Params, start: int = 0) -> np.ndarray:
        """Positions for every bar; the bars before `start` are history only (flat)."""
        return self.orders(candles, params, start)[0]

    @property
    def max_warmup(self) -> int:
        """The longest warm-up anywhere in the space (warm-ups grow with their numbers; every
        choice of a categorical parameter is tried)."""
        numbers = {s.name: s.high for s in self.space if s.kind != "categorical"}
        choices = [s for s in self.space if s.kind == "categorical"]
        combos = itertools.islice(itertools.product(*(c.choices for c in choices)), _MAX_CORNERS)
        return max(
            int(self.warmup({**numbers, **dict(zip([c.name for c in choices], combo, strict=True))}))
            for combo in combos
        )

    def range_positions(self, data: Candles, params: Params, first: int, end: int) -> np.ndarray:
        """Positions on `data[first:end]`, computed with the declared warm-up of history in front
        (as much of it as `data` has before `first`)."""
        history = min(first, int(self.warmup(params)))
        return self.signals(data[first - history : end], params, history)[history:]

    def describe(self) -> dict[str, Any]:
        """The strategy as the catalogue shows it."""
        return {
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "params": [{**s.describe(), "default": s.default} for s in self.space],
            "defaults": self.defaults,
            "warmup": int(self.warmup(self.defaults)),
            "max_warmup": self.max_warmup,
        }


def _checked(name: str, positions: Any, n: int) -> np.ndarray:
    """A package's positions as float64, or InvalidPositions saying what is wrong with them."""
    try:
        p = np.asarray(positions)
    except Exception as exc:  # an object NumPy cannot read as an array
        raise InvalidPositions(f"{name} returned {type(positions).__name__}, not an array: {exc}") from None
    if p.ndim != 1 or len(p) != n:
        raise InvalidPositions(f"{name} returned positions of shape {p.shape} for {n} candles: one value per candle")
    if p.dtype.kind not in "iufb":
        raise InvalidPositions(f"{name} returned positions of dtype {p.dtype}: numbers in {{-1, 0, 1}}")
    if p.dtype.kind in "iub" and (n == 0 or (p.min() >= -1 and p.max() <= 1)):
        return p  # integers within −1..1: nothing more to look at
    p = p.astype(np.float64)
    ok = (p == 0) | (p == 1) | (p == -1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise InvalidPositions(
            f"{name}: position at bar {i} is {p[i].item()!r}; positions must be -1, 0 or 1 (NaN is not)"
        )
    return p


def _guarded(name: str, what: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` of a package, whose errors become StrategyError naming the strategy."""

    def call(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:  # the package's code: any error it raises is the strategy's, named
            raise StrategyError(f"{name}'s {what} raised {type(exc).__name__}: {exc}") from exc

    return call


def vectorised(
    *,
    name: str,
    space: tuple[Param, ...] | list[Param],
    warmup: Callable[[Params], int],
    constraint: Callable[[Params], str | None] = _no_constraint,
) -> Callable[[Callable[[Candles, Params], Any]], Strategy]:
    """Make a strategy of `signals(candles, params) -> positions`:

    @vectorised(name="my_cross", space=(IntParam("fast", 2, 50), IntParam("slow", 5, 200)),
                warmup=lambda p: p["slow"], constraint=lambda p: None if p["fast"] < p["slow"] else "fast < slow")
    def my_cross(candles, params):
        ...
    """

    def make(signals: Callable[[Candles, Params], Any]) -> Strategy:
        return Strategy(
            name,
            tuple(space),
            _guarded(name, "signals", lambda candles, params, start: signals(candles, params)),
            _guarded(name, "warmup", warmup),
            _guarded(name, "constraint", constraint),
            checked=True,
        )

    return make


__all__ = ["CategoricalParam", "FloatParam", "IntParam", "Strategy", "vectorised"]
