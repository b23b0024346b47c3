"""A living update on real data: Metapsy peer support v23.0.2, then v23.0.3 as an update.

Data: Metapsy project, metapsy.org, database "peer-support" (ODC-By 1.0), read from
../shared/data/metapsy/versions/ (never copied into the repository).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence.db.engine import get_engine
from evidence.views import (
    create_view,
    diff_revisions,
    recompute_as_of,
    refresh_affected,
    stale_views,
    view_history,
)
from evidence.views._metapsy_load import load_metapsy

VERSIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "metapsy" / "versions"
OLD, NEW = VERSIONS / "peer-support__v23.0.2.csv", VERSIONS / "peer-support__v23.0.3.csv"


@pytest.fixture
def engine(migrated_db_url: str):
    if not (OLD.is_file() and NEW.is_file()):
        pytest.skip(f"Metapsy peer support releases not found in {VERSIONS}")
    engine = get_engine(migrated_db_url)
    yield engine
    engine.dispose()


def test_loading_the_next_release_refreshes_exactly_the_affected_views(engine) -> None:
    first, left_out = load_metapsy(OLD, engine)
    assert first.revision == 1 and first.rows["results"] == 50 and left_out == 16
    views = {
        "overall": create_view(engine, "overall", "", model="three-level"),
        "recent": create_view(engine, "recent", "year >= 2015"),
        "by-format": create_view(engine, "by-format", "", subgroup="format"),
        "clinical": create_view(engine, "clinical", 'domain == "Clinical recovery"'),
    }
    assert all(v.status == "ok" for v in views.values())
    assert views["overall"].k_effects == 50

    update, _ = load_metapsy(NEW, engine)  # the loader refreshes the views it affects
    assert update.revision == 2
    assert update.changes["effect_size"].inserted == 1
    assert update.changes["outcome"].updated == 3  # instrument names re-encoded in v23.0.3
    assert stale_views(engine) == []
    # v23.0.3 adds one 2014 study with a "Personal recovery" outcome: it enters the views
    # without a year or domain filter and no other.
    results = {name: len(view_history(engine, name).entries) for name in views}
    assert results == {"overall": 2, "recent": 1, "by-format": 2, "clinical": 1}
    assert refresh_affected(engine).recomputed == ()

    history = view_history(engine, "overall")
    assert [(e["revision"], e["k_effects"]) for e in history.entries] == [(1, 50), (2, 51)]
    tables = {c["table"] for c in history.entries[1]["changes"]}
    assert {"study", "result", "effect_size"} <= tables
    assert len(view_history(engine, "recent").entries) == 1
    for entry in history.entries:
        _, again = recompute_as_of(engine, "overall", entry["revision"])
        assert again.headline["estimate"] == entry["estimate"]

    diff = diff_revisions(engine, 1, 2).get("views").set_index("view")
    assert diff.loc["overall", "k_after"] == 51 and diff.loc["overall", "changed"]
    assert not diff.loc["recent", "changed"] and diff.loc["recent", "change"] == 0
