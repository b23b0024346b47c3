"""The selection language: parsing, type checks with positions, evaluation, bound SQL."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from evidence.errors import SelectionError
from evidence.views.selection import FieldType, evaluate, parse_selection, to_sql

FIELDS = {
    "domain": FieldType("categorical", ("physical", "mental")),
    "design": FieldType("categorical", ("controlled", "pre-post")),
    "age_group": FieldType("categorical", ("adolescents", "young_adults", "adults"), True),
    "platform": FieldType("categorical", ("app", "forum", "social_networking_site")),
    "year": FieldType("number"),
    "study": FieldType("text"),
    "simulated": FieldType("bool"),
}

FRAME = pd.DataFrame(
    {
        "domain": ["mental", "physical", "mental", None],
        "design": ["controlled", "pre-post", "controlled", "controlled"],
        "age_group": ["adults", "adolescents", None, "young_adults"],
        "platform": ["app", "forum", "social_networking_site", "app"],
        "year": [2016.0, 2012.0, float("nan"), 2020.0],
        "study": ["S1", "S2", "S3", "S4"],
        "simulated": [True, False, True, None],
    }
)


def select(text: str) -> list[str]:
    return list(FRAME.loc[evaluate(parse_selection(text, FIELDS), FRAME), "study"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('domain == "mental" and design == "controlled" and year >= 2015', ["S1"]),
        ('platform in ["app", "social_networking_site"]', ["S1", "S3", "S4"]),
        ('platform not in ["app"]', ["S2", "S3"]),
        ("not simulated", ["S2"]),
        ("simulated", ["S1", "S3"]),
        ("simulated == false", ["S2"]),
        ('(domain == "physical" or year > 2019) and not design == "pre-post"', ["S4"]),
        ('age_group >= "young_adults"', ["S1", "S4"]),
        ('age_group < "adults"', ["S2", "S4"]),
        ("year != 2016", ["S2", "S4"]),
        ("", ["S1", "S2", "S3", "S4"]),
        ("study == \"S3\" OR study == 'S2'", ["S2", "S3"]),
    ],
)
def test_selection_selects_the_rows_its_text_describes(text: str, expected: list[str]) -> None:
    assert select(text) == expected


def test_missing_values_follow_three_valued_logic() -> None:
    # S3 has no year: "year < 2015" is unknown, so is "not (year < 2015)"; both leave it out.
    assert select("year < 2015") == ["S2"]
    assert select("not (year < 2015)") == ["S1", "S4"]
    # unknown or true is true
    assert "S3" in select('year < 2015 or domain == "mental"')


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ('domian == "mental"', 1, "unknown field 'domian'"),
        ('domain == "social"', 11, "not a level of 'domain'"),
        ('year >= "2015"', 9, "holds numbers"),
        ("domain == 3", 11, "holds categories"),
        ('study < "S2"', 1, "needs a numeric or ordered field"),
        ('domain == "mental" and', 23, "expected a field name"),
        ('domain == "mental"; DROP TABLE study', 19, "unexpected character ';'"),
        ('(domain == "mental"', 20, "expected ')'"),
        ("year", 5, "needs a comparison"),
        ('domain in "mental"', 11, "expected '[' after 'in'"),
        ('domain == "mental" year', 20, "expected 'and', 'or' or the end"),
        ('platform in ["app", 2]', 21, "holds categories"),
    ],
)
def test_bad_selection_raises_selection_error_naming_the_position(
    text: str, position: int, words: str
) -> None:
    with pytest.raises(SelectionError) as info:
        parse_selection(text, FIELDS)
    assert f"position {position}:" in info.value.message
    assert words in info.value.message


def test_injection_attempt_in_a_literal_is_only_ever_a_bound_value() -> None:
    hostile = "x'); DROP TABLE study; --"
    selection = parse_selection(f'study == "{hostile}" or year > 2000', FIELDS)
    engine = sa.create_engine("sqlite://")
    table = sa.Table(
        "study", sa.MetaData(), sa.Column("study", sa.Text), sa.Column("year", sa.Float)
    )
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(), [{"study": hostile, "year": 1990}, {"study": "a", "year": 2001}]
        )
        query = sa.select(table.c.study).where(to_sql(selection, table.c))
        compiled = str(query.compile(engine))
        assert hostile not in compiled and "DROP" not in compiled
        rows = sorted(conn.execute(query).scalars())
        assert rows == sorted([hostile, "a"])
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 2


def test_compiled_sql_selects_the_same_rows_as_pandas() -> None:
    engine = sa.create_engine("sqlite://")
    FRAME.assign(simulated=FRAME["simulated"].astype("boolean")).to_sql("d", engine, index=False)
    table = sa.Table("d", sa.MetaData(), autoload_with=engine)
    for text in (
        'domain == "mental" and year >= 2015',
        'platform not in ["app"] or not simulated',
        "not (year < 2015)",
        'age_group >= "young_adults"',
    ):
        selection = parse_selection(text, FIELDS)
        with engine.connect() as conn:
            got = sorted(
                conn.execute(sa.select(table.c.study).where(to_sql(selection, table.c))).scalars()
            )
        assert got == select(text), text


@pytest.mark.parametrize(
    "text",
    [
        'domain == "mental" and design == "controlled" and year >= 2015',
        'platform not in ["app"] or not simulated',
        "not (year < 2015)",
        'age_group >= "young_adults" and simulated == true',
        'year != 2016 or domain != "mental"',
    ],
)
def test_row_by_row_and_vectorised_evaluation_agree(text: str) -> None:
    selection = parse_selection(text, FIELDS)
    big = pd.concat([FRAME] * 20, ignore_index=True)  # above the row-by-row threshold
    assert list(evaluate(selection, big)) == list(evaluate(selection, FRAME)) * 20
