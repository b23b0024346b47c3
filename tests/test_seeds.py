"""Seeds: the SIMULATED peer support base is deterministic and has the review's published shape;
the BCG seed holds the 13 real trials of dat.bcg."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _ingest_data import BCG_SEED, PEER_CODEBOOK, PEER_SEED, query

from evidence.db.migrate import upgrade
from evidence.ingest.loader import ingest

SHEETS = ("studies", "arms", "outcomes", "timepoints", "results")


def _generator():
    spec = importlib.util.spec_from_file_location("peer_generate", PEER_SEED / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(PEER_SEED / f"{name}.csv", keep_default_na=False, dtype=str)


def test_generator_rewrites_the_committed_sheets_byte_for_byte(tmp_path: Path) -> None:
    paths = _generator().write(tmp_path)
    assert sorted(paths) == sorted(SHEETS)
    for name in SHEETS:
        assert (tmp_path / f"{name}.csv").read_bytes() == (PEER_SEED / f"{name}.csv").read_bytes()


def test_peer_support_seed_has_the_published_numbers_of_studies_and_effect_sizes() -> None:
    studies, results, outcomes = _read("studies"), _read("results"), _read("outcomes")
    assert list(studies["study_key"]) == [f"SIM-{i:03d}" for i in range(1, 121)]
    assert set(studies["simulated"]) == {"true"}
    assert studies["citation"].str.startswith("SIMULATED").all()
    merged = results.merge(outcomes, on=["study_key", "outcome_key"])
    by_domain = merged.groupby("domain").agg(rows=("result_key", "size"),
                                             studies=("study_key", "nunique"))  # fmt: skip
    assert by_domain.to_dict("index") == {"physical": {"rows": 76, "studies": 47},
                                          "mental": {"rows": 118, "studies": 73}}  # fmt: skip


def test_peer_support_seed_codes_every_moderator_in_plausible_proportions() -> None:
    studies, arms, results = _read("studies"), _read("arms"), _read("results")
    outcomes, timepoints = _read("outcomes"), _read("timepoints")
    share = studies["design"].value_counts(normalize=True)
    assert 0.55 < share["controlled"] < 0.85 and 0.15 < share["pre-post"] < 0.45
    for column, levels in (("age_group", 4), ("health_condition", 4)):
        assert studies[column].nunique() == levels
    interventions = arms[arms["role"] == "intervention"]
    assert set(interventions["source"]) == {"informal", "formal", "online_professional"}
    assert interventions["platform"].nunique() == 7
    uptake, dosage = interventions["uptake"].astype(float), interventions["dosage"].astype(float)
    assert uptake.between(0, 100).all() and dosage.gt(0).all()
    assert (arms.loc[arms["role"] == "comparator", "source"] == "").all()
    assert 0.15 < (timepoints["label"] == "follow-up").mean() < 0.4
    assert studies["country"].isin(["US", "GB", "CN", "JP"]).any()
    assert {"depression", "body mass index"} <= set(outcomes["construct"])
    assert (outcomes["direction"] == "lower").mean() > 0.3
    single = results["arm2_key"] == ""
    assert (single & (results["ri"] == "")).sum() >= 10  # r to be imputed
    assert (single & (results["ri"] != "")).sum() >= 10
    assert (results["ti"] != "").sum() >= 1  # a t statistic only
    shared = results[~single].groupby(["study_key", "outcome_key", "timepoint_key",
                                       "arm2_key"])["arm1_key"].nunique()  # fmt: skip
    assert (shared > 1).groupby(level=0).any().sum() >= 3  # multi-arm trials


def _dl(yi: np.ndarray, vi: np.ndarray) -> float:
    """DerSimonian-Laird pooled estimate (DerSimonian & Laird 1986)."""
    w = 1 / vi
    mu = np.sum(w * yi) / np.sum(w)
    q = np.sum(w * (yi - mu) ** 2)
    tau2 = max(0.0, (q - (len(yi) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    w = 1 / (vi + tau2)
    return float(np.sum(w * yi) / np.sum(w))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    url = f"sqlite:///{tmp_path_factory.mktemp('seed') / 'evidence.db'}"
    upgrade(url)
    ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=url)
    rows = query(url, """
        SELECT o.domain, e.yi, e.vi, t.label AS timepoint,
               (SELECT value_text FROM moderator_value v JOIN moderator m ON m.id = v.moderator_id
                WHERE m.name = 'source' AND v.arm_id = r.arm1_id) AS source,
               (SELECT value_text FROM moderator_value v JOIN moderator m ON m.id = v.moderator_id
                WHERE m.name = 'interactivity' AND v.arm_id = r.arm1_id) AS interactivity,
               (SELECT value_text FROM moderator_value v JOIN moderator m ON m.id = v.moderator_id
                WHERE m.name = 'region' AND v.study_id = r.study_id) AS region,
               (SELECT value_num FROM moderator_value v JOIN moderator m ON m.id = v.moderator_id
                WHERE m.name = 'dosage' AND v.arm_id = r.arm1_id) AS dosage,
               (SELECT value_num FROM moderator_value v JOIN moderator m ON m.id = v.moderator_id
                WHERE m.name = 'uptake' AND v.arm_id = r.arm1_id) AS uptake
        FROM effect_size e JOIN result r ON r.id = e.result_id
        JOIN outcome o ON o.id = r.outcome_id JOIN timepoint t ON t.id = r.timepoint_id
    """)  # fmt: skip
    columns = ["domain", "yi", "vi", "timepoint", "source", "interactivity", "region", "dosage",
               "uptake"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def test_seed_effects_pool_near_the_published_smds(stored: pd.DataFrame) -> None:
    # published: physical 0.35 (0.30-0.41), mental 0.53 (0.46-0.61)
    for domain, lo, hi in (("physical", 0.28, 0.43), ("mental", 0.45, 0.62)):
        part = stored[stored["domain"] == domain]
        assert lo < _dl(part["yi"].to_numpy(), part["vi"].to_numpy()) < hi


def test_seed_effects_follow_the_published_moderator_directions(stored: pd.DataFrame) -> None:
    def pooled(mask: pd.Series) -> float:
        part = stored[mask]
        return _dl(part["yi"].to_numpy(), part["vi"].to_numpy())

    mental, physical = stored["domain"] == "mental", stored["domain"] == "physical"
    assert pooled(mental & (stored["source"] == "informal")) > pooled(
        mental & (stored["source"] == "formal"))  # fmt: skip
    assert pooled(mental & (stored["timepoint"] == "post")) > pooled(
        mental & (stored["timepoint"] == "follow-up")) + 0.1  # fmt: skip
    for domain in (mental, physical):
        assert pooled(domain & (stored["interactivity"] == "high")) > pooled(
            domain & (stored["interactivity"] == "low"))  # fmt: skip
    assert pooled(physical & (stored["region"] == "Western")) > pooled(
        physical & (stored["region"] == "Eastern"))  # fmt: skip
    assert pooled(mental & (stored["region"] == "Eastern")) > pooled(
        mental & (stored["region"] == "Western"))  # fmt: skip


def _slope(part: pd.DataFrame, mod: str) -> float:
    """Weighted least-squares slope of yi on a moderator (weights 1 / (vi + 0.02))."""
    w = 1 / (part["vi"].to_numpy() + 0.02)
    x = np.column_stack([np.ones(len(part)), part[mod].to_numpy()])
    beta = np.linalg.solve(x.T @ (x * w[:, None]), x.T @ (w * part["yi"].to_numpy()))
    return float(beta[1])


def test_seed_effects_weaken_with_dosage_and_not_with_uptake(stored: pd.DataFrame) -> None:
    for domain in ("physical", "mental"):
        part = stored[stored["domain"] == domain]
        assert _slope(part, "dosage") < 0
        assert abs(_slope(part, "uptake")) < 0.003  # per percentage point: no moderation


def test_bcg_seed_holds_the_13_trials_of_dat_bcg() -> None:
    studies = pd.read_csv(BCG_SEED / "studies.csv")
    results = pd.read_csv(BCG_SEED / "results.csv")
    # metadat dat.bcg: tpos, tneg, cpos, cneg of trials 1..13
    tpos = [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27]
    tneg = [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886]
    cpos = [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29]
    cneg = [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825]
    assert list(results["event1i"]) == tpos and list(results["event2i"]) == cpos
    assert list(results["n1i"] - results["event1i"]) == tneg
    assert list(results["n2i"] - results["event2i"]) == cneg
    assert list(studies["year"]) == [1948, 1949, 1960, 1977, 1973, 1953, 1973, 1980, 1968, 1961,
                                     1974, 1969, 1976]  # fmt: skip
    assert list(studies["ablat"]) == [44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33]
    assert not studies["simulated"].any()
