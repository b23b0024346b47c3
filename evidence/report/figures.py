"""The figures of a view for the report and the command line, and their inline SVG text."""

from __future__ import annotations

import io
import re
from typing import Any

from evidence.errors import EvidenceError
from evidence.views.diagnostics import univariate_fit
from evidence.views.fit import ViewFit

__all__ = ["FIGURES", "view_figure", "inline_svg", "subgroup_estimates", "cumulative_by_study"]

FIGURES = ("forest", "funnel", "cumulative", "bubble")


_MODELS = {"rma": "RE Model", "three-level": "Three-level model", "che": "CHE model, robust"}


def _title(vf: ViewFit, kind: str) -> str:
    return f"{vf.spec.name}: {kind}"


def _summary_label(vf: ViewFit) -> str:
    """The overall row of a view's forest plot: its model, k effects and studies."""
    name = _MODELS.get(vf.spec.model, vf.spec.model)
    if vf.spec.model == "rma" and vf.spec.options.get("method") in ("EE", "FE", "CE"):
        name = "EE Model"
    return f"{name} (k = {vf.k_effects}, {vf.k_studies} studies)"


def subgroup_estimates(vf: ViewFit) -> dict[str, tuple[float, float, float] | None]:
    """The view's own estimate and CI of each subgroup level (None: not estimable).

    Notes
    -----
    The view is computed again on its selected rows (:func:`evidence.views.compute.compute`,
    the function that stores its results), so the diamonds of the forest plot are the
    numbers of the view's estimate table (CHE with robust variance, three-level or
    univariate, per level), not a univariate refit.
    """
    from evidence.views.compute import compute
    from evidence.views.selection import parse_selection

    done = compute(vf.spec, parse_selection("", {}), vf.data, {})
    levels = (done.result.get("subgroup") or {}).get("levels", {})
    out: dict[str, tuple[float, float, float] | None] = {}
    for level, entry in levels.items():
        vals = (entry.get("estimate"), entry.get("ci_lb"), entry.get("ci_ub"))
        out[str(level)] = None if any(v is None for v in vals) else vals
    return out


def cumulative_by_study(vf: ViewFit, fit: Any) -> Any:
    """Cumulative meta-analysis of *fit* (the view's effects) adding one study at a time.

    Studies are ordered by year (then by their first row); all effects of a study enter
    together, so row j is :func:`evidence.stats.cumul`'s row after the last effect of the
    j-th study, labelled ``study (year)``.
    """
    from dataclasses import replace

    import numpy as np

    from evidence.stats import cumul

    study = np.asarray(vf.study, dtype=object)
    year = vf.data["year"].to_numpy(dtype=float)
    first = {s: i for i, s in reversed(list(enumerate(study.tolist())))}
    syear = {s: np.nanmin(np.where(study == s, year, np.nan)) if np.any(
        np.isfinite(year[study == s])) else np.inf for s in first}  # fmt: skip
    perm = sorted(range(study.size), key=lambda i: (syear[study[i]], first[study[i]], i))
    rank = np.empty(study.size, dtype=float)
    rank[perm] = np.arange(study.size)
    cum = cumul(fit, order=rank)
    ordered = study[np.asarray(cum.index)]
    last = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    labels = []
    for j in last:
        y = syear[ordered[j]]
        labels.append(f"{ordered[j]} ({int(y)})" if np.isfinite(y) else str(ordered[j]))
    cols = {}
    for key, col in cum.columns.items():
        arr = np.asarray(col)[last]
        arr.setflags(write=False)
        cols[key] = arr
    index = np.asarray(cum.index)[last]
    index.setflags(write=False)
    return replace(cum, columns=cols, slab=tuple(labels), index=index)


def view_figure(vf: ViewFit, kind: str) -> Any:
    """A figure of a fitted view: ``forest`` (grouped by study, by subgroup for subgroup
    views), ``funnel`` (contour-enhanced, with trim and fill), ``cumulative`` (studies added
    by year) or ``bubble`` (the first moderator of a meta-regression view).

    Raises
    ------
    EvidenceError
        Unknown kind, a view that could not be fitted, or a figure the view has not (a
        bubble plot without a moderator).
    """
    from evidence import plots
    from evidence.stats.bias import trimfill

    if kind not in FIGURES:
        raise EvidenceError(f"unknown figure {kind!r}; use one of {', '.join(FIGURES)}")
    if vf.fit is None:
        raise EvidenceError(f"view {vf.spec.name!r} cannot be fitted: {vf.error}")
    measure = vf.spec.measure or "Effect size"
    if kind == "forest":
        by = subs = None
        if vf.spec.subgroup:
            by = vf.data[vf.spec.subgroup].astype(str).to_numpy(dtype=object)
            subs = subgroup_estimates(vf)
        return plots.forest(
            vf.result,
            study=vf.study,
            by=by,
            subgroups=subs,
            yi=vf.yi,
            vi=vf.vi,
            xlabel=measure,
            summary_label=_summary_label(vf),
            title=_title(vf, "forest plot"),
        )
    if kind == "funnel":
        uni = univariate_fit(vf)
        try:
            tf = trimfill(uni)
        except EvidenceError:
            tf = None
        return plots.funnel(uni, trimfill=tf, xlabel=measure, title=_title(vf, "funnel plot"))
    if kind == "cumulative":
        uni = univariate_fit(vf)
        cum = cumulative_by_study(vf, uni)
        note = "" if vf.spec.model == "rma" else " (univariate random-effects model)"
        title = _title(vf, "cumulative meta-analysis by year" + note)
        return plots.cumulative(cum, xlabel=measure, title=title)
    if not vf.spec.moderators or vf.regression is None:
        raise EvidenceError(
            f"view {vf.spec.name!r} has no moderator: a bubble plot needs a meta-regression view"
        )
    reg = vf.moderator_result
    names = [n for n in reg.names if n != "intrcpt"]
    mod = vf.spec.moderators[0]
    if not names or names[0] != mod.replace(".", "_"):
        raise EvidenceError(
            f"view {vf.spec.name!r}: the moderator {mod!r} is not numeric; a bubble plot needs "
            "a numeric moderator (see the forest plot of a subgroup view instead)"
        )
    title = _title(vf, f"bubble plot ({_MODELS.get(vf.spec.model, vf.spec.model)})")
    return plots.bubble(reg, names[0], xlabel=mod, ylabel=measure, title=title)


_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'url\(#([^)]+)\)|xlink:href="#([^"]+)"|\bhref="#([^"]+)"')


def inline_svg(fig: Any, prefix: str) -> str:
    """The figure as an ``<svg>`` element to put inside HTML: text kept as text (small),
    no XML prolog or metadata, every id prefixed with *prefix* so that several figures in
    one page never share an id."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)

    def ref(m: re.Match) -> str:
        if m.group(1):
            return f"url(#{prefix}-{m.group(1)})"
        if m.group(2):
            return f'xlink:href="#{prefix}-{m.group(2)}"'
        return f'href="#{prefix}-{m.group(3)}"'

    text = _REF.sub(ref, text)
    # responsive: keep the aspect ratio, fit the column
    text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                  r'<svg\1 class="fig" style="max-width:\2pt"', text, count=1)  # fmt: skip
    return text
