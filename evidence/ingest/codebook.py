"""Codebooks: the YAML file that declares a review's coding sheets, moderators and defaults.

A codebook is checked against a small JSON-schema-like description of the format
(:data:`CODEBOOK_FORMAT`) before it is used; a malformed codebook raises a
:class:`~evidence.errors.ValidationError` naming the offending key (``sheets.results.columns
.sd1i.type``). The format is documented in the README ("Codebook format").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evidence.config import project_root
from evidence.errors import NotFoundError, ValidationError

__all__ = [
    "CODEBOOK_FORMAT",
    "CORE_COLUMNS",
    "KEYS",
    "LEVEL_SHEET",
    "OPTIONAL_RULES",
    "SHEETS",
    "Analysis",
    "Codebook",
    "Column",
    "Moderator",
    "View",
    "find_codebook",
    "load_codebook",
    "parse_codebook",
]

from evidence.ingest._format import (
    _FITS,
    CODEBOOK_FORMAT,
    CORE_COLUMNS,
    FIXED_LEVELS,
    KEYS,
    LEVEL_SHEET,
    MANDATORY,
    OPTIONAL_RULES,
    REQUIRED_SHEETS,
    SHEETS,
    check,
)


@dataclass(frozen=True)
class Column:
    """One coding-sheet column: its type and the values it accepts."""

    name: str
    sheet: str
    type: str
    required: bool = False
    levels: tuple[Any, ...] | None = None
    ordered: bool = False
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    pattern: str | None = None
    unit: str | None = None
    description: str | None = None
    default: Any = None
    moderator: bool = False


@dataclass(frozen=True)
class Moderator:
    """A moderator: a coded (or derived) variable at study, arm or effect level."""

    name: str
    level: str
    type: str
    levels: tuple[Any, ...] | None = None
    unit: str | None = None
    description: str | None = None
    derived_from: str | None = None
    mapping: dict[Any, Any] | None = None  # source value -> derived value
    has_default: bool = False
    default: Any = None
    column: Column | None = None  # the sheet column (None when derived)

    @property
    def sheet(self) -> str:
        return LEVEL_SHEET[self.level]

    def derive(self, source: Any) -> Any:
        """The derived value for one *source* value (``None`` for a missing source).

        Raises ``KeyError`` when *source* is not mapped and the codebook gives no default.
        """
        if source is None or (isinstance(source, float) and source != source):
            return None
        assert self.mapping is not None
        if source in self.mapping:
            return self.mapping[source]
        if self.has_default:
            return self.default
        raise KeyError(source)


@dataclass(frozen=True)
class Analysis:
    """Default analysis settings of a review."""

    measure: str = "SMD"
    vtype: str = "LS"
    default_ri: float = 0.5
    split_shared_arm_n: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    level: float = 95.0
    #: Largest plausible ``|yi|`` (None: the measure's default, see
    #: :data:`evidence.ingest._effects.MAX_ABS_YI`); a larger effect size is refused at ingest.
    max_abs_yi: float | None = None


@dataclass(frozen=True)
class View:
    """One declared analysis view of the analysis plan (after expanding ``per``)."""

    name: str
    select: str
    title: str | None = None
    subgroup: str | None = None
    mods: tuple[str, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)


_SELECT_WORDS = {"and", "or", "not", "in", "true", "false", "null", "is"}
#: Fields a selection may name besides moderators and sheet columns.
_VIEW_FIELDS = {"timepoint", "measure", "review"}


@dataclass(frozen=True)
class Codebook:
    """A parsed, validated codebook. Build it with :func:`load_codebook`."""

    name: str
    title: str
    source: str
    raw: dict[str, Any]
    analysis: Analysis
    rules: tuple[str, ...]
    sheets: dict[str, dict[str, Column]]
    moderators: dict[str, Moderator]
    views: tuple[View, ...]

    @property
    def sha256(self) -> str:
        """SHA-256 of the canonical JSON of the codebook (key order does not matter)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_json(self) -> str:
        """Canonical JSON text of the parsed codebook (stored in ``review.codebook``)."""
        return json.dumps(self.raw, sort_keys=True, separators=(",", ":"), default=str)

    def columns(self, sheet: str) -> dict[str, Column]:
        """Every column a sheet may hold: data-model columns and the sheet's moderators."""
        return self.sheets.get(sheet, {})

    def derived(self) -> list[Moderator]:
        """Derived moderators (computed at ingest from another field)."""
        return [m for m in self.moderators.values() if m.derived_from]

    def fields(self) -> set[str]:
        """Every name a view's selection, subgroup or moderators may use."""
        names = set(self.moderators) | _VIEW_FIELDS
        for cols in self.sheets.values():
            names |= set(cols)
        return names


def _column(sheet: str, name: str, spec: Mapping[str, Any], moderator: bool = False) -> Column:
    levels = spec.get("levels")
    return Column(
        name=name,
        sheet=sheet,
        type=spec["type"],
        required=bool(spec.get("required", False)),
        levels=tuple(levels) if levels is not None else None,
        ordered=bool(spec.get("ordered", False)),
        min=spec.get("min"),
        max=spec.get("max"),
        gt=spec.get("gt"),
        lt=spec.get("lt"),
        pattern=spec.get("pattern"),
        unit=spec.get("unit"),
        description=spec.get("description"),
        default=spec.get("default"),
        moderator=moderator,
    )


def _fail(source: str, errors: list[tuple[str, Any, str]]) -> None:
    failures = [
        {"file": source, "sheet": None, "row": None, "column": key, "value": value, "rule": rule}
        for key, value, rule in errors
    ]
    first = failures[0]
    more = f" (and {len(failures) - 1} more problems)" if len(failures) > 1 else ""
    raise ValidationError(
        f"codebook {source}: key {first['column']}: {first['rule']}"
        + (f" (got {first['value']!r})" if first["value"] is not None else "")
        + more,
        failures,
    )


def parse_codebook(raw: Any, source: str = "<codebook>") -> Codebook:
    """Validate a codebook given as parsed YAML/JSON and build a :class:`Codebook`.

    Raises
    ------
    ValidationError
        Naming the first malformed key (``failures`` lists all of them).
    """
    errors: list[tuple[str, Any, str]] = []
    check(raw, CODEBOOK_FORMAT, "", errors)
    if errors:
        _fail(source, errors)

    sheets: dict[str, dict[str, Column]] = {}
    for sheet, sheet_spec in raw["sheets"].items():
        cols: dict[str, Column] = {}
        for name, spec in sheet_spec["columns"].items():
            path = f"sheets.{sheet}.columns.{name}"
            kind = CORE_COLUMNS[sheet].get(name)
            if kind is None:
                errors.append(
                    (
                        path,
                        None,
                        "not a data-model column of this sheet; declare "
                        "it under moderators with its level",
                    )
                )
                continue
            if spec["type"] not in _FITS[kind]:
                fits = ", ".join(sorted(_FITS[kind]))
                errors.append(
                    (f"{path}.type", spec["type"], f"this column holds {kind}: use one of {fits}")
                )
            fixed = FIXED_LEVELS.get((sheet, name))
            if fixed and spec.get("levels") and not set(spec["levels"]) <= set(fixed):
                errors.append((f"{path}.levels", spec["levels"], "subset of " + ", ".join(fixed)))
            cols[name] = _column(sheet, name, spec)
        sheets[sheet] = cols
    for sheet in REQUIRED_SHEETS:
        if sheet not in raw["sheets"]:
            errors.append((f"sheets.{sheet}", None, "required sheet is not declared"))
    for sheet, cols in sheets.items():
        for name in MANDATORY[sheet]:
            if name not in cols:
                errors.append(
                    (f"sheets.{sheet}.columns.{name}", None, "required column is not declared")
                )
            elif not cols[name].required and name in KEYS[sheet]:
                errors.append(
                    (
                        f"sheets.{sheet}.columns.{name}.required",
                        False,
                        "a natural-key column must be required: true",
                    )
                )
    for key, spec in raw.get("sheets", {}).items():
        for name, col in spec["columns"].items():
            if col["type"] == "categorical" and not col.get("levels"):
                if (key, name) not in FIXED_LEVELS:
                    errors.append(
                        (
                            f"sheets.{key}.columns.{name}.levels",
                            None,
                            "a categorical column needs levels",
                        )
                    )

    moderators: dict[str, Moderator] = {}
    for name, spec in (raw.get("moderators") or {}).items():
        path = f"moderators.{name}"
        sheet = LEVEL_SHEET[spec["level"]]
        if name in CORE_COLUMNS[sheet] or any(name in c for c in CORE_COLUMNS.values()):
            errors.append((path, None, "a moderator may not reuse a data-model column name"))
            continue
        if spec["type"] == "categorical" and not spec.get("levels"):
            errors.append((f"{path}.levels", None, "a categorical moderator needs levels"))
            continue
        mapping = None
        if "derived_from" in spec:
            if "map" not in spec:
                errors.append((f"{path}.map", None, "a derived moderator needs a map"))
                continue
            mapping = {}
            for target, sources in spec["map"].items():
                if spec.get("levels") and target not in spec["levels"]:
                    errors.append((f"{path}.map.{target}", target, "not one of the levels"))
                for src in sources:
                    mapping[src] = target
        elif "map" in spec:
            errors.append((f"{path}.map", None, "map is only allowed with derived_from"))
        moderators[name] = Moderator(
            name=name,
            level=spec["level"],
            type=spec["type"],
            levels=tuple(spec["levels"]) if spec.get("levels") else None,
            unit=spec.get("unit"),
            description=spec.get("description"),
            derived_from=spec.get("derived_from"),
            mapping=mapping,
            has_default="default" in spec and "derived_from" in spec,
            default=spec.get("default"),
            column=None if "derived_from" in spec else _column(sheet, name, spec, moderator=True),
        )
    for mod in moderators.values():
        if mod.column is not None:
            sheets.setdefault(mod.sheet, {})[mod.name] = mod.column
    for mod in moderators.values():
        if mod.derived_from is None:
            continue
        src_sheet = mod.sheet
        src = sheets.get(src_sheet, {}).get(mod.derived_from)
        if src is None:
            errors.append(
                (
                    f"moderators.{mod.name}.derived_from",
                    mod.derived_from,
                    f"must name a column of the {src_sheet} sheet (same level)",
                )
            )
        elif src.levels is not None and mod.mapping:
            unknown = [v for v in mod.mapping if v not in src.levels]
            if unknown:
                errors.append(
                    (f"moderators.{mod.name}.map", unknown[0], f"not a level of {mod.derived_from}")
                )

    analysis_raw = raw["analysis"]
    max_abs_yi = analysis_raw.get("max_abs_yi")
    if max_abs_yi is not None and not math.isfinite(max_abs_yi):
        errors.append(("analysis.max_abs_yi", max_abs_yi, "must be a finite number"))
    analysis = Analysis(
        measure=analysis_raw["measure"],
        vtype=analysis_raw.get("vtype", "LS"),
        default_ri=float(analysis_raw.get("default_ri", 0.5)),
        split_shared_arm_n=bool(analysis_raw.get("split_shared_arm_n", False)),
        model=dict(analysis_raw.get("model", {})),
        level=float(analysis_raw.get("level", 95)),
        max_abs_yi=None if max_abs_yi is None else float(max_abs_yi),
    )
    rules = tuple(raw.get("rules", tuple(OPTIONAL_RULES)))

    codebook = Codebook(
        name=raw["review"]["name"],
        title=raw["review"]["title"],
        source=source,
        raw=raw,
        analysis=analysis,
        rules=rules,
        sheets=sheets,
        moderators=moderators,
        views=(),
    )
    views = _expand_views(raw.get("analysis_plan") or [], codebook, errors)
    if errors:
        _fail(source, errors)
    return Codebook(**{**codebook.__dict__, "views": tuple(views)})


def _identifiers(expression: str) -> list[str]:
    no_strings = re.sub(r"'[^']*'|\"[^\"]*\"", " ", expression)
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", no_strings)
    return [w for w in words if w.lower() not in _SELECT_WORDS]


def _expand_views(
    plan: list[dict[str, Any]], codebook: Codebook, errors: list[tuple[str, Any, str]]
) -> list[View]:
    """Check view declarations and expand ``per: FIELD`` into one view per level."""
    known = codebook.fields()

    def known_field(name: str) -> bool:
        return name in known or (name.startswith("arm2.") and name[5:] in known)

    levels_of: dict[str, tuple[Any, ...] | None] = {}
    for cols in codebook.sheets.values():
        for col in cols.values():
            levels_of.setdefault(col.name, col.levels)
    views: list[View] = []
    names: set[str] = set()
    for i, spec in enumerate(plan):
        path = f"analysis_plan[{i}]"
        if "select" not in spec and "per" not in spec:
            errors.append((f"{path}.select", None, "a view needs select, per or both"))
            continue
        select = spec.get("select", "")
        for ident in _identifiers(select):
            if not known_field(ident):
                errors.append((f"{path}.select", ident, "names an unknown field"))
        for key in ("subgroup", "per"):
            if key in spec and not known_field(spec[key]):
                errors.append((f"{path}.{key}", spec[key], "names an unknown field"))
        for j, mod in enumerate(spec.get("mods", [])):
            if not known_field(mod):
                errors.append((f"{path}.mods[{j}]", mod, "names an unknown field"))
        model = {**codebook.analysis.model, **spec.get("model", {})}
        expansions: list[tuple[str, str]] = [(spec["name"], select)]
        if "per" in spec:
            levels = levels_of.get(spec["per"])
            if not levels:
                errors.append((f"{path}.per", spec["per"], "per needs a field with levels"))
                continue
            expansions = [
                (
                    f"{lvl}-{spec['name']}",
                    f'{spec["per"]} == "{lvl}"' + (f" and ({select})" if select else ""),
                )
                for lvl in levels
            ]
        for name, select in expansions:
            if name in names:
                errors.append((f"{path}.name", name, "duplicate view name"))
            names.add(name)
            views.append(
                View(
                    name=name,
                    select=select,
                    title=spec.get("title"),
                    subgroup=spec.get("subgroup"),
                    mods=tuple(spec.get("mods", ())),
                    model=model,
                )
            )
    return views


def load_codebook(path: str | Path) -> Codebook:
    """Read and validate a codebook YAML file.

    Raises
    ------
    NotFoundError
        The file does not exist.
    ValidationError
        The file is not YAML, or a key is malformed (the message names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"codebook {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(
            f"codebook {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            [
                {
                    "file": str(path),
                    "sheet": None,
                    "row": None,
                    "column": None,
                    "value": None,
                    "rule": "valid YAML",
                }
            ],
        ) from None
    return parse_codebook(raw, str(path))


def find_codebook(review: str) -> Path:
    """The codebook file of a review by name: ``schemas/<review>.yaml`` of the project."""
    path = project_root() / "schemas" / f"{review}.yaml"
    if not path.is_file():
        raise NotFoundError(f"no codebook for review {review!r} (looked for {path})")
    return path
