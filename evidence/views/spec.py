"""What an analysis view is: :class:`ViewSpec`, and its check against a codebook.

A view = a selection (see :mod:`evidence.views.selection`), an effect measure, a model and
its options, and either moderators (a meta-regression) or a subgroup variable.

Models
------
``rma``
    Univariate random-effects model, :func:`evidence.stats.rma` (``method``, ``test``,
    ``level``); effect sizes treated as independent.
``three-level``
    :func:`evidence.stats.rma_mv.rma_mv` with random intercepts per study and per effect
    size (metafor's ``rma.mv(yi, vi, random = ~ 1 | study/es_id)``).
``che``
    Correlated and hierarchical effects: sampling covariance imputed within studies with
    correlation ``rho`` (:func:`evidence.stats.covariance.impute_covariance`), the
    three-level model, and cluster-robust inference by study
    (:func:`evidence.stats.robust.robust`, CR2 with Satterthwaite df when ``small_sample``
    is ``CR2``, metafor's CR1 otherwise); Pustejovsky & Tipton (2022).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evidence.errors import SelectionError
from evidence.views.selection import FieldType, Selection, parse_selection

__all__ = ["MODELS", "ViewSpec", "check_spec", "model_from_codebook"]

MODELS = ("rma", "three-level", "che")
_OPTION_KEYS = {"method", "test", "level", "rho", "small_sample", "smooth_vi", "robust"}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "rma": {"method": "REML", "test": "z", "level": 95.0},
    "three-level": {"method": "REML", "test": "z", "level": 95.0},
    "che": {
        "method": "REML",
        "test": "t",
        "level": 95.0,
        "rho": 0.6,
        "small_sample": "CR2",
        "smooth_vi": True,
    },
}


@dataclass(frozen=True)
class ViewSpec:
    """A view's definition (what is stored in ``analysis_view``)."""

    name: str
    selection: str = ""
    model: str = "rma"
    options: Mapping[str, Any] = field(default_factory=dict)
    moderators: tuple[str, ...] = ()
    subgroup: str | None = None
    measure: str | None = None
    title: str | None = None
    source: str = "analyst"

    def canonical(self) -> str:
        """Canonical JSON of what determines the numbers (part of the fingerprint)."""
        return json.dumps(
            {
                "selection": self.selection,
                "model": self.model,
                "options": dict(sorted(self.options.items())),
                "moderators": list(self.moderators),
                "subgroup": self.subgroup,
                "measure": self.measure,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "selection": self.selection,
            "measure": self.measure,
            "model": self.model,
            "options": dict(self.options),
            "moderators": list(self.moderators),
            "subgroup": self.subgroup,
        }


def model_from_codebook(model: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Map a codebook's ``analysis.model`` block onto a view model and its options."""
    structure = str(model.get("structure", "")).lower()
    if structure == "che" or (model.get("robust") and structure != "univariate"):
        name = "che"
    elif structure in ("three-level", "multilevel", "3-level"):
        name = "three-level"
    else:
        name = "rma"
    options = {k: model[k] for k in _OPTION_KEYS if k in model and k != "robust"}
    return name, options


def check_spec(
    spec: ViewSpec, fields: Mapping[str, FieldType], default_measure: str | None = None
) -> tuple[ViewSpec, Selection]:
    """Check a view against the declared fields; return it with defaults filled in.

    Raises
    ------
    SelectionError
        Bad selection, unknown model or option, unknown moderator or subgroup field, or
        both moderators and a subgroup.
    """
    if not spec.name or not spec.name.strip() or len(spec.name) > 200:
        raise SelectionError("a view needs a name (1 to 200 characters)")
    if spec.model not in MODELS:
        raise SelectionError(
            f"view {spec.name!r}: model {spec.model!r} is not one of {', '.join(MODELS)}"
        )
    unknown = set(spec.options) - _OPTION_KEYS
    if unknown:
        raise SelectionError(
            f"view {spec.name!r}: unknown option {sorted(unknown)[0]!r}; options are "
            + ", ".join(sorted(_OPTION_KEYS - {"robust"}))
        )
    options = {**_DEFAULTS[spec.model], **{k: v for k, v in spec.options.items() if k != "robust"}}
    if spec.model != "che":
        options.pop("rho", None)
        options.pop("small_sample", None)
        options.pop("smooth_vi", None)
    options = _check_options(spec.name, options)
    selection = parse_selection(spec.selection, fields)
    if spec.moderators and spec.subgroup:
        raise SelectionError(f"view {spec.name!r}: give moderators or a subgroup, not both")
    for name in spec.moderators:
        ftype = fields.get(name)
        if ftype is None:
            raise SelectionError(f"view {spec.name!r}: moderator {name!r} is not a declared field")
        if ftype.kind == "text":
            raise SelectionError(
                f"view {spec.name!r}: moderator {name!r} is free text; use a numeric, boolean "
                "or categorical field"
            )
    if spec.subgroup is not None:
        ftype = fields.get(spec.subgroup)
        if ftype is None:
            raise SelectionError(
                f"view {spec.name!r}: subgroup {spec.subgroup!r} is not a declared field"
            )
        if ftype.kind == "number":
            raise SelectionError(
                f"view {spec.name!r}: subgroup {spec.subgroup!r} is numeric; use it as a "
                "moderator instead"
            )
    checked = ViewSpec(
        name=spec.name.strip(),
        selection=selection.text,
        model=spec.model,
        options=options,
        moderators=tuple(spec.moderators),
        subgroup=spec.subgroup,
        measure=spec.measure or default_measure,
        title=spec.title,
        source=spec.source,
    )
    return checked, selection


def _check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if "level" in out:
        try:
            out["level"] = float(out["level"])
        except (TypeError, ValueError):
            out["level"] = float("nan")
        if not 0 < out["level"] < 100:
            raise SelectionError(f"view {name!r}: level must be a percentage between 0 and 100")
    if "rho" in out:
        try:
            out["rho"] = float(out["rho"])
        except (TypeError, ValueError):
            out["rho"] = float("nan")
        if not -1 < out["rho"] < 1:
            raise SelectionError(f"view {name!r}: rho must be a correlation between -1 and 1")
    if "small_sample" in out and out["small_sample"] not in ("CR2", "CR1"):
        raise SelectionError(f"view {name!r}: small_sample must be CR2 or CR1")
    if "smooth_vi" in out:
        value = out["smooth_vi"]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise SelectionError(f"view {name!r}: smooth_vi must be true or false")
        out["smooth_vi"] = value
    for key in ("method", "test"):
        if key in out:
            out[key] = str(out[key])
    return out


def as_tuple(values: Sequence[str] | str | None) -> tuple[str, ...]:
    """Moderators given as a list or a comma-separated text."""
    if values is None:
        return ()
    if isinstance(values, str):
        return tuple(v.strip() for v in values.split(",") if v.strip())
    return tuple(values)
