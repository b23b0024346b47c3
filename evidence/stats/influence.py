"""Case diagnostics: metafor's ``leave1out``, ``influence`` and ``cumul`` for ``rma`` fits.

Each function refits :func:`evidence.stats.rma` on subsets of the fitted data with the fit's
options (k refits of O(k) each), and returns a frozen result printed as metafor's
``print.list.rma`` / ``print.infl.rma.uni``, with ``to_frame()`` and ``to_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from evidence.errors import EvidenceError, ModelError
from evidence.stats._bias_common import (
    frame_of,
    json_safe,
    list_table,
    readonly,
    refit,
    require_int_only,
)
from evidence.stats._rma_result import RMAResult

__all__ = ["leave1out", "influence", "cumul", "CaseTable", "InfluenceResult"]

_EE = ("EE", "FE", "CE")
_SUMMARY = ("estimate", "se", "zval", "pval", "ci_lb", "ci_ub", "Q", "Qp", "tau2", "I2", "H2")


@dataclass(frozen=True, repr=False)
class CaseTable:
    """One row per study of a leave-one-out or cumulative analysis.

    ``columns`` maps metafor's names (``estimate, se, zval`` or ``tval``, ``pval``, ``ci_lb,
    ci_ub, Q, Qp, tau2, I2, H2``) to read-only arrays; ``slab`` labels the rows (for
    ``cumul``, in the order the studies were added); ``index`` gives each row's position in
    the fitted data (0-based).
    """

    kind: str
    columns: dict[str, np.ndarray]
    slab: tuple[str, ...]
    index: np.ndarray
    level: float
    test: str
    method: str

    def __getattr__(self, name: str) -> np.ndarray:
        cols = object.__getattribute__(self, "columns")
        if name in cols:
            return cols[name]
        raise AttributeError(name)

    def __len__(self) -> int:
        return len(self.slab)

    def __str__(self) -> str:
        names = {"ci_lb": "ci.lb", "ci_ub": "ci.ub"}
        if self.kind == "cumul":
            names["pval"] = "pvals"
        cols = {names.get(k, k): v.tolist() for k, v in self.columns.items()}
        return "\n" + "\n".join(list_table(cols, self.slab)) + "\n"

    def __repr__(self) -> str:
        return f"CaseTable(kind={self.kind!r}, k={len(self.slab)})"

    def to_frame(self):
        return frame_of(self.columns, self.slab)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {"kind": self.kind, "slab": list(self.slab), "index": self.index, **self.columns}
        )


def _labels(fit: RMAResult, slab: Sequence[Any] | None) -> np.ndarray:
    if slab is None:
        return np.array([str(i + 1) for i in np.flatnonzero(np.asarray(fit.not_na))], dtype=object)
    lab = np.array([str(s) for s in slab], dtype=object)
    if lab.size == fit.k_all and lab.size != fit.k:
        lab = lab[np.asarray(fit.not_na)]
    if lab.size != fit.k:
        raise ModelError(
            f"Argument 'slab' has {lab.size} labels but the model has {fit.k} effects."
        )
    return lab


def _summary_row(res: RMAResult) -> list[float]:
    return [
        float(res.beta[0]),
        float(res.se[0]),
        float(res.zval[0]),
        float(res.pval[0]),
        float(res.ci_lb[0]),
        float(res.ci_ub[0]),
        res.QE,
        res.QEp,
        res.tau2,
        res.I2,
        res.H2,
    ]


def _table(kind: str, fit: RMAResult, rows: np.ndarray, slab, index) -> CaseTable:
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(_SUMMARY):
        if name == "tau2" and fit.method in _EE:
            continue
        key = "tval" if (name == "zval" and fit.uses_t) else name
        cols[key] = readonly(rows[:, j])
    return CaseTable(
        kind=kind,
        columns=cols,
        slab=tuple(str(s) for s in slab),
        index=readonly(index, int),
        level=fit.level,
        test=fit.test,
        method=fit.method,
    )


def _try_refit(fit: RMAResult, keep: np.ndarray, X: np.ndarray | None = None):
    w = None if fit.user_weights is None else np.asarray(fit.user_weights)[keep]
    try:
        return refit(fit, np.asarray(fit.yi)[keep], np.asarray(fit.vi)[keep], weights=w, X=X)
    except EvidenceError:
        return None


def leave1out(fit: RMAResult, *, slab: Sequence[Any] | None = None) -> CaseTable:
    """Leave-one-out analysis: the model refitted k times, each time without one study.

    Notes
    -----
    As metafor's ``leave1out.rma.uni``: same method, test, level, fixed tau2 and weights;
    a refit that fails leaves its row NaN.
    """
    require_int_only(fit, "Leave-one-out analysis")
    k = fit.k
    rows = np.full((k, len(_SUMMARY)), np.nan)
    for i in range(k):
        keep = np.ones(k, bool)
        keep[i] = False
        res = _try_refit(fit, keep)
        if res is not None:
            rows[i] = _summary_row(res)
    return _table("leave1out", fit, rows, _labels(fit, slab), np.arange(k))


def cumul(
    fit: RMAResult,
    order: Any = None,
    *,
    decreasing: bool = False,
    slab: Sequence[Any] | None = None,
) -> CaseTable:
    """Cumulative meta-analysis: studies added one at a time in the given order.

    Parameters
    ----------
    fit
        An intercept-only :func:`evidence.stats.rma` fit.
    order
        Values to order the studies by (e.g. publication year), one per effect of the data
        the model was given (or of the fitted data); ties keep their original order.
        Default: the order of the data.
    decreasing
        Order by decreasing values.

    Notes
    -----
    Row i is the model fitted to the first i studies in that order (metafor's
    ``cumul.rma.uni``).
    """
    require_int_only(fit, "Cumulative meta-analysis")
    k = fit.k
    if order is None:
        idx = np.arange(k)
    else:
        vals = np.asarray(order)
        if vals.ndim != 1:
            raise ModelError("Argument 'order' must be one-dimensional.")
        if vals.size == fit.k_all and vals.size != k:
            vals = vals[np.asarray(fit.not_na)]
        if vals.size != k:
            raise ModelError(f"Argument 'order' has {vals.size} values but the model has {k}.")
        key = -vals if decreasing else vals
        try:
            idx = np.argsort(key, kind="stable")
        except TypeError as err:
            raise ModelError("Argument 'order' must hold values that can be sorted.") from err
        if decreasing and not np.issubdtype(vals.dtype, np.number):
            idx = np.argsort(vals, kind="stable")[::-1]
    labels = _labels(fit, slab)[idx]
    rows = np.full((k, len(_SUMMARY)), np.nan)
    for i in range(k):
        keep = np.zeros(k, bool)
        keep[idx[: i + 1]] = True
        order_keep = idx[: i + 1]
        w = None if fit.user_weights is None else np.asarray(fit.user_weights)[order_keep]
        try:
            res = refit(
                fit, np.asarray(fit.yi)[order_keep], np.asarray(fit.vi)[order_keep], weights=w
            )
        except EvidenceError:
            continue
        rows[i] = _summary_row(res)
    return _table("cumul", fit, rows, labels, idx)


# ----------------------------------------------------------------------------- influence
@dataclass(frozen=True, repr=False)
class InfluenceResult:
    """Influence diagnostics of each study (metafor's ``influence.rma.uni``).

    Arrays of length k: ``rstudent`` (externally standardized residuals), ``dffits``,
    ``cook_d`` (Cook's distances), ``cov_r`` (covariance ratios), ``tau2_del`` and
    ``QE_del`` (without the study), ``hat`` (leverages), ``weight`` (percent), ``dfbs``
    (k x p DFBETAS), ``is_infl`` (metafor's flags) and the row labels ``slab``.
    """

    rstudent: np.ndarray
    dffits: np.ndarray
    cook_d: np.ndarray
    cov_r: np.ndarray
    tau2_del: np.ndarray
    QE_del: np.ndarray
    hat: np.ndarray
    weight: np.ndarray
    dfbs: np.ndarray
    is_infl: np.ndarray
    names: tuple[str, ...]
    slab: tuple[str, ...]
    k: int
    p: int
    tau2: float
    QE: float
    _cols: ClassVar[tuple[str, ...]] = (
        "rstudent",
        "dffits",
        "cook_d",
        "cov_r",
        "tau2_del",
        "QE_del",
        "hat",
        "weight",
    )

    @property
    def influential(self) -> np.ndarray:
        """Indices (0-based) of the studies flagged as influential."""
        return np.flatnonzero(self.is_infl)

    def _inf_columns(self) -> dict[str, list[Any]]:
        names = {"cook_d": "cook.d", "cov_r": "cov.r", "tau2_del": "tau2.del", "QE_del": "QE.del"}
        return {names.get(c, c): getattr(self, c).tolist() for c in self._cols}

    def __str__(self) -> str:
        star = ["*" if f else "" for f in self.is_infl]
        if self.p == 1:
            cols = self._inf_columns()
            cols["dfbs"] = self.dfbs[:, 0].tolist()
            cols["inf"] = star
            return "\n" + "\n".join(list_table(cols, self.slab)) + "\n"
        cols = self._inf_columns()
        cols["inf"] = star
        dfb = {n: self.dfbs[:, j].tolist() for j, n in enumerate(self.names)}
        out = ["$inf", ""] + list_table(cols, self.slab) + ["", "$dfbs", ""]
        out += list_table(dfb, self.slab)
        return "\n" + "\n".join(out) + "\n"

    def __repr__(self) -> str:
        return f"InfluenceResult(k={self.k}, influential={self.influential.tolist()})"

    def to_frame(self):
        cols: dict[str, Any] = {c: getattr(self, c) for c in self._cols}
        for j, n in enumerate(self.names):
            cols[f"dfbs_{n}"] = self.dfbs[:, j]
        cols["inf"] = self.is_infl
        return frame_of(cols, self.slab)

    def to_dict(self) -> dict[str, Any]:
        out = {c: getattr(self, c) for c in self._cols}
        out.update(
            dfbs={n: self.dfbs[:, j] for j, n in enumerate(self.names)},
            is_infl=self.is_infl,
            slab=list(self.slab),
            k=self.k,
            p=self.p,
        )
        return json_safe(out)


def influence(fit: RMAResult, *, slab: Sequence[Any] | None = None) -> InfluenceResult:
    """Outlier and influence diagnostics of a fitted (meta-regression) model.

    Notes
    -----
    For each study i the model is refitted without it (tau2, beta, vb and s2w deleted);
    with ``h_i`` the hat values of the full fit (``w_i x_i'(X'WX)^{-1} x_i``):

    * rstudent: ``(y_i - x_i'b_(i)) / sqrt(s2w_(i) (v_i + tau2_(i)) + x_i' vb_(i) x_i)``
    * DFFITS: ``(x_i'b - x_i'b_(i)) / sqrt(s2w_(i) h_i (tau2_(i) + v_i))``
    * Cook's distance: ``(b - b_(i))' vb^{-1} (b - b_(i))``
    * COVRATIO: ``det(vb_(i)) / det(vb)``
    * DFBETAS: ``(b - b_(i)) / sqrt(s2w_(i) diag[(X'W_(i)X)^{-1}])`` with ``W_(i)`` the
      full-data weights at ``tau2_(i)``.

    A study is flagged influential (Viechtbauer & Cheung, 2010; metafor) when
    ``|DFFITS| > 3 sqrt(p/(k-p))``, or the chi-square(p) probability of Cook's distance is
    above 0.5, or ``h_i > 3p/k``, or any ``|DFBETAS| > 1``.
    """
    if not isinstance(fit, RMAResult):
        raise ModelError("influence needs a fitted univariate model (a result of rma()).")
    k, p = fit.k, fit.p
    if k < 2:
        raise ModelError(f"influence needs at least 2 effects (k = {k}).")
    X = np.asarray(fit.X, dtype=float)
    yi, vi = np.asarray(fit.yi, dtype=float), np.asarray(fit.vi, dtype=float)
    beta = np.asarray(fit.beta, dtype=float)
    vb = np.asarray(fit.vb, dtype=float)
    uw = None if fit.user_weights is None else np.asarray(fit.user_weights, dtype=float)
    svb = np.linalg.inv(vb)
    det_vb = float(np.linalg.det(vb))
    pred_full = X @ beta
    a = uw if uw is not None else 1.0 / (vi + fit.tau2)
    XAXi = np.linalg.inv(X.T @ (X * a[:, None]))
    hat = a * np.einsum("ip,pq,iq->i", X, XAXi, X)
    weight = 100 * np.asarray(fit.weights) / float(np.sum(fit.weights))

    tau2_del, QE_del, delpred, vdelpred, s2w_del, dffits, cook, covr = (
        np.full(k, np.nan) for _ in range(8)
    )
    dfbs = np.full((k, p), np.nan)
    for i in range(k):
        keep = np.ones(k, bool)
        keep[i] = False
        res = _try_refit(fit, keep, X=X[keep])
        if res is None or res.p != p:
            continue
        t2 = res.tau2
        tau2_del[i], QE_del[i], s2w_del[i] = t2, res.QE, res.s2w
        rb, rvb = np.asarray(res.beta), np.asarray(res.vb)
        xi = X[i]
        delpred[i] = float(xi @ rb)
        vdelpred[i] = float(xi @ rvb @ xi)
        if uw is None:
            dffits[i] = (pred_full[i] - delpred[i]) / math.sqrt(res.s2w * hat[i] * (t2 + vi[i]))
            vb_del = np.linalg.inv(X.T @ (X * (1.0 / (vi + t2))[:, None]))
        else:
            Hrow = (xi @ XAXi @ X.T) * uw
            dffits[i] = (pred_full[i] - delpred[i]) / math.sqrt(
                res.s2w * float(np.sum(Hrow**2 * (t2 + vi)))
            )
            XA = X * uw[:, None]
            vb_del = XAXi @ (XA.T @ (XA * (vi + t2)[:, None])) @ XAXi
        dfb = beta - rb
        dfbs[i] = dfb / np.sqrt(res.s2w * np.diag(vb_del))
        cook[i] = float(dfb @ svb @ dfb)
        covr[i] = float(np.linalg.det(rvb)) / det_vb
    resid = yi - delpred
    resid[np.abs(resid) < 100 * np.finfo(float).eps] = 0.0
    with np.errstate(invalid="ignore"):
        seresid = np.sqrt(vi * s2w_del + vdelpred + tau2_del * s2w_del)
        rstudent = resid / seresid
        crit = [
            np.abs(dffits) > 3 * math.sqrt(p / (k - p)) if k > p else np.zeros(k, bool),
            sps.chi2.cdf(cook, p) > 0.5,
            hat > 3 * p / k,
            np.any(np.abs(dfbs) > 1, axis=1),
        ]
    is_infl = np.zeros(k, bool)
    for c in crit:
        is_infl |= np.nan_to_num(c, nan=0).astype(bool)
    return InfluenceResult(
        rstudent=readonly(rstudent),
        dffits=readonly(dffits),
        cook_d=readonly(cook),
        cov_r=readonly(covr),
        tau2_del=readonly(tau2_del),
        QE_del=readonly(QE_del),
        hat=readonly(hat),
        weight=readonly(weight),
        dfbs=readonly(dfbs),
        is_infl=readonly(is_infl, bool),
        names=tuple(fit.names),
        slab=tuple(str(s) for s in _labels(fit, slab)),
        k=k,
        p=p,
        tau2=fit.tau2,
        QE=fit.QE,
    )
