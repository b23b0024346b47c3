"""The selection language of analysis views: tokenizer, parser, type checker, evaluators.

A selection says which effect sizes a view pools, over the fields of the analysis
dataset (the codebook's declared columns and moderators, plus ``study``, ``outcome``,
``timepoint``, ``measure``, ...)::

    domain == "mental" and design == "controlled" and year >= 2015
    platform in ["app", "social_networking_site"]
    not simulated
    (age_group >= "adults" or mean_age > 25) and timepoint != "follow-up"

Grammar (keywords are case-insensitive)::

    selection  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | predicate
    predicate  := FIELD [ ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
                        | ["not"] "in" "[" literal ("," literal)* "]" ]
    literal    := STRING | NUMBER | "true" | "false"

A bare FIELD is a predicate only for a boolean field (``simulated``). Every name is checked
against the declared fields when the view is created: an unknown field, a literal of the
wrong type, a level the codebook does not declare, an ordering comparison on text, or bad
syntax raises :class:`~evidence.errors.SelectionError` naming the position (1-based).

Missing values follow SQL's three-valued logic: a comparison with a missing value is
unknown, ``not`` of unknown is unknown, ``unknown and false`` is false, ``unknown or true``
is true; rows whose selection is unknown are not selected. Ordering comparisons on an
ordered categorical field (``age_group >= "adults"``) follow the codebook's level order.

The parsed selection is evaluated on a pandas DataFrame (:func:`evaluate`) or compiled to
a SQLAlchemy expression with bound parameters (:func:`to_sql`); the user's text never
becomes SQL text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import pandas as pd

from evidence.errors import SelectionError

__all__ = [
    "FieldType",
    "Selection",
    "parse_selection",
    "evaluate",
    "to_sql",
]

_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_OPS = ("==", "!=", "<=", ">=", "<", ">")
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class FieldType:
    """What a field holds: ``text``, ``number``, ``bool`` or ``categorical`` (with levels)."""

    kind: str
    levels: tuple[str, ...] | None = None
    ordered: bool = False


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, name, keyword, op, punct, end
    value: Any
    pos: int


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any
    pos: int


@dataclass(frozen=True)
class InList:
    field: str
    values: tuple[Any, ...]
    negate: bool
    pos: int


@dataclass(frozen=True)
class IsTrue:
    field: str
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Everything:
    """The empty selection: every effect size."""


Node = Union[Compare, InList, IsTrue, Not, BoolOp, Everything]  # noqa: UP007


@dataclass(frozen=True)
class Selection:
    """A parsed and type-checked selection."""

    text: str
    tree: Node
    fields: tuple[str, ...]

    def __str__(self) -> str:
        return self.text


def _error(text: str, pos: int, message: str) -> SelectionError:
    return SelectionError(f"selection {text!r}, position {pos + 1}: {message}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            hint = " (compare with ==)" if text[pos] == "=" else ""
            raise _error(text, pos, f"unexpected character {text[pos]!r}{hint}")
        kind = m.lastgroup
        raw = m.group()
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
            tokens.append(_Token("string", value, pos))
        elif kind == "number":
            number = float(raw)
            tokens.append(_Token("number", int(number) if number.is_integer() else number, pos))
        elif kind == "name":
            lowered = raw.lower()
            if lowered in _KEYWORDS:
                tokens.append(_Token("keyword", lowered, pos))
            else:
                tokens.append(_Token("name", raw, pos))
        elif kind in ("op", "punct"):
            tokens.append(_Token(kind, raw, pos))
        pos = m.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


class _Parser:
    """Recursive descent over the token list; type checks each predicate as it is built."""

    def __init__(self, text: str, fields: Mapping[str, FieldType]) -> None:
        self.text = text
        self.fields = fields
        self.tokens = _tokenize(text)
        self.i = 0
        self.used: list[str] = []

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, kind: str, value: Any, what: str) -> _Token:
        token = self.peek()
        if token.kind != kind or token.value != value:
            raise _error(self.text, token.pos, f"expected {what}, found {_describe(token)}")
        return self.take()

    def parse(self) -> Node:
        if self.peek().kind == "end":
            return Everything()
        node = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise _error(
                self.text, token.pos, f"expected 'and', 'or' or the end, found {_describe(token)}"
            )
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.peek() == _Token("keyword", "or", self.peek().pos):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.not_expr()]
        while self.peek() == _Token("keyword", "and", self.peek().pos):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def not_expr(self) -> Node:
        token = self.peek()
        if token.kind == "keyword" and token.value == "not":
            self.take()
            return Not(self.not_expr())
        if token.kind == "punct" and token.value == "(":
            self.take()
            node = self.or_expr()
            self.expect("punct", ")", "')'")
            return node
        return self.predicate()

    def predicate(self) -> Node:
        token = self.take()
        if token.kind != "name":
            raise _error(self.text, token.pos, f"expected a field name, found {_describe(token)}")
        name, pos = token.value, token.pos
        ftype = self.fields.get(name)
        if ftype is None:
            known = ", ".join(sorted(self.fields))
            raise _error(self.text, pos, f"unknown field {name!r}; declared fields: {known}")
        self.used.append(name)
        nxt = self.peek()
        if nxt.kind == "op":
            self.take()
            literal = self.literal()
            return self.compare(name, ftype, nxt.value, literal, pos)
        negate = False
        if nxt.kind == "keyword" and nxt.value == "not":
            after = self.tokens[self.i + 1]
            if after.kind == "keyword" and after.value == "in":
                self.take()
                negate = True
                nxt = self.peek()
        if nxt.kind == "keyword" and nxt.value == "in":
            self.take()
            values = self.literal_list()
            for value, vpos in values:
                self.check_value(name, ftype, value, vpos)
            return InList(name, tuple(v for v, _ in values), negate, pos)
        if ftype.kind != "bool":
            raise _error(
                self.text,
                nxt.pos,
                f"field {name!r} ({ftype.kind}) needs a comparison such as == or in; only a "
                "boolean field stands alone",
            )
        return IsTrue(name, pos)

    def literal(self) -> tuple[Any, int]:
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value, token.pos
        if token.kind == "keyword" and token.value in ("true", "false"):
            return token.value == "true", token.pos
        raise _error(self.text, token.pos, f"expected a value, found {_describe(token)}")

    def literal_list(self) -> list[tuple[Any, int]]:
        self.expect("punct", "[", "'[' after 'in'")
        values = [self.literal()]
        while self.peek().kind == "punct" and self.peek().value == ",":
            self.take()
            values.append(self.literal())
        self.expect("punct", "]", "',' or ']'")
        return values

    def check_value(
        self, name: str, ftype: FieldType, literal: tuple[Any, int] | Any, pos: int
    ) -> None:
        value = literal
        kind = _literal_kind(value)
        wanted = {"categorical": "text", "text": "text", "number": "number", "bool": "bool"}
        if kind != wanted[ftype.kind]:
            raise _error(
                self.text,
                pos,
                f"field {name!r} holds {_kind_words(ftype)}, but {_show(value)} is {kind}",
            )
        if ftype.kind == "categorical" and ftype.levels and value not in ftype.levels:
            levels = ", ".join(repr(v) for v in ftype.levels)
            raise _error(
                self.text, pos, f"{_show(value)} is not a level of {name!r}; levels: {levels}"
            )

    def compare(
        self, name: str, ftype: FieldType, op: str, literal: tuple[Any, int], pos: int
    ) -> Node:
        value, vpos = literal
        self.check_value(name, ftype, value, vpos)
        if op in ("==", "!="):
            return Compare(name, op, value, pos)
        if ftype.kind == "number":
            return Compare(name, op, value, pos)
        if ftype.kind == "categorical" and ftype.ordered and ftype.levels:
            rank = {lev: i for i, lev in enumerate(ftype.levels)}
            test = {"<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__}[op]
            keep = tuple(lev for lev in ftype.levels if test(rank[lev], rank[value]))
            return InList(name, keep, False, pos)
        raise _error(
            self.text,
            pos,
            f"{op} needs a numeric or ordered field; {name!r} holds {_kind_words(ftype)}",
        )


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text"


def _kind_words(ftype: FieldType) -> str:
    if ftype.kind == "categorical":
        return "categories" + (" (ordered)" if ftype.ordered else "")
    return {"text": "text", "number": "numbers", "bool": "true/false"}[ftype.kind]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the selection"
    if token.kind == "string":
        return f"the text {token.value!r}"
    return repr(str(token.value))


def parse_selection(text: str | None, fields: Mapping[str, FieldType]) -> Selection:
    """Parse and type-check a selection against the declared *fields*.

    Parameters
    ----------
    text
        The selection; empty or None selects every effect size.
    fields
        Field name -> :class:`FieldType` (see :func:`evidence.views.dataset.field_types`).

    Raises
    ------
    SelectionError
        Bad syntax, an unknown field, a literal of the wrong type, an undeclared level or
        an ordering comparison on unordered text; the message names the position.
    """
    text = (text or "").strip()
    parser = _Parser(text, fields)
    tree = parser.parse()
    return Selection(text=text, tree=tree, fields=tuple(dict.fromkeys(parser.used)))


# ---------------------------------------------------------------------------- pandas


def _missing(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy()


def _kleene(node: Node, frame: pd.DataFrame) -> pd.arrays.BooleanArray:
    n = len(frame)
    if isinstance(node, Everything):
        return pd.array(np.ones(n, dtype=bool), dtype="boolean")
    if isinstance(node, BoolOp):
        parts = [_kleene(p, frame) for p in node.operands]
        out = parts[0]
        for part in parts[1:]:
            out = (out & part) if node.op == "and" else (out | part)
        return out
    if isinstance(node, Not):
        return ~_kleene(node.operand, frame)
    column = frame[node.field]
    missing = _missing(column)
    if isinstance(node, IsTrue):
        truth = column.astype(object).map(lambda x: bool(x) if not _isna(x) else False)
        values = truth.to_numpy(dtype=bool)
    elif isinstance(node, InList):
        values = column.isin(list(node.values)).to_numpy(dtype=bool)
        if node.negate:
            values = ~values
    else:
        values = _compare(column, node.op, node.value)
    result = pd.array(values, dtype="boolean")
    result[missing] = pd.NA
    return result


def _isna(x: Any) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def _compare(column: pd.Series, op: str, value: Any) -> np.ndarray:
    if isinstance(value, bool):
        column = column.astype(object).map(lambda x: None if _isna(x) else bool(x))
    elif isinstance(value, int | float):
        column = pd.to_numeric(column, errors="coerce")
    ops = {
        "==": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    out = ops[op](value)
    return out.fillna(False).to_numpy(dtype=bool)


def evaluate(selection: Selection, frame: pd.DataFrame) -> np.ndarray:
    """The rows of *frame* the selection keeps (a boolean numpy array).

    Rows whose selection is unknown (a missing value decides it) are not kept. A few rows
    (an incremental refresh's changed studies) are evaluated row by row, which avoids
    pandas' per-operation cost; both paths give the same answer.
    """
    if len(frame) <= _SMALL:
        columns = {name: frame[name].tolist() for name in selection.fields}
        return np.array(
            [
                _row(selection.tree, {k: v[i] for k, v in columns.items()}) is True
                for i in range(len(frame))
            ],
            dtype=bool,
        )
    return _kleene(selection.tree, frame).fillna(False).to_numpy(dtype=bool)


_SMALL = 64
_PY_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _row(node: Node, row: Mapping[str, Any]) -> bool | None:
    """Kleene evaluation of one row: True, False or None (unknown)."""
    if isinstance(node, Everything):
        return True
    if isinstance(node, BoolOp):
        values = [_row(p, row) for p in node.operands]
        if node.op == "and":
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    if isinstance(node, Not):
        value = _row(node.operand, row)
        return None if value is None else not value
    x = row[node.field]
    if _isna(x):
        return None
    if isinstance(node, IsTrue):
        return bool(x)
    if isinstance(node, InList):
        return (x in node.values) != node.negate
    value = node.value
    if isinstance(value, bool):
        x = bool(x)
    elif isinstance(value, int | float):
        try:
            x = float(x)
        except (TypeError, ValueError):
            return False
    return bool(_PY_OPS[node.op](x, value))


# ---------------------------------------------------------------------------- SQL


def to_sql(selection: Selection, columns: Mapping[str, Any]) -> Any:
    """Compile to a SQLAlchemy boolean expression; every value is a bound parameter.

    Parameters
    ----------
    columns
        Field name -> SQLAlchemy column (e.g. of the ``analysis_dataset`` database view).
    """
    import sqlalchemy as sa

    def compile_node(node: Node) -> Any:
        if isinstance(node, Everything):
            return sa.true()
        if isinstance(node, BoolOp):
            parts = [compile_node(p) for p in node.operands]
            return sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
        if isinstance(node, Not):
            return sa.not_(compile_node(node.operand))
        column = columns[node.field]
        if isinstance(node, IsTrue):
            return column == sa.bindparam(None, True, type_=sa.Boolean)
        if isinstance(node, InList):
            values = list(node.values)
            expr = column.in_(sa.bindparam(None, values, expanding=True))
            return sa.not_(expr) if node.negate else expr
        value = sa.bindparam(
            None, node.value, type_=sa.Boolean if isinstance(node.value, bool) else None
        )
        return {
            "==": column.__eq__,
            "!=": column.__ne__,
            "<": column.__lt__,
            "<=": column.__le__,
            ">": column.__gt__,
            ">=": column.__ge__,
        }[node.op](value)

    return compile_node(selection.tree)
