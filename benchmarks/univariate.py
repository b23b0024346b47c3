"""Benchmark: univariate random-effects models (REML) against metafor, PyMARE and statsmodels.

Run:  .venv/bin/python benchmarks/univariate.py [--sizes 1000 10000 100000 1000000]
      [--metafor-sizes 1000 5000] [--repeat 3]

For each k, simulated effects ``yi ~ N(0.3, tau2 + vi)`` (tau2 = 0.1, vi ~ U(0.01, 0.2))
are fitted in the same run by

* evidence: ``rma(yi, vi, method="REML")`` (and ``test="knha"``);
* metafor: ``rma(yi, vi, method="REML")`` through Rscript, timing the call only (where R and
  metafor are installed; k = 1,000 and 5,000 only: metafor's algebra is dense, k x k);
* PyMARE: ``VarianceBasedLikelihoodEstimator(method="REML")`` (where it finishes in time);
* statsmodels: ``combine_effects(method_re="iterated")`` (Paule-Mandel; statsmodels has no
  REML), compared with evidence's ``method="PM"``.

Prints times (best of ``--repeat``; PyMARE once, after a warm-up run on small data so that its
import is not timed), ratios to evidence, and the largest absolute difference in tau2 and
beta against evidence's estimate with the same estimator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from evidence.stats import rma

R_SCRIPT = r"""
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
d <- read.csv(commandArgs(TRUE)[1])
t <- system.time(r <- rma(d$yi, d$vi, method = "REML"))[["elapsed"]]
cat(toJSON(list(time = t, tau2 = r$tau2, beta = c(r$beta)), digits = NA, auto_unbox = TRUE))
"""


def simulate(k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.01, 0.2, k)
    yi = rng.normal(0.3, np.sqrt(0.1 + vi))
    return yi, vi


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_metafor(yi: np.ndarray, vi: np.ndarray) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        script = Path(tmp) / "fit.R"
        np.savetxt(csv, np.column_stack([yi, vi]), delimiter=",", header="yi,vi", comments="",
                   fmt="%.17g")  # fmt: skip
        script.write_text(R_SCRIPT)
        proc = subprocess.run(
            ["Rscript", str(script), str(csv)], capture_output=True, text=True, timeout=1800
        )
        if proc.returncode != 0:
            print(f"    metafor failed: {proc.stderr.strip().splitlines()[-1:]}")
            return None
        return json.loads(proc.stdout)


def run_pymare(yi: np.ndarray, vi: np.ndarray):
    from pymare import Dataset
    from pymare.estimators import VarianceBasedLikelihoodEstimator

    est = VarianceBasedLikelihoodEstimator(method="REML").fit_dataset(Dataset(y=yi, v=vi))
    s = est.summary()
    return float(np.ravel(s.tau2)[0]), float(np.ravel(s.fe_params)[0])


def run_statsmodels(yi: np.ndarray, vi: np.ndarray):
    from statsmodels.stats.meta_analysis import combine_effects

    r = combine_effects(yi, vi, method_re="iterated")
    return float(r.tau2), float(r.mean_effect_re)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--metafor-sizes", type=int, nargs="*", default=[1000, 5000])
    ap.add_argument("--pymare-max", type=int, default=5000, help="largest k for PyMARE (dense)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = sorted(set(args.sizes) | set(args.metafor_sizes))

    # import the peers and run each once on small data first, so no import is timed
    y0, v0 = simulate(50)
    for warm in (run_pymare, run_statsmodels):
        try:
            warm(y0, v0)
        except ImportError:
            pass
    one, five, fifteen = os.getloadavg()
    print(f"machine: load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores")
    print(
        f"{'k':>9}  {'peer':<22} {'time (s)':>10} {'ratio':>12} {'|d tau2|':>10} {'|d beta|':>10}"
    )
    for k in sizes:
        yi, vi = simulate(k)
        t_ev, res = best_of(lambda yi=yi, vi=vi: rma(yi, vi, method="REML"), args.repeat)
        t_kh, res_kh = best_of(
            lambda yi=yi, vi=vi: rma(yi, vi, method="REML", test="knha"), args.repeat
        )
        print(f"{k:>9}  {'evidence REML':<22} {t_ev:>10.4f} {'1':>12} {'':>10} {'':>10}")
        print(f"{k:>9}  {'evidence REML knha':<22} {t_kh:>10.4f} {t_kh / t_ev:>12.2f}")
        if k in args.metafor_sizes:
            mf = run_metafor(yi, vi)
            if mf is not None:
                ratio = mf["time"] / t_ev
                print(
                    f"{k:>9}  {'metafor rma REML':<22} {mf['time']:>10.3f} {ratio:>12.0f} "
                    f"{abs(mf['tau2'] - res.tau2):>10.1e} {abs(mf['beta'] - res.beta[0]):>10.1e}"
                )
            else:
                print(f"{k:>9}  metafor: Rscript with metafor not available")
        if k <= args.pymare_max:
            try:
                t_pm, (tau2_pm, beta_pm) = best_of(lambda yi=yi, vi=vi: run_pymare(yi, vi), 1)
                print(
                    f"{k:>9}  {'PyMARE REML':<22} {t_pm:>10.4f} {t_pm / t_ev:>12.1f} "
                    f"{abs(tau2_pm - res.tau2):>10.1e} {abs(beta_pm - res.beta[0]):>10.1e}"
                )
            except ImportError:
                print(f"{k:>9}  PyMARE not installed")
        try:
            t_sm, (tau2_sm, beta_sm) = best_of(
                lambda yi=yi, vi=vi: run_statsmodels(yi, vi), args.repeat
            )
            t_pmv, res_pm = best_of(lambda yi=yi, vi=vi: rma(yi, vi, method="PM"), args.repeat)
            print(
                f"{k:>9}  {'statsmodels PM':<22} {t_sm:>10.4f} {t_sm / t_pmv:>12.1f} "
                f"{abs(tau2_sm - res_pm.tau2):>10.1e} {abs(beta_sm - res_pm.beta[0]):>10.1e}"
                f"   (vs evidence PM {t_pmv:.4f} s)"
            )
        except ImportError:
            print(f"{k:>9}  statsmodels not installed")
        del res_kh
    one, five, fifteen = os.getloadavg()
    print(f"end: load average {one:.2f}, {five:.2f}, {fifteen:.2f}")


if __name__ == "__main__":
    main()
