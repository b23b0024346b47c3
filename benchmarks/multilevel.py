"""Three-level REML fits with CR2 robust inference: evidence against metafor + clubSandwich.

The same simulated three-level data (studies with 1-9 effect sizes, about 5 on average) are
fitted by metafor's ``rma.mv`` (dense and ``sparse = TRUE``) followed by
``robust(..., clubSandwich = TRUE)``, and by ``evidence.stats.rma_mv`` + ``robust``, in one
run. Each metafor fit runs in its own Rscript process with a time limit; beyond it the table
says "did not finish". Then evidence alone up to 10^6 effect sizes in 2 x 10^5 studies.

Usage: ``.venv/bin/python benchmarks/multilevel.py [--timeout 300] [--no-r] [--max-k 1000000]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from evidence.stats import rma_mv, robust

R_FIT = r"""
suppressMessages({library(metafor); library(clubSandwich); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(args[1]); sparse <- args[2] == "sparse"
t0 <- proc.time()[["elapsed"]]
res <- rma.mv(yi, vi, random = ~ 1 | study/es, data = d, sparse = sparse)
t1 <- proc.time()[["elapsed"]]
rob <- robust(res, cluster = d$study, clubSandwich = TRUE)
t2 <- proc.time()[["elapsed"]]
cat(toJSON(list(fit = t1 - t0, robust = t2 - t1, beta = as.numeric(res$beta),
                sigma2 = res$sigma2, se_cr2 = as.numeric(rob$se), df = as.numeric(rob$ddf)),
           digits = NA, auto_unbox = TRUE))
"""


def simulate(k_target: int, seed: int = 2024):
    """Three-level data: ~k_target effect sizes, 1-9 per study, sigma2 = (0.08, 0.03)."""
    rng = np.random.default_rng(seed)
    m = max(k_target // 5, 2)
    n = rng.integers(1, 10, m)
    study = np.repeat(np.arange(m), n)
    k = study.size
    es = np.arange(k)
    vi = rng.uniform(0.01, 0.12, k)
    u = rng.normal(0, np.sqrt(0.08), m)[study]
    yi = 0.3 + u + rng.normal(0, np.sqrt(0.03), k) + rng.normal(0, np.sqrt(vi))
    return study, es, yi, vi


def ours(study, es, yi, vi):
    t0 = time.perf_counter()
    res = rma_mv(yi, vi, random=(study, es))
    t1 = time.perf_counter()
    rob = robust(res, study, clubSandwich=True)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, res, rob


def metafor(csv: Path, mode: str, timeout: float, script: Path):
    try:
        out = subprocess.run(
            ["Rscript", str(script), str(csv), mode],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as err:
        return {"error": err.stderr.strip().splitlines()[-1] if err.stderr else "failed"}
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per metafor fit")
    ap.add_argument("--no-r", action="store_true", help="skip metafor")
    ap.add_argument("--max-k", type=int, default=1_000_000)
    args = ap.parse_args()
    have_r = shutil.which("Rscript") is not None and not args.no_r
    print("machine: 2 cores shared with other processes; times are wall-clock seconds")
    print(f"metafor time limit per fit: {args.timeout:.0f} s\n")
    head = (
        f"{'k':>8} {'studies':>8} {'evidence fit':>12} {'+CR2':>8} {'metafor dense':>14} "
        f"{'metafor sparse':>15} {'+CR2 (R)':>9} {'ratio sparse':>13} {'max rel diff':>13}"
    )
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fit.R"
        script.write_text(R_FIT)
        for k_target in (200, 1_000, 5_000, 20_000):
            study, es, yi, vi = simulate(k_target)
            fit_t, rob_t, res, rob = ours(study, es, yi, vi)
            row = {"dense": None, "sparse": None}
            if have_r:
                csv = Path(tmp) / f"d{k_target}.csv"
                np.savetxt(
                    csv,
                    np.column_stack([study + 1, es + 1, yi, vi]),
                    delimiter=",",
                    header="study,es,yi,vi",
                    comments="",
                    fmt=["%d", "%d", "%.17g", "%.17g"],
                )
                for mode in ("dense", "sparse"):
                    row[mode] = metafor(csv, mode, args.timeout, script)
            cells, ratio, diff, r_rob = [], "", "", ""
            for mode in ("dense", "sparse"):
                r = row[mode]
                if not have_r:
                    cells.append("skipped")
                elif r is None:
                    cells.append("did not finish")
                elif "error" in r:
                    cells.append("error")
                else:
                    cells.append(f"{r['fit']:.2f}")
            ref = next((row[m] for m in ("sparse", "dense") if row[m] and "fit" in row[m]), None)
            if ref is not None:
                est_r = np.r_[ref["beta"], ref["sigma2"], ref["se_cr2"], ref["df"]]
                est_o = np.r_[res.beta, res.sigma2, rob.se, rob.ddf]
                diff = f"{np.max(np.abs(est_o - est_r) / np.abs(est_r)):.1e}"
                r_rob = f"{ref['robust']:.2f}"
            if row["sparse"] and "fit" in row["sparse"]:
                ratio = f"{row['sparse']['fit'] / fit_t:,.0f}x"
            print(
                f"{len(yi):>8} {study.max() + 1:>8} {fit_t:>12.4f} {rob_t:>8.4f} "
                f"{cells[0]:>14} {cells[1]:>15} {r_rob:>9} {ratio:>13} {diff:>13}",
                flush=True,
            )
        for k_target in (100_000, 200_000, 500_000, 1_000_000):
            if k_target > args.max_k:
                break
            study, es, yi, vi = simulate(k_target)
            fit_t, rob_t, res, rob = ours(study, es, yi, vi)
            print(
                f"{len(yi):>8} {study.max() + 1:>8} {fit_t:>12.4f} {rob_t:>8.4f} "
                f"{'-':>14} {'-':>15} {'-':>9} {'':>13} {'':>13}   total {fit_t + rob_t:.2f} s",
                flush=True,
            )
    print("\nmax rel diff: largest relative difference over beta, sigma2, CR2 se and df")
    print("against metafor's sparse fit (dense where sparse did not finish).")


if __name__ == "__main__":
    main()
