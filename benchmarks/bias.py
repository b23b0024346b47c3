"""Time the case diagnostics and bias tests against metafor on the same data.

For k = 100 and 400 simulated effects (SIMULATED data: vi ~ U(0.01, 0.2), tau2 = 0.05),
times ``leave1out``, ``influence``, ``cumul``, ``trimfill``, ``regtest`` and ``ranktest``
of a REML fit here and metafor's functions in one Rscript run on the same CSV (when Rscript
and metafor are available), and prints seconds and ratios (ours / metafor).

Usage: ``python benchmarks/bias.py [--k 200 1000]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from evidence.stats import cumul, influence, leave1out, ranktest, regtest, rma, trimfill

FUNCS = {
    "leave1out": leave1out,
    "influence": influence,
    "cumul": cumul,
    "trimfill": trimfill,
    "regtest": regtest,
    "ranktest": ranktest,
}

R_CODE = r"""
suppressPackageStartupMessages(library(metafor))
d <- read.csv(commandArgs(TRUE)[1])
res <- rma(d$yi, d$vi)
tm <- function(expr) { t <- proc.time()[3]; force(expr); unname(proc.time()[3] - t) }
out <- c(leave1out = tm(leave1out(res)), influence = tm(influence(res)),
         cumul = tm(cumul(res)), trimfill = tm(trimfill(res)),
         regtest = tm(regtest(res)), ranktest = tm(suppressWarnings(ranktest(res))))
cat(paste(names(out), out, sep = "=", collapse = "\n"), "\n")
"""


def simulate(k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.01, 0.2, k)
    return rng.normal(0.3, np.sqrt(vi + 0.05)), vi


def metafor_times(yi: np.ndarray, vi: np.ndarray) -> dict[str, float] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "d.csv", Path(tmp) / "b.R"
        csv.write_text(
            "yi,vi\n" + "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in zip(yi, vi, strict=True))
        )
        script.write_text(R_CODE)
        run = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True)
        if run.returncode != 0:
            return None
        pairs = [line.split("=") for line in run.stdout.split() if "=" in line]
        return {a: float(b) for a, b in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[100, 400])
    args = parser.parse_args()
    for k in args.k:
        yi, vi = simulate(k)
        fit = rma(yi, vi)
        ours = {}
        for name, f in FUNCS.items():
            t = time.perf_counter()
            f(fit)
            ours[name] = time.perf_counter() - t
        theirs = metafor_times(yi, vi) or {}
        print(f"k = {k} (SIMULATED effects)")
        print(f"  {'function':<10} {'evidence s':>10} {'metafor s':>10} {'ratio':>7}")
        for name in FUNCS:
            m = theirs.get(name)
            ratio = f"{ours[name] / m:7.2f}" if m else "      -"
            mt = f"{m:10.3f}" if m is not None else "         -"
            print(f"  {name:<10} {ours[name]:10.3f} {mt} {ratio}")


if __name__ == "__main__":
    main()
