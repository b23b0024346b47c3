"""Multilevel (nested random-effects) meta-analysis: metafor's ``rma.mv`` at linear cost.

``rma_mv`` fits :math:`y = X\\beta + \\sum_l Z_l u_l + e` with nested random intercepts
:math:`u_l \\sim N(0, \\sigma^2_l I)` (outermost level first, e.g. study / effect size, or
district / school / outcome) and sampling errors :math:`e \\sim N(0, V)`, V diagonal
(``vi``) or block diagonal within clusters (``V``, e.g. from :func:`impute_covariance`).
Every computation runs block by block over the outermost clusters; no k x k matrix is
formed.
"""

from __future__ import annotations

import math
import warnings as _warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as _st

from evidence.errors import ModelError
from evidence.stats._mv_blocks import Blocks
from evidence.stats._mv_fit import LOG2PI, evaluate, optimise
from evidence.stats.covariance import BlockCovariance, factorize

__all__ = ["rma_mv", "RmaMvResult", "MvPrediction"]


def _ro(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=float)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class _Model:
    """What predictions, profiles and robust inference need from a fit (not user-facing)."""

    yi: np.ndarray
    vi: np.ndarray
    X: np.ndarray
    V: BlockCovariance | None
    level_codes: tuple[np.ndarray, ...]
    outer: np.ndarray
    blocks: Blocks
    reml: bool
    fixed: np.ndarray
    data_index: np.ndarray  # rows of the input kept in the fit


@dataclass(frozen=True)
class MvPrediction:
    """Predicted values with confidence and prediction intervals (metafor's ``predict``)."""

    pred: np.ndarray
    se: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    pi_lb: np.ndarray
    pi_ub: np.ndarray
    level: float

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-safe dict of lists."""
        return {
            k: [float(x) for x in getattr(self, k)]
            for k in ("pred", "se", "ci_lb", "ci_ub", "pi_lb", "pi_ub")
        }

    def __str__(self) -> str:
        from evidence.stats._mv_print import format_prediction

        return format_prediction(self)


@dataclass(frozen=True)
class RmaMvResult:
    """A fitted multilevel model (frozen; arrays are read-only).

    Names follow metafor: ``beta, se, zval, pval, ci_lb, ci_ub, vb, sigma2, QE, QEp, QM,
    QMp``; ``ddf`` holds the t-test degrees of freedom per coefficient (None under z);
    ``I2_levels`` is the share (percent) of total variance at each level and ``I2`` their
    sum; ``fit_stats`` has logLik, deviance, AIC, BIC and AICc under ML and REML.
    """

    beta: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vb: np.ndarray
    names: tuple[str, ...]
    sigma2: np.ndarray
    sigma2_names: tuple[str, ...]
    s_nlevels: tuple[int, ...]
    sigma2_fixed: tuple[bool, ...]
    k: int
    p: int
    method: str
    test: str
    dfs: str
    ddf: np.ndarray | None
    level: float
    QE: float
    QE_df: int
    QEp: float
    QM: float
    QM_df: tuple[float, ...]
    QMp: float
    btt: tuple[int, ...]
    I2_levels: np.ndarray
    I2: float
    typical_vi: float
    fit_stats: dict[str, dict[str, float]]
    parms: int
    converged: bool
    iterations: int
    warnings: tuple[str, ...] = ()
    robust_type: str | None = None
    n_clusters: int | None = None
    cluster_sizes: np.ndarray | None = None
    _model: _Model | None = field(default=None, repr=False, compare=False)
    _robust: Any = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ conveniences
    @property
    def int_only(self) -> bool:
        """True for an intercept-only model."""
        return self.p == 1 and self.names == ("intrcpt",)

    @property
    def logLik(self) -> float:  # noqa: N802 - metafor's name
        """Log-likelihood of the fitting method (restricted under REML)."""
        return self.fit_stats[self.method]["logLik"]

    @property
    def deviance(self) -> float:
        return self.fit_stats[self.method]["deviance"]

    @property
    def AIC(self) -> float:  # noqa: N802
        return self.fit_stats[self.method]["AIC"]

    @property
    def BIC(self) -> float:  # noqa: N802
        return self.fit_stats[self.method]["BIC"]

    @property
    def AICc(self) -> float:  # noqa: N802
        return self.fit_stats[self.method]["AICc"]

    def predict(self, newmods: Any = None, *, level: float | None = None) -> MvPrediction:
        """Pooled (or fitted) value with its confidence and prediction interval.

        Parameters
        ----------
        newmods
            Moderator values (rows without the intercept column) for meta-regressions;
            None gives the intercept-only estimate.
        level
            Confidence level in percent (default: the model's).

        Notes
        -----
        :math:`\\hat\\mu = x'\\hat\\beta`, CI :math:`\\hat\\mu \\pm c\\,SE`, PI
        :math:`\\hat\\mu \\pm c \\sqrt{SE^2 + \\sum_l \\sigma^2_l}` with c the normal or t
        quantile (df as the coefficients' ``ddf``), as metafor's ``predict.rma``.
        """
        lev = self.level if level is None else float(level)
        if newmods is None:
            if not self.int_only:
                Xn = self._model.X if self._model is not None else None
                if Xn is None:
                    raise ModelError("Argument 'newmods' is needed for a meta-regression.")
            else:
                Xn = np.ones((1, 1))
        else:
            nm = np.asarray(newmods, dtype=float)
            has_icpt = "intrcpt" in self.names
            q = self.p - (1 if has_icpt else 0)
            nm = nm.reshape(1, -1) if nm.ndim <= 1 and q > 1 else nm.reshape(-1, q)
            if nm.shape[1] != q:
                raise ModelError(
                    f"Argument 'newmods' has {nm.shape[1]} columns but the model has {q} "
                    "moderators."
                )
            Xn = np.column_stack([np.ones(nm.shape[0]), nm]) if has_icpt else nm
        pred = Xn @ self.beta
        vpred = np.einsum("ip,pq,iq->i", Xn, self.vb, Xn)
        se = np.sqrt(vpred)
        if self.ddf is not None:
            ddf = np.array([min(self.ddf[row != 0]) for row in Xn], dtype=float)
            crit = _st.t.ppf(0.5 + lev / 200.0, ddf)
        else:
            crit = np.full(len(pred), _st.norm.ppf(0.5 + lev / 200.0))
        tot = float(np.sum(self.sigma2))
        pi = crit * np.sqrt(vpred + tot)
        return MvPrediction(
            _ro(pred),
            _ro(se),
            _ro(pred - crit * se),
            _ro(pred + crit * se),
            _ro(pred - pi),
            _ro(pred + pi),
            lev,
        )

    def confint(self, *, level: float | None = None, tol: float = 1e-10):
        """Profile-likelihood confidence intervals of every estimated sigma2."""
        from evidence.stats._mv_profile import profile_confint

        return profile_confint(self, level=self.level if level is None else level, tol=tol)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the keys of the ``evidence meta --json`` output."""
        from evidence.stats._mv_print import result_dict

        return result_dict(self)

    def to_frame(self):
        """The coefficient table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            {
                "estimate": self.beta,
                "se": self.se,
                "zval" if self.ddf is None else "tval": self.zval,
                "df": self.ddf if self.ddf is not None else np.nan,
                "pval": self.pval,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
            },
            index=list(self.names),
        )

    def __str__(self) -> str:
        from evidence.stats._mv_print import format_result

        return format_result(self)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"


# ---------------------------------------------------------------------------- inputs
def _column(x: Any, data: Any, what: str) -> Any:
    if isinstance(x, str):
        if data is None:
            raise ModelError(f"Argument '{what}' names a column ('{x}') but no 'data' is given.")
        try:
            return data[x]
        except (KeyError, IndexError) as err:
            raise ModelError(f"Argument '{what}': there is no column '{x}' in 'data'.") from err
    return x


def _parse_random(random: Any) -> list[Any]:
    if isinstance(random, str):
        text = random.split("|")[-1].strip()
        parts = [t.strip() for t in text.split("/") if t.strip()]
        if not parts:
            raise ModelError(f"Cannot read the random-effects structure '{random}'.")
        return parts
    if isinstance(random, Sequence) or isinstance(random, np.ndarray):
        out = list(random)
        if not out:
            raise ModelError("Argument 'random' must name at least one level.")
        return out
    raise ModelError("Argument 'random' must be a sequence of column names or arrays.")


def _label(x: Any, i: int) -> str:
    if isinstance(x, str):
        return x
    return str(getattr(x, "name", None) or f"level{i + 1}")


def _contain_ddf(X: np.ndarray, level_codes: list[np.ndarray], nlev: list[int], k: int, p: int):
    """metafor's ``dfs = "contain"``: per coefficient, the fewest groups its column is
    constant within (k if none), minus p (at least 1)."""
    out = np.full(X.shape[1], float(k))
    for j in range(X.shape[1]):
        for codes, n in zip(level_codes, nlev, strict=True):
            lo = np.full(n, np.inf)
            hi = np.full(n, -np.inf)
            np.minimum.at(lo, codes, X[:, j])
            np.maximum.at(hi, codes, X[:, j])
            if np.all(lo == hi):
                out[j] = min(out[j], n)
    out = out - p
    out[out < 1] = 1
    return out


def _inference(beta, vb, ddf, level):
    se = np.sqrt(np.diag(vb))
    zval = beta / se
    a = 0.5 + level / 200.0
    if ddf is None:
        pval = 2.0 * _st.norm.sf(np.abs(zval))
        crit = _st.norm.ppf(a)
    else:
        pval = 2.0 * _st.t.sf(np.abs(zval), ddf)
        crit = _st.t.ppf(a, ddf)
    return se, zval, pval, beta - crit * se, beta + crit * se


def _qm(beta, vb, btt, ddf):
    b = beta[list(btt)]
    QM = float(b @ np.linalg.solve(vb[np.ix_(btt, btt)], b))
    m = len(btt)
    if ddf is None:
        return QM, (float(m),), float(_st.chi2.sf(QM, m))
    df2 = float(min(ddf[list(btt)]))
    return QM / m, (float(m), df2), float(_st.f.sf(QM / m, m, df2))


def rma_mv(
    yi: Any,
    vi: Any = None,
    *,
    V: BlockCovariance | None = None,
    random: Any = ("study", "es_id"),
    data: Any = None,
    mods: Any = None,
    method: str = "REML",
    test: str = "z",
    dfs: str = "residual",
    level: float = 95,
    sigma2: Sequence[float | None] | None = None,
    intercept: bool = True,
    btt: Sequence[int] | None = None,
    sigma2_init: Sequence[float] | None = None,
) -> RmaMvResult:
    """Fit a multilevel meta-analytic model with nested random intercepts.

    Parameters
    ----------
    yi, vi
        Effect sizes and sampling variances (arrays, or column names of ``data``). ``vi``
        may be omitted when ``V`` is given.
    V
        Block-diagonal sampling covariance (:class:`BlockCovariance`, e.g. from
        :func:`impute_covariance`); its clusters must lie within the outermost level.
    random
        Nested levels, outermost first: column names of ``data`` or arrays, or a string
        such as ``"study/es_id"`` (metafor's ``~ 1 | study/es_id``).
    mods
        Moderators: a formula string over ``data`` (``"ablat + C(alloc)"``) or arrays.
    method
        ``"REML"`` (default) or ``"ML"``.
    test
        ``"z"`` or ``"t"``; under ``"t"`` the moderator test QM is an F test.
    dfs
        t-test degrees of freedom: ``"residual"`` (k - p) or ``"contain"`` (metafor's
        containment rule).
    level
        Confidence level in percent.
    sigma2
        Fix components: a value per level, None (or NaN) for estimated ones.
    btt
        0-based coefficients tested by QM (default: all but the intercept).

    Returns
    -------
    RmaMvResult

    Notes
    -----
    Marginal covariance per outermost cluster j: :math:`M_j = V_j + \\sum_l \\sigma^2_l
    S_{lj}`; :math:`\\hat\\beta = (X'M^{-1}X)^{-1}X'M^{-1}y`, ``vb`` = :math:`(X'M^{-1}X)^{-1}`.
    I² per level (metafor's documentation, after Nakagawa & Santos 2012):
    :math:`I^2_l = 100\\,\\sigma^2_l / (\\sum \\sigma^2 + (k-p)/\\operatorname{tr}(P))` with
    :math:`P = W - WX(X'WX)^{-1}X'W`, :math:`W = V^{-1}`.

    References
    ----------
    Konstantopoulos, S. (2011). Fixed effects and variance components estimation in
    three-level meta-analysis. Research Synthesis Methods, 2, 61-76.
    Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. JSS 36(3).
    """
    method = str(method).upper()
    if method not in ("REML", "ML"):
        raise ModelError(f"Argument 'method' must be 'REML' or 'ML', not '{method}'.")
    if test not in ("z", "t"):
        raise ModelError(f"Argument 'test' must be 'z' or 't', not '{test}'.")
    if dfs not in ("residual", "contain"):
        raise ModelError(f"Argument 'dfs' must be 'residual' or 'contain', not '{dfs}'.")
    if not (0 < float(level) < 100):
        raise ModelError(f"Argument 'level' must be a percentage between 0 and 100, not {level}.")
    y = np.asarray(_column(yi, data, "yi"), dtype=float).reshape(-1)
    k_all = y.size
    if vi is None:
        if V is None:
            raise ModelError("Give the sampling variances 'vi' or the covariance 'V'.")
        v = V.diagonal()
    else:
        v = np.asarray(_column(vi, data, "vi"), dtype=float).reshape(-1)
    if v.size != k_all:
        raise ModelError(f"Argument 'vi' has {v.size} values but 'yi' has {k_all}.")
    if V is not None and V.k != k_all:
        raise ModelError(f"Argument 'V' covers {V.k} effect sizes but 'yi' has {k_all}.")
    levels = _parse_random(random)
    names = [_label(x, i) for i, x in enumerate(levels)]
    raw_codes = []
    for i, x in enumerate(levels):
        col = np.asarray(_column(x, data, f"random[{i}]"))
        if col.size != k_all:
            raise ModelError(
                f"Random-effects level '{names[i]}' has {col.size} values but 'yi' has {k_all}."
            )
        raw_codes.append(factorize(col, names[i])[0])
    from evidence.stats._design import check_design, model_matrix

    X, xnames = model_matrix(mods, data, k=k_all, intercept=intercept)
    warns: list[str] = []
    ok = np.isfinite(y) & np.isfinite(v) & np.all(np.isfinite(X), axis=1)
    if not ok.all():
        warns.append("Rows with NAs omitted from model fitting.")
        _warnings.warn(warns[-1], stacklevel=2)
        y, v, X = y[ok], v[ok], X[ok]
        raw_codes = [c[ok] for c in raw_codes]
        if V is not None:
            V = V.subset(ok)
    if np.any(v < 0):
        bad = int(np.flatnonzero(v < 0)[0])
        raise ModelError(f"Argument 'vi' must be non-negative; row {bad + 1} is {v[bad]}.")
    chk = check_design(X, xnames)
    X, xnames = chk.X, list(chk.names)
    for w in chk.warnings:
        warns.append(w)
        _warnings.warn(w, stacklevel=2)
    k, p = X.shape
    if k <= p:
        raise ModelError(f"Too few effect sizes ({k}) for a model with {p} coefficients.")
    # nested level codes: the level-l factor is the combination of levels 1..l
    level_codes: list[np.ndarray] = []
    key = np.zeros(k, dtype=np.int64)
    for c in raw_codes:
        key = key * (int(c.max()) + 1) + c
        key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        level_codes.append(key.copy())
    nlev = [int(c.max()) + 1 for c in level_codes]
    outer = level_codes[0]
    if V is not None:
        first = np.full(V.labels.size, -1)
        first[V.cluster] = outer
        if np.any(first[V.cluster] != outer):
            raise ModelError(
                "The clusters of 'V' must lie within the outermost random-effects level "
                f"('{names[0]}'); some V block spans several of its groups."
            )
    L = len(level_codes)
    fixed = np.full(L, np.nan)
    if sigma2 is not None:
        if len(sigma2) != L:
            raise ModelError(f"Argument 'sigma2' needs {L} values (None for estimated ones).")
        for i, s in enumerate(sigma2):
            if s is not None and not (isinstance(s, float) and math.isnan(s)):
                if s < 0:
                    raise ModelError("Fixed values in 'sigma2' must be non-negative.")
                fixed[i] = float(s)
    blocks = Blocks(outer, level_codes, v, V, X, y)
    reml = method == "REML"
    # starting values: residual variance of the unweighted fit beyond the sampling variance
    bols = np.linalg.lstsq(X, y, rcond=None)[0]
    tot = float(np.var(y - X @ bols, ddof=p)) if k > p else 0.1
    start = max(tot - float(np.mean(v)), 0.1 * tot, 1e-4) / L
    init = np.full(L, start) if sigma2_init is None else np.asarray(sigma2_init, dtype=float)
    fit = optimise(blocks, reml, init, fixed)
    s2 = fit.sigma2
    ev = fit.ev
    beta, vb = ev.beta, ev.vb
    ddf = None
    if test == "t":
        if dfs == "residual":
            ddf = np.full(p, float(k - p))
        else:
            ddf = _contain_ddf(X, level_codes, nlev, k, p)
    se, zval, pval, ci_lb, ci_ub = _inference(beta, vb, ddf, float(level))
    has_icpt = "intrcpt" in xnames
    if btt is None:
        btt_t = tuple(range(1, p)) if (has_icpt and p > 1) else tuple(range(p))
    else:
        btt_t = tuple(int(b) for b in btt)
    QM, QM_df, QMp = _qm(beta, vb, btt_t, ddf)
    # heterogeneity test and I2 use the sampling covariance alone
    QE, QEp, trP, ll_qe = _qe_trp(blocks, reml, k, p)
    typical = (k - p) / trP if trP > 0 else float("nan")
    den = float(np.sum(s2)) + typical
    I2_levels = 100.0 * s2 / den
    parms = p + int(np.sum(np.isnan(fixed)))
    allvipos = bool(np.all(v > 0))
    fs = {
        "ML": _fit_stats(ev.ll_ml, parms, k, (ev.ll_ml - ll_qe) if allvipos else ev.ll_ml),
        "REML": _fit_stats(ev.ll_reml, parms, k - p, ev.ll_reml),
    }
    model = _Model(y, v, X, V, tuple(level_codes), outer, blocks, reml, fixed, np.flatnonzero(ok))
    return RmaMvResult(
        beta=_ro(beta),
        se=_ro(se),
        zval=_ro(zval),
        pval=_ro(pval),
        ci_lb=_ro(ci_lb),
        ci_ub=_ro(ci_ub),
        vb=_ro(vb),
        names=tuple(xnames),
        sigma2=_ro(s2),
        sigma2_names=tuple("/".join(names[: i + 1]) for i in range(L)),
        s_nlevels=tuple(nlev),
        sigma2_fixed=tuple(bool(x) for x in ~np.isnan(fixed)),
        k=k,
        p=p,
        method=method,
        test=test,
        dfs=dfs,
        ddf=None if ddf is None else _ro(ddf),
        level=float(level),
        QE=QE,
        QE_df=k - p,
        QEp=QEp,
        QM=QM,
        QM_df=QM_df,
        QMp=QMp,
        btt=btt_t,
        I2_levels=_ro(I2_levels),
        I2=float(np.sum(I2_levels)),
        typical_vi=typical,
        fit_stats=fs,
        parms=parms,
        converged=fit.converged,
        iterations=fit.iterations,
        warnings=tuple(warns),
        _model=model,
    )


def _fit_stats(ll: float, parms: int, n: int, half_dev: float) -> dict[str, float]:
    big = max(n, parms + 2)
    return {
        "logLik": float(ll),
        "deviance": float(-2.0 * half_dev),
        "AIC": float(-2.0 * ll + 2.0 * parms),
        "BIC": float(-2.0 * ll + parms * math.log(n)),
        "AICc": float(-2.0 * ll + 2.0 * parms * big / (big - parms - 1)),
    }


def _qe_trp(blocks: Blocks, reml: bool, k: int, p: int) -> tuple[float, float, float, float]:
    """QE = y'P_V y, tr(P_V) and the saturated log-likelihood, with W = V^{-1}."""
    nan = float("nan")
    if blocks.V is None:  # W diagonal: weighted least squares on the rows
        v = blocks.vi
        if np.any(v <= 0.0):
            return nan, nan, nan, nan
        w = 1.0 / v
        X, y = blocks.X, blocks.y
        WX = X * w[:, None]
        XtWX = X.T @ WX
        try:
            vb = np.linalg.inv(XtWX)
        except np.linalg.LinAlgError:
            return nan, nan, nan, nan
        e = y - X @ np.linalg.solve(XtWX, WX.T @ y)
        QE = float(np.sum(w * e * e))
        trP = float(np.sum(w) - np.sum(vb * (WX.T @ WX)))
        logdet = float(np.sum(np.log(v)))
    else:
        zero = np.zeros(blocks.n_levels)
        try:
            ev = evaluate(blocks, zero, reml, keep=True)
        except np.linalg.LinAlgError:
            return nan, nan, nan, nan
        trW = 0.0
        XWWX = np.zeros((blocks.p, blocks.p))
        for g, Winv in zip(blocks.groups, ev.minv, strict=True):
            trW += float(np.einsum("bii->", Winv))
            WX = Winv @ g.X
            XWWX += np.einsum("bip,biq->pq", WX, WX)
        trP = trW - float(np.sum(ev.vb * XWWX))
        QE, logdet = ev.rss, ev.logdet
    QEp = float(_st.chi2.sf(QE, k - p)) if k > p else 1.0
    ll_qe = -0.5 * k * LOG2PI - 0.5 * logdet
    return float(QE), QEp, trP, float(ll_qe)


def with_inference(res: RmaMvResult, **changes: Any) -> RmaMvResult:
    """A copy of *res* with some fields replaced (arrays made read-only)."""
    for key, val in list(changes.items()):
        if isinstance(val, np.ndarray):
            changes[key] = _ro(val)
    return replace(res, **changes)


from evidence.stats._mv_profile import AnovaMv, ProfileCI, anova_mv  # noqa: E402

__all__ += ["anova_mv", "AnovaMv", "ProfileCI"]
