"""Every real Metapsy release imports, or is refused only for real errors of the file.

Each of the 22 newest databases and each earlier release in ``versions/`` (Metapsy project,
metapsy.org, ODC-By 1.0; tests/_metapsy.py) is imported as a dry run (validated and diffed
against an empty review, nothing written) with the defaults. A file that imports gives its
rows and the rows loaded as results; a refused file gives every failing cell (column, rule and
file rows, as listed below) and the flag that overrides it (``repair_text`` decodes mojibake,
``skip_invalid`` leaves the failing rows out), and then imports with that flag. A guard checks
that the table covers every file of the folder. The rules are errors of the files: text
encoded twice, means stored x100 (a lost decimal comma), a negative ``time_weeks``, rows with
only some of their means and SDs, a continuous outcome with only an MDD diagnosis' events,
``.g`` or ``mean_age`` with a lost decimal separator, the same record listed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _metapsy import DATA, needs_data

from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.metapsy_store import import_metapsy

pytestmark = [needs_data, pytest.mark.slow]

MOJIBAKE = "text encoded once too often"
LARGE_D = "standardized difference of the means"
INCOMPLETE = "complete means, SDs and ns"
EVENTS_ONLY = "a continuous outcome_type (msd, imsd) needs means or change scores"
SAME_RECORD = "are the same record of study"


@dataclass(frozen=True)
class Span:
    """Many failing rows: how many, the first and the last."""

    n: int
    first: int
    last: int


@dataclass(frozen=True)
class Release:
    rows: int
    loaded: int
    refused: dict[tuple[str, str], tuple[int, ...] | Span] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    no_effect_data: int = 0  # rows without any effect data (kept out, counted)
    ignore: tuple[str, ...] = ()  # columns damaged throughout, left out (--ignore-column)


EXPECTED = {
    "databases/bodily-distress-psyctr__v25.0.1.csv": Release(449, 449),
    "databases/borderline-psyctr__v23.0.1.csv": Release(
        54,
        54,
        {
            ("full_ref", MOJIBAKE): Span(48, 2, 54),
            (".id", MOJIBAKE): (37,),
            ("study", MOJIBAKE): (37,),
        },
        ("repair_text",),
    ),
    "databases/depression-anxiety-transdiagnostic__v22.0.5.csv": Release(
        122,
        52,
        {("mean_arm1", LARGE_D): Span(69, 2, 121), ("sd_change_arm1", "sd_change_arm1 > 0"): (55,)},
        ("skip_invalid",),
    ),
    "databases/depression-inpatients__v22.2.1.csv": Release(143, 143),
    "databases/depression-psiloctr__v25.1.2.csv": Release(
        220,
        213,
        {("time_weeks", "time_weeks >= 0"): (2, 129, 164, 176, 183, 208, 213)},
        ("skip_invalid",),
    ),
    "databases/depression-psyctr__v24.0.2.csv": Release(
        900,
        899,
        {("full_ref", MOJIBAKE): (613, 614, 615), ("sd_arm1", INCOMPLETE): (708,)},
        ("repair_text", "skip_invalid"),
    ),
    "databases/depression-selfguided-psyctr__v24.0.3.csv": Release(
        361,
        353,
        {("mean_arm2", INCOMPLETE): (25, 32, 193, 212, 213, 216, 227, 334)},
        ("skip_invalid",),
    ),
    "databases/ed-digital-psyctr__v26.0.2.csv": Release(384, 384),
    "databases/ed-psyctr__v25.0.0.csv": Release(44, 44),
    "databases/gad-psyctr__v23.0.4.csv": Release(
        126,
        122,
        {("sd_arm1", INCOMPLETE): (23, 24), ("n_arm1", INCOMPLETE): (77, 78)},
        ("skip_invalid",),
    ),
    "databases/gambling-psyctr__v25.0.0.csv": Release(
        267,
        267,
        {("mean_age", "mean_age is an age in years, 0 to 120"): Span(231, 2, 268)},
        ignore=("mean_age",),
    ),
    "databases/grief-psyctr__v25.0.4.csv": Release(38, 38),
    "databases/ocd-psyctr__v24.0.1.csv": Release(90, 90),
    "databases/panic-psyctr__v23.0.1.csv": Release(
        82,
        78,
        {("mean_arm2", INCOMPLETE): (29,), ("mean_arm1", INCOMPLETE): (57, 58)},
        ("skip_invalid",),
        no_effect_data=1,
    ),
    "databases/peer-support__v23.0.3.csv": Release(
        66,
        56,
        {
            ("outcome_type", EVENTS_ONLY): (13,),
            (".id", MOJIBAKE): (18, 34, 53, 54, 57, 60),
            ("instrument", MOJIBAKE): (18, 34, 53, 54, 60),
            ("study", MOJIBAKE): (57,),
        },
        ("repair_text", "skip_invalid"),
        no_effect_data=9,
    ),
    "databases/psychosis-psyctr__v23.1.4.csv": Release(206, 206),
    "databases/ptsd-mdmactr__v26.0.1.csv": Release(61, 61),
    "databases/ptsd-psyctr__v23.0.3.csv": Release(131, 131),
    "databases/sad-psyctr__v24.0.1.csv": Release(315, 315),
    "databases/suicide-psyctr__v23.1.1.csv": Release(190, 88, no_effect_data=102),
    "databases/template__v22.8.6.csv": Release(118, 118),
    "databases/total-response__v23.0.1.csv": Release(
        569, 565, {("study", SAME_RECORD): (547, 566, 567, 570)}, ("skip_invalid",)
    ),
    "versions/depression-inpatients__v22.0.1.csv": Release(143, 143),
    "versions/depression-inpatients__v22.1.0.csv": Release(143, 143),
    "versions/depression-inpatients__v22.2.1.csv": Release(143, 143),
    "versions/depression-psyctr__v22.0.2.csv": Release(
        826,
        825,
        {
            (".g", "|.g| <= 10"): (476,),
            ("mean_arm1", LARGE_D): (476,),
            ("full_ref", MOJIBAKE): (570, 571, 572),
        },
        ("repair_text", "skip_invalid"),
    ),
    "versions/depression-psyctr__v24.0.1.csv": Release(
        900,
        899,
        {("full_ref", MOJIBAKE): (613, 614, 615), ("sd_arm1", INCOMPLETE): (708,)},
        ("repair_text", "skip_invalid"),
    ),
    "versions/depression-psyctr__v24.0.2.csv": Release(
        900,
        899,
        {("full_ref", MOJIBAKE): (613, 614, 615), ("sd_arm1", INCOMPLETE): (708,)},
        ("repair_text", "skip_invalid"),
    ),
    "versions/gambling-psyctr__v23.0.5.csv": Release(135, 131, no_effect_data=4),
    "versions/gambling-psyctr__v24.0.1.csv": Release(223, 223),
    "versions/gambling-psyctr__v24.0.2.csv": Release(
        241,
        106,
        {(".g", "|.g| <= 10"): Span(132, 2, 242), (".g_se", "|.g_se| <= 10"): Span(135, 2, 242)},
        ("skip_invalid",),
    ),
    "versions/gambling-psyctr__v25.0.0.csv": Release(
        267,
        267,
        {("mean_age", "mean_age is an age in years, 0 to 120"): Span(231, 2, 268)},
        ignore=("mean_age",),
    ),
    "versions/peer-support__v23.0.2.csv": Release(
        66, 56, {("outcome_type", EVENTS_ONLY): (13,)}, ("skip_invalid",), no_effect_data=9
    ),
    "versions/peer-support__v23.0.3.csv": Release(
        66,
        56,
        {
            ("outcome_type", EVENTS_ONLY): (13,),
            (".id", MOJIBAKE): (18, 34, 53, 54, 57, 60),
            ("instrument", MOJIBAKE): (18, 34, 53, 54, 60),
            ("study", MOJIBAKE): (57,),
        },
        ("repair_text", "skip_invalid"),
        no_effect_data=9,
    ),
    "versions/psychosis-psyctr__v23.0.4.csv": Release(206, 206),
    "versions/psychosis-psyctr__v23.1.4.csv": Release(206, 206),
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('releases') / 'evidence.db'}"
    upgrade(url)
    return url


def test_the_table_covers_every_release_in_the_folder() -> None:
    files = {str(p.relative_to(DATA)) for d in ("databases", "versions")
             for p in (DATA / d).glob("*.csv")}  # fmt: skip
    assert files == set(EXPECTED)
    assert len([f for f in EXPECTED if f.startswith("databases/")]) == 22


def _cells(failures) -> dict[tuple[str, str], tuple[int, ...] | Span]:
    rules = (MOJIBAKE, LARGE_D, INCOMPLETE, EVENTS_ONLY, SAME_RECORD)
    found: dict[tuple[str, str], list[int]] = {}
    for f in failures:
        rule = next((r for r in rules if r in f["rule"]), f["rule"].split(" (")[0])
        found.setdefault((f["column"], rule), []).append(f["row"])
    return {k: tuple(v) if len(v) <= 8 else Span(len(v), v[0], v[-1]) for k, v in found.items()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_release_imports_or_is_refused_for_errors_of_the_file(name: str, url: str) -> None:
    want = EXPECTED[name]
    path = DATA / name
    if want.refused:
        with pytest.raises(ValidationError) as info:
            import_metapsy(path, direction="lower", database=url, dry_run=True)
        assert _cells(info.value.failures) == want.refused
        names = [f"--{f.replace('_', '-')}" for f in want.flags]
        names += [f"--ignore-column {c}" for c in want.ignore]
        assert any(n in str(info.value) for n in names)  # the message names a flag
        result = import_metapsy(path, direction="lower", database=url, dry_run=True,
                                ignore_columns=want.ignore,
                                **dict.fromkeys(want.flags, True))  # fmt: skip
    else:
        result = import_metapsy(path, direction="lower", database=url, dry_run=True)
        assert not result.skipped and not result.repaired
    assert (result.rows, result.loaded) == (want.rows, want.loaded)
    assert len(result.no_effect_data) == want.no_effect_data
    assert result.loaded + len(result.no_effect_data) + len(result.skipped) == result.rows
    assert Path(result.file).name == Path(name).name
