"""Design matrices for meta-regression: ``mods`` in every form metafor accepts.

``model_matrix`` turns ``mods`` (None, an array, a sequence of arrays, or a formula string
over the columns of ``data``) into the k x p design matrix and its column names, named as
metafor prints them (``intrcpt``, ``ablat``, ``allocrandom``, ``ablat:year``).
``check_design`` finds redundant (linearly dependent) columns and drops them as metafor
does, with a warning.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evidence.errors import ModelError

__all__ = ["model_matrix", "check_design", "factor_levels", "DesignCheck"]

INTERCEPT = "intrcpt"
_RANK_TOL = 1e-7  # R's lm() / qr() tolerance, which metafor uses to detect redundancy


# --------------------------------------------------------------------------- data access
def _columns(data: Any) -> dict[str, Any]:
    """Return a name -> column mapping for a DataFrame, a mapping, or None."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):
        return {str(c): data[c] for c in data.columns}
    raise ModelError(
        "Argument 'data' must be a DataFrame or a mapping of column names to values, "
        f"not {type(data).__name__}."
    )


def _as_values(col: Any) -> np.ndarray:
    if hasattr(col, "to_numpy"):
        try:
            return col.to_numpy(dtype=object, na_value=None)
        except TypeError:
            return col.to_numpy(dtype=object)
    return np.asarray(col, dtype=object)


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(isinstance(v, float) and math.isnan(v)) or (v is np.nan)
    except TypeError:
        return False


def _is_numeric_column(values: np.ndarray) -> bool:
    for v in values:
        if _is_missing(v):
            continue
        if isinstance(v, bool | np.bool_):
            return False
        if not isinstance(v, int | float | np.integer | np.floating):
            return False
    return True


def _r_sort_key(level: Any) -> tuple:
    """Sort key close to R's ``sort()`` for factor levels (locale collation for strings)."""
    if isinstance(level, bool | np.bool_):
        return (0, int(level), "")
    if isinstance(level, int | float | np.integer | np.floating):
        return (0, float(level), "")
    s = str(level)
    return (1, 0.0, s.casefold(), s.swapcase())


def factor_levels(values: Any) -> list[Any]:
    """Levels of a categorical column in the order R's ``factor()`` gives them.

    A pandas Categorical keeps its declared categories; other values are sorted (numbers
    numerically, strings case-insensitively as R's collation does). Missing values are no level.
    """
    cats = getattr(getattr(values, "cat", None), "categories", None)
    if cats is not None:
        return list(cats)
    dtype = getattr(values, "dtype", None)
    if dtype is not None and str(dtype) == "category":
        return list(values.categories)
    vals = [v for v in _as_values(values) if not _is_missing(v)]
    uniq = list(dict.fromkeys(vals))
    return sorted(uniq, key=_r_sort_key)


def _level_label(level: Any) -> str:
    if isinstance(level, bool | np.bool_):
        return "TRUE" if level else "FALSE"
    if isinstance(level, float | np.floating) and float(level).is_integer():
        return str(int(level))
    return str(level)


# --------------------------------------------------------------------------- formula parsing
@dataclass(frozen=True)
class _Factor:
    """One variable of a term: a numeric expression or a categorical column."""

    label: str  # as printed (column name, or the expression text)
    categorical: bool
    values: np.ndarray  # float array (numeric) or object array (categorical)
    levels: tuple = ()


def _split_top(text: str, sep: str) -> list[str]:
    """Split *text* on *sep* at parenthesis depth 0."""
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth == 0 and text.startswith(sep, i):
            parts.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


_SAFE_FUNCS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log10": np.log10}


def _eval_numeric(expr: str, cols: dict[str, Any], k: int) -> np.ndarray:
    """Evaluate an arithmetic expression over numeric columns (no other Python)."""
    try:
        tree = ast.parse(expr.replace("^", "**"), mode="eval")
    except SyntaxError as err:
        raise ModelError(f"Cannot read the moderator term '{expr}' in 'mods'.") from err

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return _numeric_column(node.id, cols, k)
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            ops = {
                ast.Add: np.add,
                ast.Sub: np.subtract,
                ast.Mult: np.multiply,
                ast.Div: np.divide,
                ast.Pow: np.power,
            }
            for typ, fn in ops.items():
                if isinstance(node.op, typ):
                    return fn(a, b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _SAFE_FUNCS
            and len(node.args) == 1
        ):
            return _SAFE_FUNCS[node.func.id](ev(node.args[0]))
        raise ModelError(
            f"Cannot read the moderator term '{expr}' in 'mods': only column names, numbers, "
            "+ - * / ^ and log/exp/sqrt/abs are allowed inside I()."
        )

    with np.errstate(all="ignore"):
        out = np.broadcast_to(np.asarray(ev(tree), dtype=float), (k,)).copy()
    return out


def _column(name: str, cols: dict[str, Any], k: int) -> Any:
    if name not in cols:
        known = ", ".join(sorted(cols)) if cols else "none (no 'data' given)"
        raise ModelError(f"Unknown column '{name}' in 'mods'; the data columns are: {known}.")
    col = cols[name]
    n = len(col)
    if n != k:
        raise ModelError(f"Column '{name}' in 'mods' has {n} values but there are {k} effects.")
    return col


def _numeric_column(name: str, cols: dict[str, Any], k: int) -> np.ndarray:
    col = _column(name, cols, k)
    values = _as_values(col)
    if not _is_numeric_column(values):
        raise ModelError(
            f"Column '{name}' in 'mods' is not numeric and cannot be used in an arithmetic term."
        )
    return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=float)


_CALL = re.compile(r"^(C|factor|as\.factor|I)\((.*)\)$", re.S)
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _parse_factor(text: str, cols: dict[str, Any], k: int) -> _Factor:
    text = text.strip()
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1]
        m = None
    else:
        m = _CALL.match(text)
    if m and m.group(1) in ("C", "factor", "as.factor"):
        name = m.group(2).strip().strip("`")
        col = _column(name, cols, k)
        values = _as_values(col)
        return _Factor(name, True, values, tuple(factor_levels(col)))
    if m and m.group(1) == "I":
        inner = m.group(2).strip()
        return _Factor(f"I({inner})", False, _eval_numeric(inner, cols, k))
    if text in cols or _NAME.match(text):
        col = _column(text, cols, k)
        values = _as_values(col)
        if _is_numeric_column(values):
            return _Factor(text, False, _numeric_column(text, cols, k))
        return _Factor(text, True, values, tuple(factor_levels(col)))
    if re.match(r"^(log|exp|sqrt|abs|log10)\(.*\)$", text, re.S):
        return _Factor(text, False, _eval_numeric(text, cols, k))
    raise ModelError(f"Cannot read the moderator term '{text}' in 'mods'.")


def _parse_formula(formula: str, cols: dict[str, Any], k: int, intercept: bool):
    """Return (intercept, ordered list of terms); a term is a tuple of _Factor."""
    text = formula.strip()
    if "~" in text:
        lhs, _, text = text.partition("~")
        if lhs.strip():
            raise ModelError("The 'mods' formula must not have a left-hand side.")
    text = text.strip()
    if not text:
        raise ModelError("The 'mods' formula is empty.")
    # split into signed pieces at depth 0
    pieces: list[tuple[str, str]] = []
    sign, depth, cur = "+", 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth == 0 and ch in "+-":
            if "".join(cur).strip():
                pieces.append((sign, "".join(cur).strip()))
            sign, cur = ch, []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        pieces.append((sign, "".join(cur).strip()))
    if depth != 0:
        raise ModelError(f"Unbalanced parentheses in the 'mods' formula '{formula}'.")

    labels: list[tuple[str, ...]] = []
    removed: set[frozenset[str]] = set()
    factors: dict[str, _Factor] = {}
    for sgn, piece in pieces:
        if piece in ("0", "1"):
            if (sgn == "-" and piece == "1") or (sgn == "+" and piece == "0"):
                intercept = False
            elif sgn == "+" and piece == "1":
                intercept = True
            elif sgn == "-" and piece == "0":
                intercept = True
            continue
        # expand a*b into a + b + a:b (all subsets)
        star_parts = [p.strip() for p in _split_top(piece, "*")]
        expanded: list[tuple[str, ...]] = []
        if len(star_parts) > 1:
            groups = [tuple(x.strip() for x in _split_top(p, ":")) for p in star_parts]
            n = len(groups)
            subsets = []
            for mask in range(1, 2**n):
                chosen = [groups[i] for i in range(n) if mask >> i & 1]
                subsets.append((sum(len(c) for c in chosen), mask, chosen))
            subsets.sort(key=lambda t: (bin(t[1]).count("1"), _mask_order(t[1], n)))
            for _, _, chosen in subsets:
                expanded.append(tuple(x for c in chosen for x in c))
        else:
            expanded.append(tuple(x.strip() for x in _split_top(piece, ":")))
        for term in expanded:
            for part in term:
                if part not in factors:
                    factors[part] = _parse_factor(part, cols, k)
            key = tuple(dict.fromkeys(factors[p].label for p in term))
            if sgn == "-":
                removed.add(frozenset(key))
            else:
                keyset = {frozenset(t) for t in labels}
                if frozenset(key) not in keyset:
                    labels.append(key)
    labels = [t for t in labels if frozenset(t) not in removed]
    by_label = {f.label: f for f in factors.values()}
    # R orders terms by their order (number of variables), stable within an order
    labels.sort(key=len)
    terms = [tuple(by_label[name] for name in t) for t in labels]
    return intercept, terms


def _mask_order(mask: int, n: int) -> tuple[int, ...]:
    return tuple(i for i in range(n) if mask >> i & 1)


def _term_columns(
    term: tuple[_Factor, ...], present: set[frozenset[str]], intercept: bool
) -> tuple[list[np.ndarray], list[str]]:
    """Columns of one term; a factor uses contrasts when its margin is in the model (R's rule)."""
    blocks: list[tuple[list[np.ndarray], list[str]]] = []
    labels = frozenset(f.label for f in term)
    for f in term:
        if not f.categorical:
            blocks.append(([f.values], [f.label]))
            continue
        margin = labels - {f.label}
        contrasts = (intercept and not margin) or (bool(margin) and margin in present)
        levels = list(f.levels)
        use = levels[1:] if contrasts else levels
        cols, names = [], []
        for lev in use:
            col = np.array(
                [np.nan if _is_missing(v) else float(v == lev) for v in f.values], dtype=float
            )
            cols.append(col)
            names.append(f"{f.label}{_level_label(lev)}")
        blocks.append((cols, names))
    # the first variable varies fastest, as in R's model.matrix
    out_cols: list[np.ndarray] = [np.ones(len(term[0].values))]
    out_names: list[str] = [""]
    for cols, names in blocks:
        new_cols, new_names = [], []
        for c, nm in zip(cols, names, strict=True):
            for oc, on in zip(out_cols, out_names, strict=True):
                new_cols.append(oc * c)
                new_names.append(f"{on}:{nm}" if on else nm)
        out_cols, out_names = new_cols, new_names
    return out_cols, out_names


# --------------------------------------------------------------------------- public API
def model_matrix(
    mods: Any, data: Any = None, *, k: int, intercept: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Build the k x p design matrix of a (meta-)regression model.

    Parameters
    ----------
    mods
        ``None`` (intercept only); a 1-D array (one moderator, named ``X1``... as metafor
        names unnamed columns, or its pandas name); a 2-D array / DataFrame (one column per
        moderator); a sequence of 1-D arrays; or a formula string over the columns of
        ``data``: ``"ablat + year"``, ``"~ ablat"``, ``"C(alloc)"`` / ``"factor(alloc)"``
        (treatment coding, levels sorted as R's ``factor()``), text columns are categorical,
        ``"a:b"`` and ``"a*b"`` interactions, ``"I(year - 1900)"``, ``"log(x)"``, and ``"-1"``
        or ``"0 +"`` to drop the intercept.
    data
        A DataFrame or a mapping of column names to values (formula strings only).
    k
        The number of effects (rows).
    intercept
        Whether to add the intercept column ``intrcpt`` (a formula's ``-1`` overrides it).

    Returns
    -------
    X, names
        The float design matrix (k x p) and its column names. Missing moderator values are
        NaN (the caller drops such rows, as metafor does with a warning).

    Raises
    ------
    ModelError
        Unknown column, wrong length, unreadable formula, or an empty design.
    """
    if k < 0:
        raise ModelError("The number of effects k must not be negative.")
    if isinstance(mods, str):
        cols = _columns(data)
        icpt, terms = _parse_formula(mods, cols, k, intercept)
        present = {frozenset(f.label for f in t) for t in terms}
        columns: list[np.ndarray] = []
        names: list[str] = []
        if icpt:
            columns.append(np.ones(k))
            names.append(INTERCEPT)
        for term in terms:
            c, n = _term_columns(term, present, icpt)
            columns.extend(c)
            names.extend(n)
        if not columns:
            raise ModelError(f"The 'mods' formula '{mods}' leaves no column in the model.")
        return np.column_stack(columns).astype(float), names

    columns, names = [], []
    if intercept:
        columns.append(np.ones(k))
        names.append(INTERCEPT)
    if mods is not None:
        mcols, mnames = _array_mods(mods, k)
        columns.extend(mcols)
        names.extend(mnames)
    if not columns:
        raise ModelError("The model has no coefficient: give 'mods' or keep the intercept.")
    return np.column_stack(columns).astype(float), names


def _array_mods(mods: Any, k: int) -> tuple[list[np.ndarray], list[str]]:
    if hasattr(mods, "columns") and hasattr(mods, "to_numpy"):  # DataFrame
        names = [str(c) for c in mods.columns]
        arr = _float_array(mods.to_numpy(dtype=float, na_value=np.nan), "mods")
        arr = arr.reshape(len(arr), -1)
    elif hasattr(mods, "name") and hasattr(mods, "to_numpy") and getattr(mods, "ndim", 2) == 1:
        names = [str(mods.name) if mods.name is not None else "X1"]
        arr = _float_array(mods.to_numpy(dtype=float, na_value=np.nan), "mods").reshape(-1, 1)
    elif (
        isinstance(mods, Sequence)
        and not isinstance(mods, str | bytes)
        and len(mods) > 0
        and (np.ndim(mods[0]) == 1)
    ):
        arr = np.column_stack([_float_array(m, "mods") for m in mods])
        names = [str(getattr(m, "name", None) or f"X{i + 1}") for i, m in enumerate(mods)]
    else:
        arr = _float_array(mods, "mods")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise ModelError("Argument 'mods' must be a 1-D or 2-D array of moderator values.")
        names = [f"X{i + 1}" for i in range(arr.shape[1])]
    if arr.shape[0] != k:
        raise ModelError(f"Argument 'mods' has {arr.shape[0]} rows but there are {k} effects.")
    return [arr[:, j].copy() for j in range(arr.shape[1])], names


def _float_array(x: Any, what: str) -> np.ndarray:
    try:
        return np.array(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise ModelError(
            f"Argument '{what}' must hold numbers; use a formula string with C() for "
            "categorical moderators."
        ) from err


@dataclass(frozen=True)
class DesignCheck:
    """Outcome of :func:`check_design`: the kept columns and the dropped ones."""

    X: np.ndarray
    names: list[str]
    keep: np.ndarray  # boolean mask over the original columns
    dropped: list[str]
    warnings: list[str]


def check_design(X: np.ndarray, names: Sequence[str], *, drop: bool = True) -> DesignCheck:
    """Detect redundant (linearly dependent) columns of a design matrix.

    Columns are examined left to right; a column whose residual after projecting out the
    kept columns has norm below ``1e-7`` times its own norm is redundant (the rule of R's
    ``qr()`` in ``lm()``, which metafor uses). Like metafor, redundant columns are dropped with
    the warning "Redundant predictors dropped from the model."; with ``drop=False`` a
    :class:`ModelError` is raised instead. All-zero columns are redundant too.

    Parameters
    ----------
    X
        The k x p design matrix (rows with missing values already removed).
    names
        The p column names.
    drop
        Drop redundant columns (metafor's behaviour) or fail.

    Returns
    -------
    DesignCheck
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ModelError("The design matrix and its column names do not match.")
    k, p = X.shape
    keep = np.zeros(p, dtype=bool)
    basis: list[np.ndarray] = []
    for j in range(p):
        col = X[:, j].copy()
        norm0 = float(np.linalg.norm(col))
        if norm0 == 0.0:
            continue
        for _ in range(2):  # re-orthogonalise once for stability
            for q in basis:
                col -= q * float(q @ col)
        norm = float(np.linalg.norm(col))
        if norm > _RANK_TOL * norm0:
            basis.append(col / norm)
            keep[j] = True
    dropped = [n for n, kp in zip(names, keep, strict=True) if not kp]
    warnings: list[str] = []
    if dropped:
        if not drop:
            raise ModelError(
                "The design matrix is rank deficient: the moderator column(s) "
                + ", ".join(f"'{d}'" for d in dropped)
                + " are linear combinations of the other columns."
            )
        warnings.append("Redundant predictors dropped from the model.")
    Xk = X[:, keep]
    return DesignCheck(
        X=Xk,
        names=[n for n, kp in zip(names, keep, strict=True) if kp],
        keep=keep,
        dropped=dropped,
        warnings=warnings,
    )
