"""Printing and JSON rendering of multilevel results in metafor's ``print.rma.mv`` layout."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evidence.stats._format import (
    SIGNIF_LEGEND,
    fcf,
    fmt_num,
    fmt_pval,
    format_btt,
    format_frame,
    format_vector,
    model_results_lines,
    signif_stars,
)


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _r_median(x: np.ndarray) -> str:
    return fmt_num(float(np.median(x)))


def format_result(res) -> str:
    """The text metafor prints for an ``rma.mv`` (or ``robust.rma``) object."""
    out = ["", f"Multivariate Meta-Analysis Model (k = {res.k}; method: {res.method})", ""]
    out += ["Variance Components:", ""]
    rows = [
        [
            fcf(s, 4),
            fcf(math.sqrt(s), 4),
            str(n),
            "yes" if fx else "no",
            name,
        ]
        for s, n, fx, name in zip(
            res.sigma2, res.s_nlevels, res.sigma2_fixed, res.sigma2_names, strict=True
        )
    ]
    rn = [f"sigma^2.{i + 1}" for i in range(len(rows))]
    out += format_frame(["estim", "sqrt", "nlvls", "fixed", "factor"], rows, rn)
    out.append("")
    qep = fmt_pval(res.QEp, 4, showeq=True, sep=" ")
    if res.int_only:
        out.append("Test for Heterogeneity:")
        out.append(f"Q(df = {res.QE_df}) = {fcf(res.QE, 4)}, p-val {qep}")
    else:
        out.append("Test for Residual Heterogeneity:")
        out.append(f"QE(df = {res.QE_df}) = {fcf(res.QE, 4)}, p-val {qep}")
    out.append("")
    foot = "\u00b9" if res.robust_type else ""
    if res.robust_type:
        cs = res.cluster_sizes
        out.append(f"Number of estimates:   {res.k}")
        out.append(f"Number of clusters:    {res.n_clusters}")
        out.append(
            f"Estimates per cluster: {int(cs.min())}-{int(cs.max())} "
            f"(mean: {cs.mean():.2f}, median: {_r_median(cs)})"
        )
        out.append("")
    if not res.int_only:
        out.append(
            f"Test of Moderators (coefficient{'s' if len(res.btt) > 1 else ''} "
            f"{format_btt([b + 1 for b in res.btt])}):{foot}"
        )
        p = fmt_pval(res.QMp, 4, showeq=True, sep=" ")
        if res.ddf is None:
            out.append(f"QM(df = {int(res.QM_df[0])}) = {fcf(res.QM, 4)}, p-val {p}")
        else:
            df2 = fmt_num(round(res.QM_df[1], 2))
            out.append(f"F(df1 = {int(res.QM_df[0])}, df2 = {df2}) = {fcf(res.QM, 4)}, p-val {p}")
        out.append("")
    out += ["Model Results:", ""]
    if res.robust_type:
        out += _robust_table(res)
    else:
        out += model_results_lines(
            res.names,
            res.beta,
            res.se,
            res.zval,
            res.pval,
            res.ci_lb,
            res.ci_ub,
            df=res.ddf,
            int_only=res.int_only,
        )
    out += ["", "---", SIGNIF_LEGEND, ""]
    if res.robust_type:
        if res.robust_type == "CR2":
            tail = "approx t/F-tests and confidence intervals, df: Satterthwaite approx)"
        else:
            tail = "approx t/F-tests and confidence intervals, df: residual method)"
        out.append(
            f"1) results based on cluster-robust inference (var-cov estimator: {res.robust_type},"
        )
        out.append("   " + tail)
        out.append("")
    return "\n".join(out) + "\n"


def _robust_table(res) -> list[str]:
    header = [
        "estimate",
        "se\u00b9",
        "tval\u00b9",
        "df\u00b9",
        "pval\u00b9",
        "ci.lb\u00b9",
        "ci.ub\u00b9",
        "",
    ]
    rows = []
    for i in range(res.p):
        rows.append(
            [
                fcf(res.beta[i], 4),
                fcf(res.se[i], 4),
                fcf(res.zval[i], 4),
                fmt_num(round(float(res.ddf[i]), 2)),
                fmt_pval(res.pval[i], 4),
                fcf(res.ci_lb[i], 4),
                fcf(res.ci_ub[i], 4),
                signif_stars(res.pval[i]),
            ]
        )
    if res.int_only:
        return format_vector(header, rows[0])
    return format_frame(header, rows, list(res.names))


def format_prediction(pr) -> str:
    """metafor's ``print.list.rma`` for a prediction."""
    header = ["pred", "se", "ci.lb", "ci.ub", "pi.lb", "pi.ub"]
    rows = [
        [
            fcf(pr.pred[i], 4),
            fcf(pr.se[i], 4),
            fcf(pr.ci_lb[i], 4),
            fcf(pr.ci_ub[i], 4),
            fcf(pr.pi_lb[i], 4),
            fcf(pr.pi_ub[i], 4),
        ]
        for i in range(len(pr.pred))
    ]
    names = [""] if len(rows) == 1 else [str(i + 1) for i in range(len(rows))]
    return "\n" + "\n".join(format_frame(header, rows, names, gap=1)) + "\n"


def result_dict(res) -> dict[str, Any]:
    """JSON-safe dict with the keys of ``evidence meta --json`` plus the multilevel keys."""
    coefs = []
    for i, name in enumerate(res.names):
        coefs.append(
            {
                "name": name,
                "estimate": _f(res.beta[i]),
                "se": _f(res.se[i]),
                "stat": _f(res.zval[i]),
                "df": None if res.ddf is None else _f(res.ddf[i]),
                "pval": _f(res.pval[i]),
                "ci_lb": _f(res.ci_lb[i]),
                "ci_ub": _f(res.ci_ub[i]),
            }
        )
    pi_lb = pi_ub = None
    if res.int_only:
        pr = res.predict()
        pi_lb, pi_ub = _f(pr.pi_lb[0]), _f(pr.pi_ub[0])
    return {
        "model": "multilevel",
        "method": res.method,
        "test": "t" if res.robust_type else res.test,
        "level": res.level,
        "k": res.k,
        "p": res.p,
        "coefficients": coefs,
        "tau2": None,
        "se_tau2": None,
        "tau2_ci_lb": None,
        "tau2_ci_ub": None,
        "I2": _f(res.I2),
        "H2": None,
        "QE": _f(res.QE),
        "QE_df": res.QE_df,
        "QEp": _f(res.QEp),
        "QM": None if res.int_only else _f(res.QM),
        "QM_df": None if res.int_only else [_f(x) for x in res.QM_df],
        "QMp": None if res.int_only else _f(res.QMp),
        "pi_lb": pi_lb,
        "pi_ub": pi_ub,
        "converged": bool(res.converged),
        "iterations": int(res.iterations),
        "warnings": list(res.warnings),
        "sigma2": [_f(s) for s in res.sigma2],
        "sigma2_names": list(res.sigma2_names),
        "I2_levels": [_f(x) for x in res.I2_levels],
        "robust": None
        if res.robust_type is None
        else {"type": res.robust_type, "clusters": int(res.n_clusters)},
    }
