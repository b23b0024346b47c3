"""`evidence meta`: fit a meta-analytic model to the effect sizes of a CSV file (metafor's rma)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from evidence.cli.app import fail
from evidence.errors import EvidenceError, ModelError, NotFoundError

_LEVELS = ("three-level", "che")


def _model_label(res: Any) -> str:
    if res.is_ee:
        return "equal-effects" if res.int_only else "equal-effects with moderators"
    return "random-effects" if res.int_only else "mixed-effects"


def _num(x: Any) -> Any:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def result_json(res: Any) -> dict[str, Any]:
    """The JSON object of one fit, with exactly the keys of issue 4 point 6.

    ``QM_df`` is ``[df1, df2]``: ``df2`` is null for the chi-square test (test z) and
    ``k - p`` for the F test (t, knha, adhoc). ``tau2_ci_lb/ub`` (Q-profile) and ``pi_lb/ub``
    are given for intercept-only random-effects models, null otherwise.
    """
    from evidence.stats import confint, predict

    ci_lb = ci_ub = pi_lb = pi_ub = None
    warnings = list(res.warnings)
    if res.int_only and not res.is_ee:
        pr = predict(res)
        pi_lb, pi_ub = _num(pr.pi_lb[0]), _num(pr.pi_ub[0])
        if res.k > 1 and res.allvipos:
            try:
                ci = confint(res)
                _, lb, ub = ci.random["tau2"]
                ci_lb, ci_ub = _num(lb), _num(ub)
            except EvidenceError as err:
                warnings.append(f"No Q-profile interval for tau2: {err}")
    return {
        "model": _model_label(res),
        "method": res.method,
        "test": res.test,
        "level": res.level,
        "k": res.k,
        "p": res.p,
        "coefficients": [
            {k: _num(v) if k != "name" else v for k, v in row.items()} for row in res.coef_table()
        ],
        "tau2": _num(res.tau2),
        "se_tau2": _num(res.se_tau2),
        "tau2_ci_lb": ci_lb,
        "tau2_ci_ub": ci_ub,
        "I2": _num(res.I2),
        "H2": _num(res.H2),
        "QE": _num(res.QE),
        "QE_df": res.k - res.p,
        "QEp": _num(res.QEp),
        "QM": _num(res.QM),
        "QM_df": [int(res.QMdf[0]), None if math.isnan(res.QMdf[1]) else int(res.QMdf[1])],
        "QMp": _num(res.QMp),
        "pi_lb": pi_lb,
        "pi_ub": pi_ub,
        "converged": bool(res.converged),
        "iterations": int(res.iterations),
        "warnings": warnings,
    }


def run_meta(
    path: Path,
    *,
    yi: str,
    vi: str,
    mods: str | None = None,
    subgroup: str | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    as_json: bool = False,
) -> str:
    """Read the CSV at ``path``, fit ``rma`` (and the subgroup analysis), render text or JSON.

    With ``subgroup``, the JSON object also has ``subgroups`` (one object per subgroup, with
    the keys of the main object; its ``level`` holds the subgroup's level, the confidence
    level being the main object's) and ``test_between`` (``Q, df, pval``).
    """
    from evidence.stats import rma
    from evidence.stats import subgroup as subgroup_fit

    frame = _read(path)
    for col in (yi, vi) + ((subgroup,) if subgroup else ()):
        if col not in frame.columns:
            raise ModelError(
                f"{path.name}: there is no column {col!r} "
                f"(columns: {', '.join(map(str, frame.columns))})."
            )
    res = rma(yi, vi, mods=mods, data=frame, method=method, test=test, level=level)
    sub = None
    if subgroup:
        sub = subgroup_fit(yi, vi, subgroup, data=frame, method=method, test=test, level=level)
    if as_json:
        out = result_json(res)
        if sub is not None:
            out["subgroups"] = [{**result_json(sub.fits[lev]), "level": lev} for lev in sub.levels]
            out["test_between"] = {
                "Q": _num(sub.Q_between),
                "df": sub.df_between,
                "pval": _num(sub.p_between),
            }
        return json.dumps(out, indent=2)
    text = str(res)
    if sub is not None:
        text += str(sub)
    return text


def _read(path: Path):
    import pandas as pd

    if not path.is_file():
        raise NotFoundError(f"File {str(path)!r} does not exist.")
    try:
        return pd.read_csv(path)
    except (ValueError, OSError) as err:
        raise ModelError(f"{path.name}: cannot be read as CSV ({err}).") from err


def register(app: typer.Typer) -> None:
    """Add the ``meta`` command to *app*."""

    @app.command("meta")
    def meta(
        file: Annotated[Path, typer.Argument(help="CSV file with one effect size per row.")],
        yi: str = typer.Option(..., "--yi", help="Column with the effect sizes."),
        vi: str = typer.Option(..., "--vi", help="Column with the sampling variances."),
        mods: str | None = typer.Option(
            None, "--mods", help='Moderators as a formula, e.g. "ablat + C(alloc)".'
        ),
        subgroup: str | None = typer.Option(
            None, "--subgroup", help="Column whose levels define subgroups."
        ),
        method: str = typer.Option(
            "REML", "--method", help="EE, DL, HE, HS, HSk, SJ, ML, REML, EB, PM, PMM."
        ),
        test: str | None = typer.Option(
            None, "--test", help="z, t, knha or adhoc (default: z; t for --model che)."
        ),
        level: float = typer.Option(95, "--level", help="Confidence level in percent."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        cluster: str | None = typer.Option(
            None, "--cluster", help="Column with the study (cluster) of each effect: multilevel."
        ),
        es_id: str | None = typer.Option(
            None, "--es-id", help="Column identifying effects within clusters."
        ),
        model: str = typer.Option("three-level", "--model", help="three-level or che."),
        rho: float = typer.Option(0.6, "--rho", help="Within-cluster correlation (che)."),
        smooth_vi: bool | None = typer.Option(
            None,
            "--smooth-vi/--no-smooth-vi",
            help="che: average vi within clusters (default: yes, as metapsyTools).",
        ),
        robust: str | None = typer.Option(
            None, "--robust", help="CR2 or CR1 robust variance (che default: CR2)."
        ),
    ) -> None:
        """Fit a meta-analytic model (metafor's rma) to the effect sizes of FILE."""
        try:
            if cluster is not None:
                text = _multilevel(
                    file,
                    yi=yi,
                    vi=vi,
                    cluster=cluster,
                    es_id=es_id,
                    model=model,
                    rho=rho,
                    smooth_vi=smooth_vi,
                    robust=robust,
                    mods=mods,
                    method=method,
                    test=test,
                    level=level,
                    as_json=as_json,
                )
            else:
                text = run_meta(
                    file,
                    yi=yi,
                    vi=vi,
                    mods=mods,
                    subgroup=subgroup,
                    method=method,
                    test=test or "z",
                    level=level,
                    as_json=as_json,
                )
        except EvidenceError as err:
            fail(err)
            return
        typer.echo(text, nl=not text.endswith("\n"))


def _multilevel(path: Path, **options: Any) -> str:
    if options["model"] not in _LEVELS:
        raise ModelError(f"Unknown --model {options['model']!r}; use three-level or che.")
    try:
        from evidence.cli.meta_mv import multilevel_command
    except ImportError as err:
        raise ModelError("multilevel models are not available in this installation.") from err
    frame = _read(path)
    return multilevel_command(frame, **options)
