"""The living report: one self-contained HTML file for a whole review.

:func:`build_report` writes, per outcome domain and analysis view, the estimate table,
forest and funnel plots (inline SVG), the publication-bias tests and warnings; what changed
since the previous report (records added, changed or deleted; estimates that moved and by
how much); provenance (data revision, engine version, database migration, time); and a
banner when any of the evidence is simulated. The page needs no network and no script.

Notes
-----
The previous report is read from the file itself: every report carries its data revision
and its published estimates in a JSON data block (``<script type="application/json">``,
never executed). By default the file about to be overwritten is the previous report, so
running ``evidence report -o report.html`` again reports the changes since the last run; a
previous report elsewhere or a data revision number may be given instead (then the
estimates are those stored for the views at that revision). No table is needed, so the
report adds no migration.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evidence import __version__
from evidence.db.engine import current_revision, database_error
from evidence.db.history import list_changes
from evidence.db.models import metadata
from evidence.errors import EvidenceError, NotFoundError
from evidence.report.figures import inline_svg, view_figure
from evidence.views import results_table, view_history
from evidence.views.dataset import review_row
from evidence.views.diagnostics import TESTS, bias_tests
from evidence.views.fit import ViewFit, fit_views

__all__ = ["ReportResult", "build_report", "read_report_data"]

_DATA_ID = "evidence-report-data"
_DATA_RE = re.compile(
    r'<script type="application/json" id="' + _DATA_ID + r'">(.*?)</script>', re.S
)
_TEST_TITLES = {
    "egger": "Egger's regression test",
    "begg": "Begg's rank correlation",
    "trimfill": "Trim and fill",
    "pet_peese": "PET-PEESE",
    "fsn": "Fail-safe N (Rosenthal)",
}


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote."""

    path: Path
    review: str
    revision: int
    previous_revision: int | None
    views: int
    figures: int
    simulated: bool
    changes: dict[str, int] = field(default_factory=dict)
    moved: tuple[dict[str, Any], ...] = ()
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "review": self.review,
            "revision": self.revision,
            "previous_revision": self.previous_revision,
            "views": self.views,
            "figures": self.figures,
            "simulated": self.simulated,
            "changes": self.changes,
            "moved": list(self.moved),
            "size": self.size,
        }


def read_report_data(path: str | Path) -> dict[str, Any]:
    """The data block of a report written by :func:`build_report` (revision, estimates).

    Raises
    ------
    NotFoundError
        The file does not exist or holds no report data.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as error:
        raise NotFoundError(f"cannot read the previous report '{p}': {error.strerror}") from error
    found = _DATA_RE.search(text)
    if found is None:
        raise NotFoundError(f"'{p}' is not a report written by `evidence report`")
    return json.loads(found.group(1))


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _interval(lb: Any, ub: Any) -> str:
    if lb is None or ub is None:
        return "–"
    return f"{_fmt(lb)} to {_fmt(ub)}"


def _previous_estimates(engine: Engine, revision: int, review: str) -> dict[str, dict]:
    """Each view's stored estimate as it stood at *revision* (its latest result then)."""
    from evidence.views import list_views

    out = {}
    for st in list_views(engine, review=review):
        entries = [
            e for e in view_history(engine, st.spec.name, review=review).entries
            if e["revision"] <= revision and e["status"] == "ok"
        ]  # fmt: skip
        if entries:
            e = entries[-1]
            out[st.spec.name] = {
                "estimate": e["estimate"],
                "ci_lb": e["ci_lb"],
                "ci_ub": e["ci_ub"],
                "k_effects": e["k_effects"],
                "k_studies": e["k_studies"],
            }
    return out


def _record_changes(engine: Engine, after: int, upto: int) -> tuple[dict[str, int], list[dict]]:
    """Counts of logged changes in (after, upto] by ``op table`` and one row per study."""
    counts: dict[str, int] = {}
    changes = []
    for rev in range(after + 1, upto + 1):
        changes += list_changes(engine, revision=rev)
    st = metadata.tables["study"].c
    owners: dict[str, dict[int, int]] = {}
    try:
        with engine.connect() as conn:
            keys = dict(conn.execute(sa.select(st.id, st.study_key)).all())
            for table in ("result", "arm"):
                t = metadata.tables[table].c
                owners[table] = dict(conn.execute(sa.select(t.id, t.study_id)).all())
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    for ch in changes:  # rows deleted since: their study from the logged values
        if ch.table_name in owners and ch.old_values:
            owners[ch.table_name].setdefault(ch.row_id, ch.old_values.get("study_id"))
    studies: dict[str, dict[str, Any]] = {}
    for ch in changes:
        verb = {"insert": "added", "update": "changed", "delete": "deleted"}.get(ch.op, ch.op)
        name = f"{ch.table_name} {verb}"
        counts[name] = counts.get(name, 0) + 1
        values = {**(ch.old_values or {}), **(ch.new_values or {})}
        if ch.table_name == "study":
            key = values.get("study_key") or keys.get(ch.row_id)
        else:
            sid = values.get("study_id")
            if sid is None and values.get("result_id") is not None:
                sid = owners["result"].get(values["result_id"])
            if sid is None and values.get("arm_id") is not None:
                sid = owners["arm"].get(values["arm_id"])
            key = keys.get(sid) if sid is not None else None
        label = str(key) if key else "(other records)"
        entry = studies.setdefault(label, {"study": label, "ops": {}, "columns": set()})
        entry["ops"][name] = entry["ops"].get(name, 0) + 1
        if ch.op == "update":
            entry["columns"].update(c for c in ch.changed_columns if c not in ("id",))
    rows = [
        {
            "study": s["study"],
            "what": ", ".join(f"{n} {op}" for op, n in sorted(s["ops"].items())),
            "columns": ", ".join(sorted(s["columns"])),
        }
        for s in studies.values()
    ]
    return dict(sorted(counts.items())), rows


def _migration(engine: Engine) -> str:
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar())
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error


def _domain_of(vf: ViewFit) -> str:
    doms = vf.domains
    return ", ".join(doms) if doms else "all outcomes"


def _warnings(vf: ViewFit, status_row: dict[str, Any] | None, bias: Any) -> list[str]:
    out = []
    if vf.error:
        out.append(f"The model could not be fitted: {vf.error}.")
        return out
    if status_row is not None and status_row.get("fresh") is False:
        out.append("The stored estimate was stale when the report was built.")
    if vf.k_studies < 10:
        out.append(
            f"Only {vf.k_studies} studies: tests for funnel plot asymmetry have little power."
        )
    egger = bias.results.get("egger") if bias is not None else None
    if egger is not None and egger.pval < 0.10:
        out.append(f"Funnel plot asymmetry (Egger's test p = {egger.pval:.3f}).")
    tf = bias.results.get("trimfill") if bias is not None else None
    if tf is not None and tf.k0 > 0:
        out.append(
            f"Trim and fill imputes {tf.k0} missing effects on the {tf.side}; the adjusted "
            f"estimate is {float(tf.fit.beta[0]):.2f}."
        )
    i2 = getattr(vf.result, "I2", None)
    if i2 is not None and math.isfinite(float(i2)) and float(i2) >= 75:
        out.append(f"Considerable heterogeneity (I² = {float(i2):.0f}%).")
    if vf.rob is None:
        out.append("No risk-of-bias judgements are stored for these studies.")
    return out


def build_report(
    engine: Engine,
    path: str | Path,
    *,
    review: str | None = None,
    previous: str | Path | int | None = None,
) -> ReportResult:
    """Write the review's living report to *path* (one self-contained HTML file).

    Parameters
    ----------
    review
        The review (default: the only one in the database).
    previous
        The previous report: a report file, or a data revision number. Default: the file
        at *path* when it is a report of the same review (it is about to be replaced);
        otherwise this is the first report and "what changed" says so.

    Returns
    -------
    ReportResult
        Where it was written, the data revision, the changes since the previous report.

    Raises
    ------
    NotFoundError
        No such review, or *previous* names no report or a revision that does not exist.
    EvidenceError
        The file cannot be written.
    """
    import jinja2

    out_path = Path(path)
    table = results_table(engine, review=review)  # refreshes stale views first
    with engine.connect() as conn:
        rv = review_row(conn, review)
    revision = current_revision(engine)
    fits = fit_views(engine, review=rv.name)

    prev_data: dict[str, Any] | None = None
    if isinstance(previous, int) and not isinstance(previous, bool):
        if not 0 <= previous <= revision:
            raise NotFoundError(f"revision {previous} does not exist (latest: {revision})")
        prev_data = {
            "revision": previous,
            "built_at": None,
            "estimates": _previous_estimates(engine, previous, rv.name),
        }
    elif previous is not None:
        prev_data = read_report_data(previous)
    elif out_path.exists():
        try:
            prev_data = read_report_data(out_path)
        except (NotFoundError, ValueError):
            prev_data = None
    if prev_data is not None and prev_data.get("review", rv.name) != rv.name:
        prev_data = None

    rows_by_view: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_dict("records"):
        rows_by_view.setdefault(row["view"], []).append(row)

    sections: dict[str, list[dict[str, Any]]] = {}
    estimates: dict[str, dict[str, Any]] = {}
    drawn: dict[tuple, str] = {}
    tested: dict[tuple, str] = {}
    n_fig = 0
    simulated = bool(table.attrs.get("simulated"))
    for i, vf in enumerate(fits):
        name = vf.spec.name
        simulated |= vf.simulated
        bias = bias_tests(vf) if vf.fit is not None else None
        effects = tuple(vf.data["es_id"].tolist())
        bias_same_as = tested.get(effects) if bias is not None else None
        if bias is not None and bias_same_as is None:
            tested[effects] = name
        figures = []
        kinds = ["forest", "funnel"]
        if vf.spec.moderators:
            kinds = ["bubble", "funnel"]
        for kind in kinds:
            key = (kind, vf.spec.subgroup if kind == "forest" else None,
                   tuple(vf.data["es_id"].tolist()))  # fmt: skip
            if vf.fit is None:
                continue
            if kind != "bubble" and key in drawn:
                figures.append({"kind": kind, "svg": None, "same_as": drawn[key], "error": None})
                continue
            try:
                fig = view_figure(vf, kind)
            except EvidenceError as error:
                figures.append({"kind": kind, "svg": None, "same_as": None, "error": error.message})
                continue
            svg = inline_svg(fig, f"f{i}{kind[:2]}")
            figures.append({"kind": kind, "svg": svg, "same_as": None, "error": None})
            drawn[key] = name
            n_fig += 1
        view_rows = rows_by_view.get(name, [])
        head = view_rows[0] if view_rows else None
        if head is not None:
            estimates[name] = {
                "estimate": head["estimate"],
                "ci_lb": head["ci_lb"],
                "ci_ub": head["ci_ub"],
                "k_effects": head["k_effects"],
                "k_studies": head["k_studies"],
            }
        sections.setdefault(_domain_of(vf), []).append(
            {
                "name": name,
                "anchor": f"view-{i}",
                "title": vf.spec.title or name,
                "spec": vf.spec,
                "rows": [
                    {
                        "label": r["level"] or "overall",
                        "k_studies": r["k_studies"],
                        "k_effects": r["k_effects"],
                        "estimate": _fmt(r["estimate"]),
                        "ci": _interval(r["ci_lb"], r["ci_ub"]),
                        "pi": _interval(r["pi_lb"], r["pi_ub"]),
                        "heterogeneity": r["heterogeneity"],
                        "test": r["test"],
                    }
                    for r in view_rows
                ],
                "bias": [{"test": _TEST_TITLES[t], "result": bias.summary(t)} for t in TESTS]
                if bias is not None and bias_same_as is None
                else [],
                "bias_same_as": bias_same_as,
                "bias_univariate": bool(bias and bias.univariate),
                "warnings": _warnings(vf, head, bias),
                "figures": figures,
                "simulated": vf.simulated,
            }
        )

    counts: dict[str, int] = {}
    record_rows: list[dict] = []
    moved: list[dict[str, Any]] = []
    if prev_data is not None:
        prev_rev = int(prev_data["revision"])
        counts, record_rows = _record_changes(engine, prev_rev, revision)
        before = prev_data.get("estimates", {})
        for name, now in estimates.items():
            then = before.get(name)
            if then is None:
                moved.append({"view": name, "note": "new view", "shift": None, **_pair(None, now)})
                continue
            a, b = then.get("estimate"), now.get("estimate")
            shift = None if a is None or b is None else b - a
            if shift is None or abs(shift) >= 5e-5 or then.get("k_effects") != now["k_effects"]:
                moved.append({"view": name, "note": "", "shift": shift, **_pair(then, now)})
        for name in before:
            if name not in estimates:
                moved.append({"view": name, "note": "view removed", "shift": None,
                              **_pair(before[name], None)})  # fmt: skip

    built_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    data_block = {
        "review": rv.name,
        "revision": revision,
        "built_at": built_at.isoformat(),
        "engine_version": __version__,
        "estimates": estimates,
    }
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _fmt
    env.filters["signed"] = lambda x: "–" if x is None else f"{x:+.3f}"
    template = env.from_string(
        resources.files("evidence.report")
        .joinpath("templates", "report.html.j2")
        .read_text(encoding="utf-8")
    )
    page = template.render(
        review=rv.name,
        title=getattr(rv, "title", None) or rv.name,
        simulated=simulated,
        sections=sections,
        n_views=len(fits),
        previous=prev_data,
        counts=counts,
        record_rows=record_rows,
        moved=moved,
        provenance={
            "revision": revision,
            "engine_version": __version__,
            "migration": _migration(engine),
            "built_at": built_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "database": engine.url.render_as_string(hide_password=True),
        },
        data_json=json.dumps(data_block, sort_keys=True).replace("</", "<\\/"),
        data_id=_DATA_ID,
        measure=fits[0].spec.measure if fits else None,
    )
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise EvidenceError(
            f"cannot write the report to '{out_path}': {error.strerror or error}"
        ) from error
    return ReportResult(
        path=out_path,
        review=rv.name,
        revision=revision,
        previous_revision=None if prev_data is None else int(prev_data["revision"]),
        views=len(fits),
        figures=n_fig,
        simulated=simulated,
        changes=counts,
        moved=tuple(moved),
        size=len(page.encode("utf-8")),
    )


def _pair(then: dict | None, now: dict | None) -> dict[str, Any]:
    def ci(d: dict | None) -> str:
        return "–" if d is None else _interval(d.get("ci_lb"), d.get("ci_ub"))

    return {
        "before": None if then is None else then.get("estimate"),
        "after": None if now is None else now.get("estimate"),
        "ci_before": ci(then),
        "ci_after": ci(now),
        "k_before": None if then is None else then.get("k_effects"),
        "k_after": None if now is None else now.get("k_effects"),
    }
