"""Fitting a view on the analysis dataset, and the fingerprint of its inputs.

:func:`compute` selects the rows, fits the view's model (overall estimate; plus the
meta-regression or the subgroup analysis) and returns a :class:`Computation`: the headline
numbers stored in ``view_result`` columns, the full result as a JSON-ready dict and the
metafor-style printed summary.

Notes
-----
The headline estimate of every view is the pooled effect of its selection (the
intercept-only model); a meta-regression or subgroup view adds the test of moderators
(``QM``, ``QMp``: the omnibus test of the moderator model, or of the subgroup contrasts
under a common heterogeneity). The fingerprint is the SHA-256 of the view's canonical
definition, the engine version, for CHE views the recipe's settings (:func:`che_settings`:
rho, smoothing of the sampling variances, small-sample correction) and the selected rows'
``es_id, study, yi, vi, cluster`` and moderator/subgroup values (pandas' stable row hashes,
fixed key), so equal inputs give equal fingerprints in any process.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings as _warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evidence import __version__
from evidence.errors import EvidenceError
from evidence.views.selection import Selection, evaluate
from evidence.views.spec import ViewSpec

__all__ = ["Computation", "che_settings", "compute", "fingerprint", "selected_frame"]

ENGINE_VERSION = __version__
_BULKY = ("yi", "vi", "X", "weights", "user_weights", "not_na", "control")


@dataclass(frozen=True)
class Computation:
    """What one computation of a view found (before it is stored)."""

    fingerprint: str
    status: str  # "ok" | "error"
    error: str | None
    result: dict[str, Any]
    summary: str
    k_studies: int
    k_effects: int
    simulated: bool
    headline: dict[str, float | None] = field(default_factory=dict)


def _columns(spec: ViewSpec) -> list[str]:
    cols = ["es_id", "study", "yi", "vi", "cluster", "simulated"]
    extra = list(spec.moderators) + ([spec.subgroup] if spec.subgroup else [])
    return cols + [c for c in extra if c not in cols]


def selected_frame(spec: ViewSpec, selection: Selection, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a view uses: selected, with finite ``yi`` and ``vi`` and every moderator."""
    keep = evaluate(selection, frame)
    keep &= np.isfinite(frame["yi"].to_numpy(float)) & np.isfinite(frame["vi"].to_numpy(float))
    for name in (*spec.moderators, *([spec.subgroup] if spec.subgroup else [])):
        keep &= frame[name].notna().to_numpy()
    return frame.loc[keep, _columns(spec)].reset_index(drop=True)


def fingerprint(spec: ViewSpec, data: pd.DataFrame) -> str:
    """SHA-256 of the view's definition, the engine version and its input rows."""
    digest = hashlib.sha256()
    digest.update(spec.canonical().encode())
    digest.update(ENGINE_VERSION.encode())
    if spec.model == "che":  # the recipe's settings: results fitted before smoothing go stale
        digest.update(json.dumps(che_settings(spec), sort_keys=True).encode())
    digest.update(json.dumps(list(data.columns)).encode())
    if len(data):
        hashed = pd.util.hash_pandas_object(data.astype(object), index=False)
        digest.update(hashed.to_numpy().tobytes())
    return digest.hexdigest()


def _f(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _safe(name: str) -> str:
    return name.replace(".", "_")


def _design(spec: ViewSpec, data: pd.DataFrame, kinds: dict[str, str]) -> tuple[str, dict]:
    columns: dict[str, Any] = {"yi": data["yi"].to_numpy(float), "vi": data["vi"].to_numpy(float)}
    terms = []
    for name in spec.moderators:
        col = _safe(name)
        if kinds.get(name) == "number":
            columns[col] = data[name].to_numpy(float)
            terms.append(col)
        elif kinds.get(name) == "bool":
            columns[col] = data[name].astype(float).to_numpy()
            terms.append(col)
        else:
            columns[col] = data[name].astype(str).to_numpy(dtype=object)
            terms.append(f"C({col})")
    return " + ".join(terms), columns


class _Fitter:
    """Fits one model family with the view's options."""

    def __init__(self, spec: ViewSpec) -> None:
        self.spec = spec
        self.o = dict(spec.options)

    def fit(self, data: pd.DataFrame, mods: str | None = None, columns: dict | None = None):
        """The fitted model as the view reports it (the robust version for CHE)."""
        model, robust_fit = self.fit_model(data, mods, columns)
        return model if robust_fit is None else robust_fit

    def fit_model(
        self, data: pd.DataFrame, mods: str | None = None, columns: dict | None = None
    ) -> tuple[Any, Any]:
        """``(model, robust)``: the model fit and, for CHE, its cluster-robust version."""
        from evidence.stats import che, rma
        from evidence.stats.rma_mv import rma_mv

        o, model = self.o, self.spec.model
        cols = columns or {"yi": data["yi"].to_numpy(float), "vi": data["vi"].to_numpy(float)}
        if model == "rma":
            fit = rma(
                "yi",
                "vi",
                mods=mods or None,
                data=cols,
                method=o["method"],
                test=o["test"],
                level=o["level"],
            )
            return fit, None
        study = data["study"].astype(str).to_numpy(dtype=object)
        es = data["es_id"].astype(str).to_numpy(dtype=object)
        cols = {**cols, "study": study, "es_id": es}
        if model == "three-level":
            fit = rma_mv(
                "yi",
                "vi",
                random=("study", "es_id"),
                data=cols,
                mods=mods or None,
                method=o["method"],
                test=o["test"],
                level=o["level"],
            )
            return fit, None
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            res = che("yi", "vi", study, es, data=cols, mods=mods or None, **_che_options(o))
        return res.model, res.robust


def _che_options(o: dict[str, Any]) -> dict[str, Any]:
    """A CHE view's options as :func:`evidence.stats.che` takes them (its defaults otherwise)."""
    return {
        "rho": float(o.get("rho", 0.6)),
        "smooth_vi": bool(o.get("smooth_vi", True)),
        "small_sample": "CR2" if o.get("small_sample", "CR2") == "CR2" else "CR1",
        "method": o["method"],
        "test": o["test"],
        "level": o["level"],
    }


def che_settings(spec: ViewSpec) -> dict[str, Any] | None:
    """The CHE settings of a ``che`` view (with the line that states them), else None."""
    if spec.model != "che":
        return None
    from evidence.stats.che import che_setting

    o = _che_options({"method": "", "test": "", "level": 0, **spec.options})
    keys = ("rho", "smooth_vi", "small_sample")
    return {**{k: o[k] for k in keys}, "setting": che_setting(*(o[k] for k in keys))}


def _headline(res: Any) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "estimate": _f(res.beta[0]),
        "se": _f(res.se[0]),
        "ci_lb": _f(res.ci_lb[0]),
        "ci_ub": _f(res.ci_ub[0]),
        "pval": _f(res.pval[0]),
        "I2": _f(res.I2),
    }
    if hasattr(res, "tau2"):
        from evidence.stats import predict

        pr = predict(res)
        out.update(tau2=_f(res.tau2), pi_lb=_f(pr.pi_lb[0]), pi_ub=_f(pr.pi_ub[0]))
    else:
        pi = _mv_pi(res)
        out.update(tau2=None, pi_lb=_f(pi[0]), pi_ub=_f(pi[1]))
        out["sigma2"] = [_f(s) for s in res.sigma2]  # type: ignore[assignment]
    return out


def _mv_pi(res: Any) -> tuple[float, float]:
    """A multilevel fit's prediction interval: metafor's, or metapsyTools' when robust."""
    if res.robust_type is not None:
        from evidence.stats.che import prediction_interval

        return prediction_interval(res)
    pr = res.predict()
    return float(pr.pi_lb[0]), float(pr.pi_ub[0])


def _to_dict(res: Any) -> dict[str, Any]:
    out = res.to_dict()
    if getattr(res, "robust_type", None) is not None and res.int_only:
        out["pi_lb"], out["pi_ub"] = (_f(x) for x in _mv_pi(res))
    for key in _BULKY:
        out.pop(key, None)
    return out


def compute(
    spec: ViewSpec, selection: Selection, frame: pd.DataFrame, kinds: dict[str, str]
) -> Computation:
    """Select, fit and summarise one view on *frame* (the analysis dataset).

    Parameters
    ----------
    kinds
        Field name -> kind (``number``, ``bool``, ``categorical``, ``text``).

    A model that cannot be fitted (too few studies, no convergence) gives a computation
    with ``status = "error"`` and the one-line reason; it is stored like any other result.
    """
    data = selected_frame(spec, selection, frame)
    fp = fingerprint(spec, data)
    k_effects = len(data)
    k_studies = int(data["study"].nunique())
    simulated = bool(data["simulated"].fillna(False).astype(bool).any()) if k_effects else False
    base = {
        "view": spec.to_dict(),
        "k_effects": k_effects,
        "k_studies": k_studies,
        "engine_version": ENGINE_VERSION,
    }
    fitter = _Fitter(spec)
    try:
        if k_effects == 0:
            raise EvidenceError("the selection holds no usable effect size (k = 0)")
        overall = fitter.fit(data)
        headline = _headline(overall)
        result = {**base, "overall": _to_dict(overall)}
        parts = [
            f"View {spec.name!r}: {spec.model}, {k_studies} studies, {k_effects} effect "
            "sizes" + (" (SIMULATED data)" if simulated else ""),
            str(overall),
        ]
        settings = che_settings(spec)
        if settings is not None:
            result["che"] = settings
            parts.insert(1, settings["setting"])
        if spec.moderators:
            mods, cols = _design(spec, data, kinds)
            reg = fitter.fit(data, mods, cols)
            result["moderators"] = _to_dict(reg)
            headline.update(QM=_f(reg.QM), QMp=_f(reg.QMp))
            parts += [f"Meta-regression on {', '.join(spec.moderators)}:", str(reg)]
        elif spec.subgroup:
            result["subgroup"], text, qm = _subgroups(fitter, spec, data)
            headline.update(qm)
            parts.append(text)
    except EvidenceError as error:
        return Computation(
            fp,
            "error",
            error.message,
            {**base, "error": error.message},
            f"View {spec.name!r}: not computed: {error.message}\n",
            k_studies,
            k_effects,
            simulated,
            {},
        )
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as error:
        message = f"the model could not be fitted: {error}"
        return Computation(
            fp,
            "error",
            message,
            {**base, "error": message},
            f"View {spec.name!r}: not computed: {message}\n",
            k_studies,
            k_effects,
            simulated,
            {},
        )
    return Computation(
        fp, "ok", None, result, "\n".join(parts), k_studies, k_effects, simulated, headline
    )


def _subgroups(
    fitter: _Fitter, spec: ViewSpec, data: pd.DataFrame
) -> tuple[dict[str, Any], str, dict]:
    by = spec.subgroup
    assert by is not None
    labels = data[by].astype(str)
    levels = list(dict.fromkeys(sorted(labels.unique())))
    groups: dict[str, Any] = {}
    lines = [f"Subgroups by {by!r}:", ""]
    lines.append(f"{'level':<24}{'studies':>8}{'k':>6}{'estimate':>10}{'ci.lb':>9}{'ci.ub':>9}")
    for level in levels:
        part = data[labels.to_numpy() == level].reset_index(drop=True)
        entry: dict[str, Any] = {"k_effects": len(part), "k_studies": int(part["study"].nunique())}
        try:
            res = fitter.fit(part)
            entry.update(_headline(res))
            est = f"{res.beta[0]:>10.4f}{res.ci_lb[0]:>9.4f}{res.ci_ub[0]:>9.4f}"
        except (EvidenceError, np.linalg.LinAlgError, ValueError) as error:
            entry["error"] = getattr(error, "message", str(error))
            est = f"{'not estimable':>28}"
        groups[level] = entry
        lines.append(f"{level:<24}{entry['k_studies']:>8}{entry['k_effects']:>6}{est}")
    out: dict[str, Any] = {"by": by, "levels": groups}
    qm: dict[str, float | None] = {}
    if len(levels) >= 2:
        col = _safe(by)
        cols = {
            "yi": data["yi"].to_numpy(float),
            "vi": data["vi"].to_numpy(float),
            col: labels.to_numpy(dtype=object),
        }
        try:
            mixed = fitter.fit(data, f"C({col})", cols)
            qm = {"QM": _f(mixed.QM), "QMp": _f(mixed.QMp)}
            out["test_between"] = {
                "QM": qm["QM"],
                "QMp": qm["QMp"],
                "df": [_f(x) for x in _qm_df(mixed)],
            }
            lines += ["", f"Test of subgroup differences: QM = {mixed.QM:.4f}, p = {mixed.QMp:.4g}"]
        except (EvidenceError, np.linalg.LinAlgError, ValueError) as error:
            out["test_between"] = {"error": getattr(error, "message", str(error))}
            lines += ["", f"Test of subgroup differences: not estimable ({out['test_between']})"]
    return out, "\n".join(lines) + "\n", qm


def _qm_df(res: Any) -> tuple[float, ...]:
    return tuple(getattr(res, "QMdf", None) or getattr(res, "QM_df", ()) or ())
