"""Text and HTML renderings of :class:`RMAResult` in metafor's ``print.rma.uni`` layout."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from evidence.stats._format import (
    DIGITS,
    SIGNIF_LEGEND,
    fcf,
    fmt_num,
    fmt_pval,
    format_btt,
    format_vector,
    model_results_lines,
)

if TYPE_CHECKING:
    from evidence.stats._rma_result import RMAResult

__all__ = ["format_rma", "html_rma"]

_EE_TITLES = {
    "FE": "Fixed-Effects Model",
    "EE": "Equal-Effects Model",
    "CE": "Common-Effects Model",
}
_TINY = 2.220446049250313e-16 * 10


def _var(x: float) -> str:
    return fcf(x, 0 if abs(x) <= _TINY else DIGITS["var"])


def format_rma(res: RMAResult, *, showfit: bool = False, signif: bool = True) -> str:
    """The text metafor prints for an ``rma.uni`` fit (``print(res)``), line for line.

    metafor's ``cat(x, "\\n")`` leaves a blank before each line end in tables; this text
    keeps them, so it can be compared with R's output verbatim.
    """
    d = DIGITS
    out: list[str] = [""]
    if res.is_ee:
        title = _EE_TITLES[res.method] if res.int_only else "Fixed-Effects with Moderators Model"
        out.append(f"{title} (k = {res.k})")
    else:
        title = "Random-Effects Model" if res.int_only else "Mixed-Effects Model"
        est = (
            "user-specified tau^2 value)"
            if res.control.get("tau2_fix")
            else f"tau^2 estimator: {res.method})"
        )
        out.append(f"{title} (k = {res.k}; {est}")
    if showfit:
        key = "REML" if res.method == "REML" else "ML"
        fs = res.fit_stats[key]
        vals = [fcf(fs[n], d["fit"]) for n in ("logLik", "deviance", "AIC", "BIC", "AICc")]
        out.append("")
        out.extend(format_vector(["logLik", "deviance", "AIC", "BIC", "AICc"], vals))
    out.append("")

    het: list[str] = []
    if not res.is_ee:
        se = "" if math.isnan(res.se_tau2) else f" (SE = {fcf(res.se_tau2, d['sevar'])})"
        tau = _var(math.sqrt(res.tau2)) if res.tau2 >= 0 else "NA"
        if res.int_only:
            het.append(f"tau^2 (estimated amount of total heterogeneity): {_var(res.tau2)}{se}")
            het.append(f"tau (square root of estimated tau^2 value):      {tau}")
        else:
            het.append(
                f"tau^2 (estimated amount of residual heterogeneity):     {_var(res.tau2)}{se}"
            )
            het.append(f"tau (square root of estimated tau^2 value):             {tau}")
    if res.int_only:
        if not math.isnan(res.I2):
            het.append(f"I^2 (total heterogeneity / total variability):   {fcf(res.I2, 2)}%")
        if not math.isnan(res.H2):
            het.append(f"H^2 (total variability / sampling variability):  {fcf(res.H2, 2)}")
    else:
        if not math.isnan(res.I2):
            het.append(f"I^2 (residual heterogeneity / unaccounted variability): {fcf(res.I2, 2)}%")
        if not math.isnan(res.H2):
            het.append(f"H^2 (unaccounted variability / sampling variability):   {fcf(res.H2, 2)}")
    if not res.int_only and res.R2 is not None:
        r2 = "NA" if math.isnan(res.R2) else fcf(res.R2, 2)
        het.append(f"R^2 (amount of heterogeneity accounted for):            {r2}%")
    out.extend(het)
    if not res.is_ee or not math.isnan(res.I2) or not math.isnan(res.H2) or res.R2 is not None:
        out.append("")

    if not math.isnan(res.QE):
        df = res.k - res.p
        qtxt = (
            f"{fcf(res.QE, d['test'])}, p-val {fmt_pval(res.QEp, d['pval'], showeq=True, sep=' ')}"
        )
        if res.int_only:
            out += ["Test for Heterogeneity:", f"Q(df = {df}) = {qtxt}"]
        else:
            out += ["Test for Residual Heterogeneity:", f"QE(df = {df}) = {qtxt}"]
        out.append("")

    if res.p > 1 and not math.isnan(res.QM):
        plural = " " if res.m == 1 else "s "
        out.append(f"Test of Moderators (coefficient{plural}{format_btt(res.btt)}):")
        ptxt = fmt_pval(res.QMp, d["pval"], showeq=True, sep=" ")
        if res.uses_t:
            out.append(
                f"F(df1 = {int(res.QMdf[0])}, df2 = {fmt_num(round(res.QMdf[1], 2))}) = "
                f"{fcf(res.QM, d['test'])}, p-val {ptxt}"
            )
        else:
            out.append(f"QM(df = {int(res.QMdf[0])}) = {fcf(res.QM, d['test'])}, p-val {ptxt}")
        out.append("")

    out.append("Model Results:")
    out.append("")
    out.extend(
        model_results_lines(
            res.names,
            res.beta,
            res.se,
            res.zval,
            res.pval,
            res.ci_lb,
            res.ci_ub,
            df=[res.dfs] * res.p if res.uses_t else None,
            int_only=res.int_only,
            signif=signif,
        )
    )
    if signif:
        out += ["", "---", SIGNIF_LEGEND]
    out.append("")
    return "\n".join(out) + "\n"


def html_rma(res: RMAResult) -> str:
    """A small HTML summary for notebooks: the header, heterogeneity and coefficient table."""
    stat = "t" if res.uses_t else "z"
    head = (
        f"<p><b>{'Equal' if res.is_ee else 'Random'}-effects model</b> "
        f"(k = {res.k}; method: {html.escape(res.method)}; test: {html.escape(res.test)})</p>"
    )
    het = ""
    if not res.is_ee:
        het = (
            f"<p>tau&sup2; = {fcf(res.tau2, 4)} (SE = {fcf(res.se_tau2, 4)}), "
            f"I&sup2; = {fcf(res.I2, 2)}%, H&sup2; = {fcf(res.H2, 2)}; "
            f"Q({res.k - res.p}) = {fcf(res.QE, 4)}, p {fmt_pval(res.QEp, 4, showeq=True)}</p>"
        )
    rows = "".join(
        "<tr>"
        + f"<th>{html.escape(n)}</th>"
        + "".join(
            f"<td>{v}</td>"
            for v in (
                fcf(res.beta[i], 4),
                fcf(res.se[i], 4),
                fcf(res.zval[i], 4),
                fmt_pval(res.pval[i], 4),
                fcf(res.ci_lb[i], 4),
                fcf(res.ci_ub[i], 4),
            )
        )
        + "</tr>"
        for i, n in enumerate(res.names)
    )
    table = (
        "<table><thead><tr><th></th><th>estimate</th><th>se</th>"
        f"<th>{stat}val</th><th>pval</th><th>ci.lb</th><th>ci.ub</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return f"<div class='evidence-rma'>{head}{het}{table}</div>"
