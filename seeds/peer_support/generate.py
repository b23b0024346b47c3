"""Write the SIMULATED peer support evidence base (studies SIM-001 .. SIM-120) as coding sheets.

The per-study data of the review (Yeo et al. 2025, see schemas/peer_support.yaml) are not
available, so this script simulates an evidence base with the review's published shape and
findings, to demonstrate and test the engine. No record describes a real study; every study is
flagged ``simulated`` and its citation says SIMULATED.

Shape (as published): 47 studies with physical-health outcomes (76 effect sizes) and 73 with
mental-health outcomes (118 effect sizes); controlled and single-group pre-post designs, post
and follow-up assessments, a few multi-arm trials sharing one control arm.

Effects: each intervention arm has a true standardized mean difference

    delta = mu[domain] + moderator terms (centred in the sample) + u_study + w_effect,

with mu = 0.35 (physical) and 0.53 (mental), u_study ~ N(0, tau^2), w_effect ~ N(0, sigma^2),
and the published directions of the moderators: informal > formal peers for mental health
(informal comparable to online professional support); mental effects weaker at follow-up,
physical effects sustained; higher dosage less effective; high-interactivity platforms more
effective; physical effects stronger in Western, mental effects stronger in Eastern countries;
no effect of uptake, age or health condition. Participant-level scores are then drawn for each
arm (pre and post correlated by r) and summarised as means, SDs and ns, so the observed effects
carry real sampling error. Lower-is-better outcomes (depression, anxiety, BMI, ...) have the
improvement as a decrease. About 40% of the pre-post rows do not report r (it is imputed at
ingest); a few controlled rows report only a t statistic.

Run ``python seeds/peer_support/generate.py [--out DIR]``; output is byte-for-byte
deterministic (numpy Generator with a fixed seed).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

SEED = 20250117
MU = {"physical": 0.35, "mental": 0.53}
TAU = {"physical": 0.12, "mental": 0.16}  # between-study SD of true effects
SIGMA = {"physical": 0.06, "mental": 0.08}  # within-study SD of true effects
STUDIES = {"physical": 47, "mental": 73}
ROWS = {"physical": 76, "mental": 118}

# construct: (instrument, unit, baseline mean, SD, direction)
CONSTRUCTS = {
    "physical": [
        ("physical activity", "IPAQ", "MET-hours/week", 22.0, 9.0, "higher"),
        ("body mass index", "measured BMI", "kg/m2", 27.5, 4.2, "lower"),
        ("systolic blood pressure", "automated cuff", "mmHg", 128.0, 14.0, "lower"),
        ("sleep quality", "PSQI (reversed)", "points", 12.0, 3.5, "higher"),
        ("self-rated health", "SF-12 PCS", "points", 47.0, 8.5, "higher"),
    ],
    "mental": [
        ("depression", "PHQ-9", "points", 9.5, 4.8, "lower"),
        ("anxiety", "GAD-7", "points", 8.0, 4.2, "lower"),
        ("wellbeing", "WEMWBS", "points", 45.0, 8.0, "higher"),
        ("loneliness", "UCLA-3", "points", 6.0, 1.8, "lower"),
        ("stress", "PSS-10", "points", 18.0, 6.0, "lower"),
        ("self-efficacy", "GSE", "points", 29.0, 5.0, "higher"),
    ],
}
WESTERN = ["US", "GB", "AU", "CA", "NL", "DE", "SE", "IE"]
EASTERN = ["CN", "HK", "JP", "KR", "SG", "TW", "IN", "MY"]
SOURCES = ["informal", "formal", "online_professional"]
PLATFORMS = ["app", "social_networking_site", "video_conferencing", "forum", "website", "email",
             "other"]  # fmt: skip
HIGH = {"app", "social_networking_site", "video_conferencing"}
LOW = {"forum", "website", "email"}
AGE_GROUPS = [("adolescents", 14, 17), ("young_adults", 18, 25), ("adults", 26, 59),
              ("older_adults", 60, 78)]  # fmt: skip
HEALTH = ["none", "low", "moderate", "high"]

SHEETS = {
    "studies": ["study_key", "citation", "year", "country", "design", "n_total", "simulated",
                "mean_age", "age_group", "health_condition", "notes"],
    "arms": ["study_key", "arm_key", "label", "role", "description", "n_randomized", "source",
             "platform", "dosage", "uptake"],
    "outcomes": ["study_key", "outcome_key", "domain", "construct", "instrument", "direction",
                 "unit"],
    "timepoints": ["study_key", "timepoint_key", "label", "weeks"],
    "results": ["study_key", "result_key", "outcome_key", "timepoint_key", "arm1_key",
                "arm2_key", "n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i", "m1i_pre", "sd1i_pre",
                "ri", "ti", "source_report", "location", "coder", "coded_at", "notes"],
}  # fmt: skip


def _rows_per_study(rng: np.random.Generator, studies: int, rows: int) -> list[int]:
    """Effect-size rows per study (1 to 4) summing to *rows*."""
    counts = [1] * studies
    extra = rows - studies
    while extra:
        i = int(rng.integers(studies))
        if counts[i] < 4:
            counts[i] += 1
            extra -= 1
    return counts


def _sample(rng, n, mean, sd, shift, r, pre=None):
    """Participant-level pre and post scores; returns (pre scores, post scores)."""
    z1 = rng.standard_normal(n) if pre is None else (pre - mean) / sd
    z2 = rng.standard_normal(n)
    post = mean + shift + sd * (r * z1 + math.sqrt(1 - r * r) * z2)
    return mean + sd * z1, post


def _stats(x: np.ndarray) -> tuple[int, float, float]:
    return len(x), round(float(np.mean(x)), 2), max(round(float(np.std(x, ddof=1)), 2), 0.01)


def simulate(seed: int = SEED) -> dict[str, list[dict]]:
    """Simulate the evidence base; returns the rows of each sheet."""
    rng = np.random.default_rng(seed)
    domains = ["physical"] * STUDIES["physical"] + ["mental"] * STUDIES["mental"]
    rng.shuffle(domains)
    counts = {d: _rows_per_study(rng, STUDIES[d], ROWS[d]) for d in STUDIES}
    used = {d: 0 for d in STUDIES}
    plans = []
    for i, domain in enumerate(domains, start=1):
        r_s = counts[domain][used[domain]]
        used[domain] += 1
        design = "pre-post" if rng.random() < 0.3 else "controlled"
        multi = design == "controlled" and r_s >= 2 and rng.random() < 0.25
        n_comp = 2 if multi else 1
        n_tp = 2 if (r_s > n_comp or rng.random() < 0.3) and rng.random() < 0.6 else 1
        n_out = math.ceil(r_s / (n_comp * n_tp))
        country = str(rng.choice(WESTERN if rng.random() < 0.6 else EASTERN))
        if rng.random() < 0.03:
            country = "BR"  # a country the codebook maps to no region
        group, lo, hi = AGE_GROUPS[int(rng.choice(4, p=[0.12, 0.28, 0.45, 0.15]))]
        arms = []
        for a in range(n_comp):
            source = SOURCES[int(rng.choice(3, p=[0.35, 0.5, 0.15]))]
            if a == 1 and source == arms[0]["source"]:
                source = "online_professional" if source != "online_professional" else "formal"
            arms.append({
                "source": source,
                "platform": PLATFORMS[int(rng.choice(7, p=[0.25, 0.2, 0.1, 0.2, 0.13, 0.07,
                                                           0.05]))],
                "dosage": round(float(np.clip(rng.lognormal(math.log(8), 0.7), 1, 60)), 1),
                "uptake": round(float(np.clip(rng.beta(5, 2) * 100, 20, 100)), 1),
            })  # fmt: skip
        plans.append({
            "key": f"SIM-{i:03d}", "domain": domain, "design": design, "rows": r_s,
            "n_comp": n_comp, "n_tp": n_tp, "n_out": n_out, "country": country,
            "year": int(rng.integers(2008, 2024)), "age_group": group,
            "mean_age": round(float(rng.uniform(lo, hi)), 1),
            "health": HEALTH[int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))], "arms": arms,
            "u": float(rng.normal(0, TAU[domain])),
        })  # fmt: skip

    # Moderator terms, centred within each domain so the average effect stays at MU.
    def terms(plan, arm, follow_up):
        mental = plan["domain"] == "mental"
        src = {"informal": 0.12, "formal": -0.08, "online_professional": 0.10}[arm["source"]]
        inter = 0.08 if arm["platform"] in HIGH else (-0.08 if arm["platform"] in LOW else 0.0)
        west = plan["country"] in WESTERN
        region = (0.08 if west else -0.08) if not mental else (-0.10 if west else 0.12)
        if plan["country"] not in WESTERN + EASTERN:
            region = 0.0
        return (
            (src if mental else 0.0)
            + inter
            + region
            - 0.012 * (arm["dosage"] - 10.0)
            + (-0.22 if (mental and follow_up) else 0.0)
        )

    centre = {}
    for domain in STUDIES:
        vals = [terms(p, a, False) for p in plans if p["domain"] == domain for a in p["arms"]]
        centre[domain] = float(np.mean(vals))
    centre["mental"] -= 0.22 * 0.2  # about a fifth of the mental rows are follow-ups

    sheets: dict[str, list[dict]] = {name: [] for name in SHEETS}
    for plan in plans:
        key, domain = plan["key"], plan["domain"]
        n_base = int(np.clip(rng.lognormal(math.log(45), 0.55), 12, 200))
        controlled = plan["design"] == "controlled"
        arm_n = [n_base + int(rng.integers(-5, 6)) for _ in range(plan["n_comp"] + controlled)]
        sheets["studies"].append({
            "study_key": key, "citation": f"SIMULATED study {key} ({plan['year']})",
            "year": plan["year"], "country": plan["country"], "design": plan["design"],
            "n_total": sum(arm_n), "simulated": "true", "mean_age": plan["mean_age"],
            "age_group": plan["age_group"], "health_condition": plan["health"],
            "notes": "SIMULATED record for demonstration; not a real study.",
        })  # fmt: skip
        arm_keys = []
        for a, arm in enumerate(plan["arms"]):
            arm_key = f"peer{a + 1}" if plan["n_comp"] > 1 else "peer"
            arm_keys.append(arm_key)
            sheets["arms"].append({
                "study_key": key, "arm_key": arm_key,
                "label": f"digital {arm['source'].replace('_', ' ')} support",
                "role": "intervention", "description": f"{arm['platform']} based support",
                "n_randomized": arm_n[a], **arm,
            })  # fmt: skip
        if controlled:
            sheets["arms"].append({
                "study_key": key, "arm_key": "control", "label": "usual care",
                "role": "comparator", "n_randomized": arm_n[-1],
            })  # fmt: skip
        pool = CONSTRUCTS[domain]
        picks = rng.choice(len(pool), size=plan["n_out"], replace=False)
        outcomes = [pool[int(j)] for j in picks]
        for o, (construct, instrument, unit, _m, _s, direction) in enumerate(outcomes):
            sheets["outcomes"].append({
                "study_key": key, "outcome_key": f"o{o + 1}", "domain": domain,
                "construct": construct, "instrument": instrument, "direction": direction,
                "unit": unit,
            })  # fmt: skip
        combos = [(t, o, c) for t in range(plan["n_tp"]) for o in range(plan["n_out"])
                  for c in range(plan["n_comp"])][: plan["rows"]]  # fmt: skip
        fu_weeks = float(rng.choice([4, 8, 12, 12, 24, 26]))
        for t in sorted({c[0] for c in combos}):
            sheets["timepoints"].append({
                "study_key": key, "timepoint_key": "post" if t == 0 else "fu",
                "label": "post" if t == 0 else "follow-up", "weeks": 0 if t == 0 else fu_weeks,
            })  # fmt: skip
        r_true = float(rng.uniform(0.35, 0.8))
        report_r = rng.random() < 0.6
        t_only = controlled and rng.random() < 0.06
        control_cache: dict[tuple[int, int], tuple] = {}
        for idx, (t, o, c) in enumerate(combos, start=1):
            construct, _i, _u, mean, sd, direction = outcomes[o]
            sign = 1.0 if direction == "higher" else -1.0
            arm = plan["arms"][c]
            delta = (
                MU[domain] + terms(plan, arm, t == 1) - centre[domain] + plan["u"]
                + float(rng.normal(0, SIGMA[domain]))
            )  # fmt: skip
            attrition = 1.0 if t == 0 else float(rng.uniform(0.8, 0.95))
            n1 = max(int(arm_n[c] * attrition), 4)
            row = {
                "study_key": key, "result_key": f"r{idx}",
                "outcome_key": f"o{o + 1}", "timepoint_key": "post" if t == 0 else "fu",
                "arm1_key": arm_keys[c], "source_report": "SIMULATED", "coder": "simulation",
                "location": f"Table {int(rng.integers(2, 4))}", "coded_at": "2025-01-15",
            }  # fmt: skip
            pre1, post1 = _sample(rng, n1, mean, sd, sign * delta * sd, r_true)
            if controlled:
                if (t, o) not in control_cache:
                    n2 = max(int(arm_n[-1] * attrition), 4)
                    control_cache[(t, o)] = _stats(_sample(rng, n2, mean, sd, 0.0, r_true)[1])
                n2, m2, s2 = control_cache[(t, o)]
                n1_, m1, s1 = _stats(post1)
                row.update({"arm2_key": "control", "n1i": n1_, "n2i": n2})
                if t_only:
                    sp = math.sqrt(((n1_ - 1) * s1**2 + (n2 - 1) * s2**2) / (n1_ + n2 - 2))
                    tval = (m1 - m2) / (sp * math.sqrt(1 / n1_ + 1 / n2))
                    row.update({"ti": round(tval, 3), "notes": "only t reported"})
                else:
                    row.update({"m1i": m1, "sd1i": s1, "m2i": m2, "sd2i": s2})
            else:
                n1_, m1, s1 = _stats(post1)
                _, mp, sdp = _stats(pre1)
                row.update({"n1i": n1_, "m1i": m1, "sd1i": s1, "m1i_pre": mp, "sd1i_pre": sdp})
                if report_r:
                    row["ri"] = round(float(np.corrcoef(pre1, post1)[0, 1]), 2)
                else:
                    row["notes"] = "pre-post r not reported"
            sheets["results"].append(row)
    return sheets


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def write(out: Path, seed: int = SEED) -> dict[str, Path]:
    """Write the coding sheets (``studies.csv`` ...) into *out*; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in simulate(seed).items():
        path = out / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(SHEETS[name])
            for row in rows:
                writer.writerow([_fmt(row.get(col)) for col in SHEETS[name]])
        paths[name] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for name, path in write(args.out, args.seed).items():
        print(f"{name:<11} {path}")


if __name__ == "__main__":
    main()
