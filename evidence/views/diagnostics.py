"""Publication-bias tests and sensitivity analyses of a fitted view.

:func:`bias_tests` runs, on a :class:`~evidence.views.fit.ViewFit`, Egger's regression
test (the three-level version, the standard error as a moderator of the view's multilevel
model, for ``three-level`` and ``che`` views), Begg's rank correlation test, trim and fill,
PET-PEESE and Rosenthal's fail-safe N. :func:`view_sensitivity` runs the sensitivity suite
on the view's rows.

Notes
-----
The rank test, trim and fill, PET-PEESE and the fail-safe N assume independent effects;
for a multilevel view they are computed from the univariate random-effects model of all
its effect sizes (the view's tau^2 estimator, ``method`` REML when the view's is not a
univariate estimator), which the output says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evidence.errors import EvidenceError
from evidence.views.fit import ViewFit

__all__ = ["BiasTests", "bias_tests", "univariate_fit", "view_sensitivity"]

_UNI_METHODS = ("EE", "FE", "DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")
TESTS = ("egger", "begg", "trimfill", "pet_peese", "fsn")
_TITLES = {
    "egger": "Egger's regression test",
    "begg": "Begg's rank correlation test",
    "trimfill": "Trim and fill",
    "pet_peese": "PET-PEESE",
    "fsn": "Fail-safe N (Rosenthal)",
}


@dataclass(frozen=True)
class BiasTests:
    """The bias tests of one view: ``results[name]`` is a result object or None, with
    ``errors[name]`` the reason it could not run; ``univariate`` says that the tests other
    than Egger's were computed from a univariate model of a multilevel view."""

    view: str
    results: dict[str, Any]
    errors: dict[str, str]
    univariate: bool
    trimfill_fit: Any = None

    def __str__(self) -> str:
        out = []
        for name in TESTS:
            out.append(f"== {_TITLES[name]} ==")
            if name in ("begg", "trimfill", "pet_peese") and self.univariate:
                out.append("(univariate random-effects model of all effect sizes)")
            res = self.results.get(name)
            out.append(
                str(res).rstrip() if res is not None else f"not computed: {self.errors[name]}"
            )
            out.append("")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "univariate": self.univariate,
            "tests": {
                name: (
                    self.results[name].to_dict()
                    if self.results.get(name) is not None
                    else {"error": self.errors.get(name)}
                )
                for name in TESTS
            },
        }

    def summary(self, name: str) -> str:
        """One line for the report's table of bias tests."""
        res = self.results.get(name)
        if res is None:
            return f"not computed: {self.errors.get(name, '')}"
        if name == "egger":
            stat = "z" if res.dfs != res.dfs or res.dfs == float("inf") else "t"
            return f"{stat} = {res.zval:.3f}, p = {res.pval:.4f}"
        if name == "begg":
            return f"Kendall's tau = {res.tau:.3f}, p = {res.pval:.4f}"
        if name == "trimfill":
            return (
                f"{res.k0} filled on the {res.side}; estimate {float(res.fit.beta[0]):.3f} "
                f"[{float(res.fit.ci_lb[0]):.3f}, {float(res.fit.ci_ub[0]):.3f}]"
            )
        if name == "pet_peese":
            return f"{res.selected}: {res.estimate:.3f} [{res.ci_lb:.3f}, {res.ci_ub:.3f}]"
        return f"N = {res.fsnum:g} (p = {res.pval:.4g})"


def univariate_fit(vf: ViewFit) -> Any:
    """The view's effects in a univariate model: the view's own fit for ``rma`` views, else
    a random-effects model of all its effect sizes (``rma``; dependence ignored)."""
    from evidence.stats import rma

    if vf.spec.model == "rma":
        return vf.fit
    method = vf.spec.options.get("method", "REML")
    return rma(vf.yi, vf.vi, method=method if method in _UNI_METHODS else "REML")


def bias_tests(vf: ViewFit) -> BiasTests:
    """Egger, Begg, trim and fill, PET-PEESE and fail-safe N for a fitted view."""
    from evidence.stats.bias import fsn, pet_peese, ranktest, regtest, regtest_mv, trimfill

    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if vf.fit is None:
        return BiasTests(vf.spec.name, {}, {t: vf.error or "" for t in TESTS}, False)
    try:
        uni = univariate_fit(vf)
    except EvidenceError as error:
        uni = None
        errors.update(dict.fromkeys(TESTS[1:], error.message))
    runs = {
        "egger": lambda: regtest(vf.fit) if vf.spec.model == "rma" else regtest_mv(vf.fit),
        "begg": lambda: ranktest(uni),
        "trimfill": lambda: trimfill(uni),
        "pet_peese": lambda: pet_peese(uni),
        "fsn": lambda: fsn(vf.yi, vf.vi),
    }
    for name, run in runs.items():
        if name in ("begg", "trimfill", "pet_peese") and uni is None:
            results[name] = None
            continue
        try:
            results[name] = run()
        except EvidenceError as error:
            results[name] = None
            errors[name] = error.message
    return BiasTests(vf.spec.name, results, errors, vf.spec.model != "rma")


def view_sensitivity(vf: ViewFit, *, rho: float | None = None) -> Any:
    """The sensitivity suite (:func:`evidence.stats.sensitivity.sensitivity_suite`) on the
    view's rows: its study, effect ids, risk of bias, tau^2 estimator, test and level; rho
    the view's (CHE) or 0.6. The first row is the view's own model, as its estimate table
    shows it."""
    from evidence.stats.sensitivity import sensitivity_suite

    o = vf.spec.options
    method = o.get("method", "REML")
    test = o.get("test", "z")
    return sensitivity_suite(
        vf.yi,
        vf.vi,
        vf.study,
        vf.data["es_id"].astype(str).to_numpy(dtype=object),
        rob=vf.rob,
        rho=float(rho if rho is not None else o.get("rho", 0.6)),
        method=method if method in _UNI_METHODS else "REML",
        test=test if test in ("z", "t", "knha") else "z",
        level=float(o.get("level", 95)),
        model=vf.result,
        model_label=f"View's model ({vf.spec.model})",
    )
