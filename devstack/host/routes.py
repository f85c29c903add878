"""Match request paths against HTTP trigger route templates, as ASP.NET Core routing does.

A template such as ``companies/{company_id}/emails/{email_id:int?}`` is made of ``/``-separated
segments. A segment is literal text, one or more ``{name}`` parameters mixed with literal text
(``{name}.{ext}``), an optional parameter ``{name?}`` that fills a whole segment, or a catch-all
``{*rest}`` as the last segment. Parameters take ``:``-separated constraints (``int``, ``long``,
``bool``, ``guid``, ``alpha``, ``double``/``float``/``decimal``, ``datetime``, ``min(n)``,
``max(n)``, ``range(a,b)``, ``length(n)``/``length(a,b)``, ``minlength(n)``, ``maxlength(n)``,
``regex(expr)``). Literal text matches without regard to case.

Known limitations: default values (``{name=value}``) are not supported and are rejected when
the template is parsed.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from devstack.host.errors import HostConfigError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

_TOKEN = re.compile(r"\{([^{}]*)\}")
_PARAMETER = re.compile(r"^(\*)?([A-Za-z_][A-Za-z0-9_]*)((?::[^:?]+)*)(\?)?$")
_CONSTRAINT = re.compile(r"^([a-z]+)(?:\((.*)\))?$")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

# Precedence ranks of a segment kind: lower ranks are tried first, as in ASP.NET Core.
_LITERAL, _COMPLEX, _CONSTRAINED, _PLAIN, _OPTIONAL, _CATCH_ALL = range(6)


def _integer(value: str, bounds: tuple[int, int]) -> bool:
    return re.fullmatch(r"-?\d+", value) is not None and bounds[0] <= int(value) <= bounds[1]


def _number(value: str) -> bool:
    try:
        parsed = float(value)
    except ValueError:
        return False
    return math.isfinite(parsed)


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _length(value: str, args: list[str]) -> bool:
    if len(args) == 1:
        return len(value) == int(args[0])
    return int(args[0]) <= len(value) <= int(args[1])


_CHECKS: dict[str, Callable[[str, list[str]], bool]] = {
    "int": lambda value, _: _integer(value, _INT32),
    "long": lambda value, _: _integer(value, _INT64),
    "bool": lambda value, _: value.lower() in ("true", "false"),
    "guid": lambda value, _: _guid(value),
    "alpha": lambda value, _: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "double": lambda value, _: _number(value),
    "float": lambda value, _: _number(value),
    "decimal": lambda value, _: _number(value),
    "datetime": lambda value, _: _datetime(value),
    "min": lambda value, args: _integer(value, _INT64) and int(value) >= int(args[0]),
    "max": lambda value, args: _integer(value, _INT64) and int(value) <= int(args[0]),
    "range": lambda value, args: _integer(value, (int(args[0]), int(args[1]))),
    "length": _length,
    "minlength": lambda value, args: len(value) >= int(args[0]),
    "maxlength": lambda value, args: len(value) <= int(args[0]),
    "regex": lambda value, args: re.search(args[0], value, re.IGNORECASE) is not None,
}
_ARITY = {"min": 1, "max": 1, "range": 2, "minlength": 1, "maxlength": 1, "regex": 1}


@dataclass(frozen=True, slots=True)
class _Constraint:
    name: str
    args: list[str]

    def accepts(self, value: str) -> bool:
        return _CHECKS[self.name](value, self.args)


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    group: str
    constraints: tuple[_Constraint, ...]
    optional: bool
    catch_all: bool


class RouteTemplate:
    """A compiled route template that extracts route parameters from a request path."""

    def __init__(self, template: str) -> None:
        """Compile ``template``.

        Raises:
            HostConfigError: The template is malformed or uses an unknown constraint.
        """
        self.template = template.strip("/")
        self._parameters: list[_Parameter] = []
        ranks: list[int] = []
        pattern = ""
        segments = self.template.split("/") if self.template else []
        for index, segment in enumerate(segments):
            piece, rank = self._compile_segment(segment, last=index == len(segments) - 1)
            if ranks and ranks[-1] >= _OPTIONAL and rank < _OPTIONAL:
                self._fail("only the last segments may be optional")
            separator = "/" if index else ""
            pattern += f"(?:{separator}{piece})?" if rank >= _OPTIONAL else separator + piece
            ranks.append(rank)
        self._regex = re.compile(f"^{pattern}/?$", re.IGNORECASE | re.DOTALL)
        self.precedence = tuple(ranks)

    def match(self, path: str) -> dict[str, str] | None:
        """Return the route parameters if ``path`` (without the route prefix) fits, else None."""
        found = self._regex.match(path.strip("/"))
        if found is None:
            return None
        values: dict[str, str] = {}
        for parameter in self._parameters:
            value = found.group(parameter.group)
            if value is None or (value == "" and parameter.catch_all):
                continue
            if not all(constraint.accepts(value) for constraint in parameter.constraints):
                return None
            values[parameter.name] = value
        return values

    def _compile_segment(self, segment: str, *, last: bool) -> tuple[str, int]:
        tokens = list(_TOKEN.finditer(segment))
        if not tokens:
            if "{" in segment or "}" in segment or not segment:
                self._fail(f"segment {segment!r} is malformed")
            return re.escape(segment), _LITERAL
        whole = len(tokens) == 1 and tokens[0].group(0) == segment
        parts: list[str] = []
        position = 0
        parameter = None
        for token in tokens:
            parts.append(re.escape(segment[position : token.start()]))
            parameter = self._parameter(token.group(1), whole=whole, last=last)
            parts.append(self._group_pattern(parameter))
            position = token.end()
        parts.append(re.escape(segment[position:]))
        if not whole or parameter is None:
            return "".join(parts), _COMPLEX
        if parameter.catch_all:
            return "".join(parts), _CATCH_ALL
        if parameter.optional:
            return "".join(parts), _OPTIONAL
        return "".join(parts), _CONSTRAINED if parameter.constraints else _PLAIN

    def _parameter(self, token: str, *, whole: bool, last: bool) -> _Parameter:
        if "=" in token:
            self._fail(f"default values such as {{{token}}} are not supported")
        parsed = _PARAMETER.match(token)
        if parsed is None:
            self._fail(f"parameter {{{token}}} is malformed")
        star, name, constraint_text, question = parsed.groups()
        if name in (p.name for p in self._parameters):
            self._fail(f"parameter {name!r} appears twice")
        if (star or question) and not whole:
            self._fail(f"optional or catch-all parameter {name!r} must fill its whole segment")
        if star and not last:
            self._fail(f"catch-all parameter {name!r} must be the last segment")
        constraints = tuple(self._constraint(text) for text in constraint_text.split(":")[1:])
        group = f"p{len(self._parameters)}"
        parameter = _Parameter(name, group, constraints, bool(question), bool(star))
        self._parameters.append(parameter)
        return parameter

    def _constraint(self, text: str) -> _Constraint:
        parsed = _CONSTRAINT.match(text)
        if parsed is None or parsed.group(1) not in _CHECKS:
            self._fail(f"constraint {text!r} is not supported")
        name, raw_args = parsed.groups()
        args = [raw_args] if name == "regex" else [a.strip() for a in (raw_args or "").split(",")]
        args = [a for a in args if a]
        if name != "regex" and not all(re.fullmatch(r"-?\d+", a) for a in args):
            self._fail(f"constraint {text!r} takes integer arguments")
        expected = _ARITY.get(name, 1 if name == "length" else 0)
        if len(args) != expected and not (name == "length" and len(args) == 2):
            self._fail(f"constraint {text!r} takes {expected} argument(s)")
        return _Constraint(name, args)

    @staticmethod
    def _group_pattern(parameter: _Parameter) -> str:
        if parameter.catch_all:
            return f"(?P<{parameter.group}>.*)"
        return f"(?P<{parameter.group}>[^/]+)"

    def _fail(self, problem: str) -> NoReturn:
        message = f"route template {self.template!r} is invalid: {problem}"
        raise HostConfigError(message)
