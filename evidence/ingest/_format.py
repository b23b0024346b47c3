"""The codebook format: data-model columns of each sheet and the format's own schema.

:data:`CODEBOOK_FORMAT` describes a codebook JSON-schema style; :func:`check` walks a parsed
YAML document against it and collects (key path, value, rule) for every malformed key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FORMAT_VERSION = "evidence-codebook/1"

#: Sheets in load order; ``risk_of_bias`` is optional.
SHEETS = ("studies", "arms", "outcomes", "timepoints", "results", "risk_of_bias")
REQUIRED_SHEETS = ("studies", "arms", "outcomes", "timepoints", "results")

#: Natural key of each sheet.
KEYS: dict[str, tuple[str, ...]] = {
    "studies": ("study_key",),
    "arms": ("study_key", "arm_key"),
    "outcomes": ("study_key", "outcome_key"),
    "timepoints": ("study_key", "timepoint_key"),
    "results": ("study_key", "result_key"),
    "risk_of_bias": ("study_key", "result_key", "tool", "domain"),
}

#: Moderator level -> the sheet its column appears in.
LEVEL_SHEET = {"study": "studies", "arm": "arms", "effect": "results"}

_NUM, _TEXT, _BOOL, _INT = "numeric", "text", "boolean", "integer"
_RESULT_STATS = (
    "n1i m1i sd1i n2i m2i sd2i m1i_pre sd1i_pre m2i_pre sd2i_pre m1i_change sd1i_change "
    "m2i_change sd2i_change ri event1i event2i di ti pi fi ori ci_lb ci_ub yi_reported vi_reported"
).split()

#: Data-model columns of each sheet and their storage kind (a codebook column's type must fit).
CORE_COLUMNS: dict[str, dict[str, str]] = {
    "studies": {
        "study_key": _TEXT, "citation": _TEXT, "doi": _TEXT, "year": _INT, "country": _TEXT,
        "design": _TEXT, "n_total": _INT, "simulated": _BOOL, "notes": _TEXT,
    },
    "arms": {
        "study_key": _TEXT, "arm_key": _TEXT, "label": _TEXT, "role": _TEXT,
        "description": _TEXT, "n_randomized": _INT,
    },
    "outcomes": {
        "study_key": _TEXT, "outcome_key": _TEXT, "domain": _TEXT, "construct": _TEXT,
        "instrument": _TEXT, "direction": _TEXT, "unit": _TEXT,
    },
    "timepoints": {
        "study_key": _TEXT, "timepoint_key": _TEXT, "label": _TEXT, "weeks": _NUM,
    },
    "results": {
        "study_key": _TEXT, "result_key": _TEXT, "outcome_key": _TEXT, "timepoint_key": _TEXT,
        "arm1_key": _TEXT, "arm2_key": _TEXT,
        **dict.fromkeys(_RESULT_STATS, _NUM),
        "source_report": _TEXT, "location": _TEXT, "coder": _TEXT, "coded_at": _TEXT,
        "notes": _TEXT,
    },
    "risk_of_bias": {
        "study_key": _TEXT, "result_key": _TEXT, "tool": _TEXT, "domain": _TEXT,
        "judgement": _TEXT, "support": _TEXT,
    },
}  # fmt: skip

#: Columns every codebook must declare (and declare required).
MANDATORY: dict[str, tuple[str, ...]] = {
    "studies": ("study_key",),
    "arms": ("study_key", "arm_key", "role"),
    "outcomes": ("study_key", "outcome_key", "domain", "direction"),
    "timepoints": ("study_key", "timepoint_key", "label"),
    "results": ("study_key", "result_key", "outcome_key", "timepoint_key", "arm1_key"),
    "risk_of_bias": ("study_key", "tool", "domain", "judgement"),
}

#: Fixed allowed values of some data-model columns.
FIXED_LEVELS = {
    ("arms", "role"): ("intervention", "comparator"),
    ("outcomes", "direction"): ("higher", "lower"),
    ("risk_of_bias", "judgement"): ("low", "some concerns", "high"),
}

TYPES = ("text", "integer", "numeric", "boolean", "categorical", "country")
_FITS = {
    _TEXT: {"text", "categorical", "country"},
    _NUM: {"numeric", "integer"},
    _INT: {"integer"},
    _BOOL: {"boolean"},
}

#: Cross-field rules a codebook may switch on (all by default). Natural-key uniqueness,
#: references between sheets, derived-moderator mappings and computability always apply.
OPTIONAL_RULES = {
    "events_within_n": "events <= n in each arm (event1i <= n1i, event2i <= n2i)",
    "ci_contains_estimate": "ci_lb <= estimate <= ci_ub for a reported di or ori",
    "distinct_arms": "arm1_key and arm2_key name different arms",
}

MEASURES = ("SMD", "RR", "OR", "RD")  # measures the ingest computes from result rows
METHODS = ("EE", "FE", "DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")
STRUCTURES = ("univariate", "three-level", "CHE")
TESTS = ("z", "t", "knha")

_COLUMN_KEYS = {
    "type": {"enum": TYPES},
    "required": {"type": bool},
    "levels": {"type": list, "items": {"type": (str, int, float, bool)}},
    "ordered": {"type": bool},
    "min": {"type": (int, float)},
    "max": {"type": (int, float)},
    "gt": {"type": (int, float)},
    "lt": {"type": (int, float)},
    "pattern": {"type": str},
    "unit": {"type": str},
    "description": {"type": str},
    "default": {"type": (str, int, float, bool)},
}
_COLUMN = {"type": dict, "required": ["type"], "keys": _COLUMN_KEYS}
_MODERATOR = {
    "type": dict,
    "required": ["level", "type"],
    "keys": {
        **_COLUMN_KEYS,
        "level": {"enum": ("study", "arm", "effect")},
        "derived_from": {"type": str},
        "map": {"type": dict, "values": {"type": list, "items": {"type": (str, int, float)}}},
        "default": {"type": (str, int, float, bool, type(None))},
    },
}
_MODEL = {
    "type": dict,
    "keys": {
        "method": {"enum": METHODS},
        "structure": {"enum": STRUCTURES},
        "rho": {"type": (int, float), "min": 0, "max": 1},
        "robust": {"type": bool},
        "small_sample": {"enum": ("CR0", "CR1", "CR2")},
        "test": {"enum": TESTS},
    },
}

#: The codebook format, described JSON-schema style (``type``, ``enum``, ``keys``,
#: ``required``, ``values`` for mappings, ``items`` for lists, ``min``/``max``).
CODEBOOK_FORMAT: dict[str, Any] = {
    "type": dict,
    "required": ["format", "review", "analysis", "sheets"],
    "keys": {
        "format": {"enum": (FORMAT_VERSION,)},
        "review": {
            "type": dict,
            "required": ["name", "title"],
            "keys": {
                "name": {"type": str, "pattern": r"^[a-z][a-z0-9_]*$"},
                "title": {"type": str},
                "description": {"type": str},
                "reference": {"type": str},
            },
        },
        "analysis": {
            "type": dict,
            "required": ["measure"],
            "keys": {
                "measure": {"enum": MEASURES},
                "vtype": {"enum": ("LS", "UB")},
                "default_ri": {"type": (int, float), "gt": -1, "lt": 1},
                "split_shared_arm_n": {"type": bool},
                "max_abs_yi": {"type": (int, float), "gt": 0},
                "model": _MODEL,
                "level": {"type": (int, float), "gt": 0, "lt": 100},
            },
        },
        "rules": {"type": list, "items": {"enum": tuple(OPTIONAL_RULES)}},
        "sheets": {
            "type": dict,
            "keys": {
                name: {
                    "type": dict,
                    "required": ["columns"],
                    "keys": {
                        "description": {"type": str},
                        "columns": {"type": dict, "values": _COLUMN},
                    },
                }
                for name in SHEETS
            },
        },
        "moderators": {"type": dict, "values": _MODERATOR},
        "analysis_plan": {
            "type": list,
            "items": {
                "type": dict,
                "required": ["name"],
                "keys": {
                    "name": {"type": str, "pattern": r"^[a-z][a-z0-9_-]*$"},
                    "title": {"type": str},
                    "select": {"type": str},
                    "per": {"type": str},
                    "subgroup": {"type": str},
                    "mods": {"type": list, "items": {"type": str}},
                    "model": _MODEL,
                },
            },
        },
    },
}

_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", bool: "true or false"}


def _type_name(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = [_TYPE_NAMES.get(t, "a number" if t in (int, float) else t.__name__) for t in types]
    return " or ".join(dict.fromkeys(n for n in names if n != "NoneType"))


def _is(value: Any, types: Any) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def check(
    node: Any, spec: Mapping[str, Any], path: str, errors: list[tuple[str, Any, str]]
) -> None:
    """Check *node* against a format *spec*, appending (key path, value, rule) to *errors*."""
    if "enum" in spec:
        if node not in spec["enum"]:
            errors.append((path, node, "one of " + ", ".join(map(str, spec["enum"]))))
        return
    if "type" in spec and not _is(node, spec["type"]):
        errors.append((path, node, f"must be {_type_name(spec['type'])}"))
        return
    for bound, test, word in (
        ("min", lambda a, b: a >= b, ">="),
        ("max", lambda a, b: a <= b, "<="),
        ("gt", lambda a, b: a > b, ">"),
        ("lt", lambda a, b: a < b, "<"),
    ):
        if bound in spec and isinstance(node, int | float) and not test(node, spec[bound]):
            errors.append((path, node, f"must be {word} {spec[bound]}"))
    if "pattern" in spec and isinstance(node, str) and not re.match(spec["pattern"], node):
        errors.append((path, node, f"must match {spec['pattern']}"))
    if isinstance(node, dict):
        for key in spec.get("required", ()):
            if key not in node:
                errors.append((f"{path}.{key}" if path else key, None, "required key is missing"))
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if "keys" in spec:
                if key not in spec["keys"]:
                    allowed = ", ".join(spec["keys"])
                    errors.append((sub, None, f"unknown key (allowed: {allowed})"))
                    continue
                check(value, spec["keys"][key], sub, errors)
            elif "values" in spec:
                check(value, spec["values"], sub, errors)
    if isinstance(node, list) and "items" in spec:
        for i, item in enumerate(node):
            check(item, spec["items"], f"{path}[{i}]", errors)
