"""Success and failure conditions of a metric: a small expression language,
parsed once and evaluated without ``eval``.

The language is the part of Argo Rollouts' conditions that metric checks
use: ``result < 0.05``, ``result[0] >= 0.95``, ``result.errors == 0``,
``len(result) > 0 and result[0] < 1``, ``isNaN(result[0]) or result[0] < 5``.

- values: numbers, ``'strings'`` or ``"strings"``, ``true``, ``false``,
  ``result`` followed by indexes ``[0]`` and fields ``.name`` / ``["name"]``;
- functions: ``len(x)``, ``isNaN(x)``, ``isInf(x)``, ``abs(x)``;
- comparisons: ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=`` (one per operand pair);
- logic: ``and``/``&&``, ``or``/``||``, ``not``/``!``, parentheses.

A condition that does not parse raises ``ConfigError`` (exit 2, before
anything is changed); one that cannot be evaluated on a value (an index
past the end of an empty result, a number compared with a string) raises
``EvaluationError``, which makes the measurement an error, never a pass.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Condition", "EvaluationError"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op><=|>=|==|!=|&&|\|\||[<>!()\[\].,-])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "len": len,
    "isNaN": lambda x: isinstance(x, float) and math.isnan(x),
    "isInf": lambda x: isinstance(x, float) and math.isinf(x),
    "abs": abs,
}
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_CONSTANTS = {"true": True, "false": False}

Node = Callable[[Any], Any]


class EvaluationError(Exception):
    """A condition could not be evaluated on a measured value."""


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"unexpected {text[position:].strip()[:10]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "name" and value in _KEYWORDS:
            kind, value = "op", _KEYWORDS[value]
        tokens.append((kind, value))
        position = match.end()
    return tokens


@dataclass
class _Parser:
    """Recursive descent over the tokens; each rule returns a closure."""

    tokens: list[tuple[str, str]]
    position: int = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (value is not None and token[1] != value):
            wanted = repr(value) if value else "a value"
            found = repr(token[1]) if token[0] != "end" else "the end"
            raise ValueError(f"expected {wanted}, found {found}")
        self.position += 1
        return token

    def expression(self) -> Node:
        left = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda r: bool(a(r)) or bool(b(r)))(left, right)
        return left

    def conjunction(self) -> Node:
        left = self.negation()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.negation()
            left = (lambda a, b: lambda r: bool(a(r)) and bool(b(r)))(left, right)
        return left

    def negation(self) -> Node:
        if self.peek() == ("op", "!"):
            self.take()
            inner = self.negation()
            return lambda r: not inner(r)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        kind, value = self.peek()
        if kind == "op" and value in _COMPARE:
            self.take()
            right = self.operand()
            return _compare(value, left, right)
        return left

    def operand(self) -> Node:
        kind, value = self.take()
        if kind == "number" or (kind, value) == ("op", "-"):
            return self.number(value)
        if kind == "string":
            text = value[1:-1]
            return lambda r: text
        if (kind, value) == ("op", "("):
            inner = self.expression()
            self.take(")")
            return self.accessors(inner)
        if kind == "name" and value in _CONSTANTS:
            constant = _CONSTANTS[value]
            return lambda r: constant
        if kind == "name" and value in _FUNCTIONS:
            self.take("(")
            argument = self.expression()
            self.take(")")
            return _call(value, argument)
        if kind == "name" and value == "result":
            return self.accessors(lambda r: r)
        raise ValueError(f"unexpected {value!r}")

    def number(self, value: str) -> Node:
        text = value if value != "-" else "-" + self.take()[1]
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a number, found {text!r}") from None
        return lambda r: number

    def accessors(self, base: Node) -> Node:
        while self.peek() in (("op", "["), ("op", ".")):
            if self.take()[1] == "[":
                kind, key = self.take()
                if kind not in ("number", "string") or (kind == "number" and not key.isdigit()):
                    raise ValueError(f"expected an index or a quoted key, found {key!r}")
                self.take("]")
                index: int | str = int(key) if kind == "number" else key[1:-1]
            else:
                kind, index = self.take()
                if kind != "name":
                    raise ValueError(f"expected a field name, found {index!r}")
            base = _access(base, index)
        return base


def _compare(operator: str, left: Node, right: Node) -> Node:
    check = _COMPARE[operator]

    def compare(result: Any) -> bool:
        a, b = left(result), right(result)
        try:
            return check(_number(a), _number(b))
        except TypeError:
            raise EvaluationError(f"cannot compare {a!r} {operator} {b!r}") from None

    return compare


def _number(value: Any) -> Any:
    """Numbers as floats, and numeric strings too (Prometheus sends "0.05")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _call(name: str, argument: Node) -> Node:
    function = _FUNCTIONS[name]

    def call(result: Any) -> Any:
        value = argument(result)
        try:
            return function(_number(value) if name != "len" else value)
        except TypeError:
            raise EvaluationError(f"{name}({value!r}) has no value") from None

    return call


def _access(base: Node, key: int | str) -> Node:
    def access(result: Any) -> Any:
        value = base(result)
        if isinstance(key, int) and isinstance(value, Sequence) and not isinstance(value, str):
            if key < len(value):
                return value[key]
            raise EvaluationError(f"no [{key}] in a result of {len(value)} values")
        if isinstance(key, str) and isinstance(value, Mapping):
            if key in value:
                return value[key]
            raise EvaluationError(f"no field {key!r} in the result")
        raise EvaluationError(f"cannot take [{key!r}] of {value!r}")

    return access


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``Condition("result[0] < 0.05")``. Invalid text
    raises ``ConfigError`` naming ``field``."""

    text: str
    field: str = "condition"
    _evaluate: Node = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError(self.field, self.text, "a condition such as 'result[0] < 0.05'")
        try:
            parser = _Parser(_tokens(self.text))
            node = parser.expression()
            if parser.peek()[0] != "end":
                raise ValueError(f"unexpected {parser.peek()[1]!r}")
        except ValueError as exc:
            raise ConfigError(self.field, self.text, f"a condition that parses: {exc}") from None
        object.__setattr__(self, "_evaluate", node)

    def evaluate(self, result: Any) -> bool:
        """Whether the condition holds for ``result``; ``EvaluationError`` when
        it cannot be told (a missing index or field, mismatched types)."""
        return bool(self._evaluate(result))

    def __str__(self) -> str:
        return self.text
