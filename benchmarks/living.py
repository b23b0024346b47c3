"""Living views at scale: 100,000 effect sizes, 200 views, one new effect size (SQLite).

Prints
------
* the time to build the database and to compute the 200 views the first time;
* the freshness check when nothing changed (``stale_views``; target < 50 ms);
* the time from inserting one effect size through ``write_transaction`` until every
  affected view is fresh (the write refreshes them before it returns; target < 1 s), and
  how many views were recomputed;
* one effect size inserted by plain SQL (no refresh on write): the refresh at the next
  read (``refresh_affected``), and the same refresh done the naive way (every view
  refitted on the full dataset), measured in the same run, and the ratio.

Usage: ``.venv/bin/python benchmarks/living.py [--effects 100000] [--views 200]``. The
database is a temporary file, removed afterwards. The data are SIMULATED.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from evidence.config import project_root
from evidence.db.engine import get_engine, write_transaction
from evidence.db.migrate import upgrade
from evidence.ingest.codebook import load_codebook
from evidence.stats.escalc import escalc
from evidence.views import create_view, refresh_affected, stale_views
from evidence.views.refresh import refresh_views

PER_STUDY = 5


def build(engine: sa.Engine, n_effects: int, seed: int = 1) -> None:
    """Insert a SIMULATED review of *n_effects* effect sizes (5 per study) in one revision."""
    rng = np.random.default_rng(seed)
    codebook = load_codebook(project_root() / "schemas" / "peer_support.yaml")
    n_studies = n_effects // PER_STUDY
    platforms = [
        "app",
        "social_networking_site",
        "video_conferencing",
        "forum",
        "website",
        "email",
        "other",
    ]
    interactivity = {
        "app": "high",
        "social_networking_site": "high",
        "video_conferencing": "high",
        "forum": "low",
        "website": "low",
        "email": "low",
    }
    ages = ["adolescents", "young_adults", "adults", "older_adults"]
    yi = rng.normal(0.4, 0.3, n_effects)  # mean difference of two arms of 50 with SD 1
    # the effect sizes the store computes from those records (Hedges' g, vtype LS)
    g = escalc(
        "SMD",
        m1i=yi,
        sd1i=np.ones(n_effects),
        n1i=np.full(n_effects, 50.0),
        m2i=np.zeros(n_effects),
        sd2i=np.ones(n_effects),
        n2i=np.full(n_effects, 50.0),
    )
    with write_transaction(engine, message="benchmark: SIMULATED data") as (conn, _):
        rid = conn.execute(
            sa.text(
                "INSERT INTO review"
                " (name, title, codebook, codebook_sha256, created_at, updated_at)"
                " VALUES (:n, :t, :c, :s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {
                "n": codebook.name,
                "t": codebook.title,
                "c": codebook.to_json(),
                "s": codebook.sha256,
            },
        ).scalar_one()
        mods = {}
        for name, m in codebook.moderators.items():
            mods[name] = conn.execute(
                sa.text(
                    "INSERT INTO moderator (review_id, name, level, type) VALUES (:r, :n, :l, :t)"
                    " RETURNING id"
                ),
                {"r": rid, "n": name, "l": m.level, "t": "text" if m.type == "country" else m.type},
            ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO study (id, review_id, study_key, citation, year, country, design,"
                " simulated) VALUES (:id, :r, :k, :c, :y, 'US', :d, 1)"
            ),
            [
                {
                    "id": i + 1,
                    "r": rid,
                    "k": f"SIM-{i + 1:06d}",
                    "c": "SIMULATED",
                    "y": int(2000 + i % 25),
                    "d": "controlled" if i % 2 else "pre-post",
                }
                for i in range(n_studies)
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO arm (id, study_id, arm_key, label, role)"
                " VALUES (:id, :s, :k, :k, :role)"
            ),
            [
                {
                    "id": 2 * i + j + 1,
                    "s": i + 1,
                    "k": ("peer", "control")[j],
                    "role": ("intervention", "comparator")[j],
                }
                for i in range(n_studies)
                for j in range(2)
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO outcome (id, study_id, outcome_key, domain, construct, direction)"
                " VALUES (:id, :s, 'o1', :d, 'wellbeing', 'higher')"
            ),
            [
                {"id": i + 1, "s": i + 1, "d": ("physical", "mental")[i % 2 == 0 and i % 3 != 0]}
                for i in range(n_studies)
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO timepoint (id, study_id, timepoint_key, label, weeks)"
                " VALUES (:id, :s, 'post', 'post', 0)"
            ),
            [{"id": i + 1, "s": i + 1} for i in range(n_studies)],
        )
        conn.execute(
            sa.text(
                "INSERT INTO result (id, study_id, result_key, outcome_id, timepoint_id, arm1_id,"
                " arm2_id, n1i, m1i, sd1i, n2i, m2i, sd2i)"
                " VALUES (:id, :s, :k, :s, :s, :a1, :a2, 50, :y, 1, 50, 0, 1)"
            ),
            [
                {
                    "id": e + 1,
                    "s": e // PER_STUDY + 1,
                    "k": f"r{e % PER_STUDY + 1}",
                    "a1": 2 * (e // PER_STUDY) + 1,
                    "a2": 2 * (e // PER_STUDY) + 2,
                    "y": float(yi[e]),
                }
                for e in range(n_effects)
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO effect_size (result_id, measure, yi, vi, cluster, computed_at)"
                " VALUES (:r, 'SMD', :y, :v, :c, CURRENT_TIMESTAMP)"
            ),
            [
                {
                    "r": e + 1,
                    "y": float(g.yi[e]),
                    "v": float(g.vi[e]),
                    "c": f"SIM-{e // PER_STUDY + 1:06d}",
                }
                for e in range(n_effects)
            ],
        )
        values = []
        for i in range(n_studies):
            platform = platforms[int(rng.integers(len(platforms)))]
            values += [
                {"m": mods["age_group"], "s": i + 1, "a": None, "t": ages[i % 4], "n": None},
                {
                    "m": mods["region"],
                    "s": i + 1,
                    "a": None,
                    "t": ("Western", "Eastern")[int(rng.integers(2))],
                    "n": None,
                },
                {
                    "m": mods["mean_age"],
                    "s": i + 1,
                    "a": None,
                    "t": None,
                    "n": float(rng.uniform(15, 70)),
                },
                {"m": mods["platform"], "s": None, "a": 2 * i + 1, "t": platform, "n": None},
            ]
            if platform in interactivity:
                values.append(
                    {
                        "m": mods["interactivity"],
                        "s": None,
                        "a": 2 * i + 1,
                        "t": interactivity[platform],
                        "n": None,
                    }
                )
        conn.execute(
            sa.text(
                "INSERT INTO moderator_value"
                " (moderator_id, study_id, arm_id, value_text, value_num)"
                " VALUES (:m, :s, :a, :t, :n)"
            ),
            values,
        )


def selections(n: int) -> list[str]:
    """*n* selections that split the data into small, disjoint cells."""
    cells = itertools.product(
        ("physical", "mental"),
        (
            "app",
            "social_networking_site",
            "video_conferencing",
            "forum",
            "website",
            "email",
            "other",
        ),
        ("adolescents", "young_adults", "adults", "older_adults"),
        ("Western", "Eastern"),
        ("<", ">="),
    )
    out = [
        f'domain == "{d}" and platform == "{p}" and age_group == "{a}" and region == "{r}"'
        f" and year {y} 2012"
        for d, p, a, r, y in cells
    ]
    return (out * (n // len(out) + 1))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--effects", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'living.db'}"
        upgrade(url)
        engine = get_engine(url)
        t0 = time.perf_counter()
        build(engine, args.effects)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, text in enumerate(selections(args.views)):
            create_view(
                engine, f"v{i:03d}", text, model="che" if i % 10 == 0 else "rma", compute=False
            )
        refresh_views(engine)
        t_views = time.perf_counter() - t0
        assert stale_views(engine) == []

        checks = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            stale = stale_views(engine)
            checks.append(time.perf_counter() - t0)
            assert stale == []

        # 1. one new effect size through evidence: the write refreshes the views it affects
        #    before it returns (on-commit hook), so this is "insert -> every view fresh"
        results_before = _count(engine, "view_result")
        t0 = time.perf_counter()
        with write_transaction(engine, message="benchmark: one new effect size") as (conn, _):
            _insert_effect(conn, study=7, key="r-new", yi=0.9)
        fresh = stale_views(engine) == []
        t_write = time.perf_counter() - t0
        assert fresh
        recomputed_write = _count(engine, "view_result") - results_before

        # 2. the same by plain SQL (no hook): the change is found at the next read
        with engine.begin() as conn:
            _insert_effect(conn, study=11, key="r-sql", yi=-0.5)
        assert stale_views(engine) != []
        t0 = time.perf_counter()
        report = refresh_affected(engine)
        t_refresh = time.perf_counter() - t0
        assert stale_views(engine) == []

        # the naive way, in the same run: refit every view on the full dataset
        t0 = time.perf_counter()
        refresh_views(engine, force=True)
        t_naive = time.perf_counter() - t0
        engine.dispose()

    def line(label: str, value: str, note: str = "") -> None:
        print(f"  {label:<54}{value:>10}   {note}".rstrip())

    print(f"SIMULATED database: {args.effects:,} effect sizes, {args.views} views (SQLite)")
    line("build (one revision, history triggers on)", f"{t_build:.2f} s")
    line("first computation of all views", f"{t_views:.2f} s")
    line(
        f"freshness check, nothing changed (median of {args.repeat})",
        f"{statistics.median(checks) * 1000:.2f} ms",
        "target < 50 ms",
    )
    line(
        "insert one effect size -> every affected view fresh",
        f"{t_write * 1000:.1f} ms",
        f"target < 1000 ms (write + on-commit refresh; {recomputed_write} views recomputed)",
    )
    line(
        "plain-SQL insert: refresh at the next read",
        f"{t_refresh * 1000:.1f} ms",
        f"({len(report.recomputed)} recomputed, {len(report.confirmed)} confirmed)",
    )
    line("naive: refit every view on the full dataset", f"{t_naive * 1000:.1f} ms")
    line("ratio naive / incremental refresh", f"{t_naive / t_refresh:.1f} x")


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _insert_effect(conn: sa.Connection, *, study: int, key: str, yi: float) -> None:
    """One result with its effect size in an existing study (ids as :func:`build` made)."""
    new = conn.execute(
        sa.text(
            "INSERT INTO result (study_id, result_key, outcome_id, timepoint_id, arm1_id,"
            " arm2_id, n1i, m1i, sd1i, n2i, m2i, sd2i)"
            " VALUES (:s, :k, :s, :s, :a1, :a2, 50, :y, 1, 50, 0, 1) RETURNING id"
        ),
        {"s": study, "k": key, "a1": 2 * study - 1, "a2": 2 * study, "y": yi},
    ).scalar_one()
    conn.execute(
        sa.text(
            "INSERT INTO effect_size (result_id, measure, yi, vi, cluster, computed_at)"
            " VALUES (:r, 'SMD', :y, 0.02, :c, CURRENT_TIMESTAMP)"
        ),
        {"r": new, "y": yi, "c": f"SIM-{study:06d}"},
    )


if __name__ == "__main__":
    main()
