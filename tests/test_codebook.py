"""Codebooks: the two shipped ones load; a malformed codebook is an error naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from _ingest_data import BCG_CODEBOOK, PEER_CODEBOOK
from typer.testing import CliRunner

from evidence.cli import app
from evidence.errors import NotFoundError, ValidationError
from evidence.ingest.codebook import find_codebook, load_codebook, parse_codebook

PEER_RAW: dict[str, Any] = yaml.safe_load(PEER_CODEBOOK.read_text(encoding="utf-8"))


def _peer(**edits: Any) -> dict[str, Any]:
    raw = copy.deepcopy(PEER_RAW)
    for path, value in edits.items():
        node = raw
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return raw


_DELETE = object()


def test_peer_support_codebook_codes_every_variable_of_the_review() -> None:
    cb = load_codebook(PEER_CODEBOOK)
    assert cb.name == "peer_support" and cb.analysis.measure == "SMD"
    assert cb.analysis.default_ri == 0.5 and cb.analysis.model["structure"] == "CHE"
    assert cb.analysis.model["rho"] == 0.6 and cb.analysis.level == 95
    assert cb.columns("outcomes")["domain"].levels == ("physical", "mental")
    assert cb.columns("studies")["design"].levels == ("controlled", "pre-post")
    assert cb.columns("timepoints")["label"].levels == ("post", "follow-up")
    assert cb.columns("timepoints")["weeks"].unit == "weeks"
    assert cb.columns("studies")["country"].type == "country"
    mods = cb.moderators
    assert mods["source"].levels == ("informal", "formal", "online_professional")
    assert mods["platform"].levels == ("app", "social_networking_site", "video_conferencing",
                                       "forum", "website", "email", "other")  # fmt: skip
    assert (mods["dosage"].type, mods["dosage"].unit) == ("numeric", "hours")
    col = mods["uptake"].column
    assert col is not None and (col.min, col.max, col.unit) == (0, 100, "percent")
    study_level = ("mean_age", "age_group", "health_condition", "region")
    assert {mods[m].level for m in study_level} == {"study"}
    # derived moderators
    assert [m.name for m in cb.derived()] == ["region", "interactivity"]
    inter = mods["interactivity"]
    assert [inter.derive(p) for p in ("app", "social_networking_site", "video_conferencing",
                                      "forum", "website", "email", "other")] == \
        ["high"] * 3 + ["low"] * 3 + [None]  # fmt: skip
    region = mods["region"]
    assert (region.derive("NO"), region.derive("JP"), region.derive("BR")) == (
        "Western", "Eastern", None)  # fmt: skip


def test_peer_support_analysis_plan_declares_each_view_per_domain() -> None:
    cb = load_codebook(PEER_CODEBOOK)
    names = [v.name for v in cb.views]
    families = ("overall", "source", "design", "follow-up", "dosage", "uptake", "interactivity",
                "age", "age-group", "health-condition", "region")  # fmt: skip
    assert names == [f"{d}-{f}" for f in families for d in ("physical", "mental")]
    views = {v.name: v for v in cb.views}
    assert views["mental-overall"].select == 'domain == "mental"'
    assert views["physical-source"].subgroup == "source"
    assert views["mental-dosage"].mods == ("dosage",)
    assert views["physical-follow-up"].subgroup == "timepoint"
    assert views["mental-region"].model["structure"] == "CHE"


def test_bcg_codebook_codes_the_2x2_trials() -> None:
    cb = load_codebook(BCG_CODEBOOK)
    assert cb.analysis.measure == "RR"
    assert set(cb.columns("results")) >= {"event1i", "n1i", "event2i", "n2i"}
    assert cb.moderators["alloc"].levels == ("random", "alternate", "systematic")
    assert [v.name for v in cb.views] == ["overall", "latitude", "allocation"]


def test_codebook_hash_ignores_key_order() -> None:
    a = parse_codebook(PEER_RAW)
    b = parse_codebook(dict(reversed(list(copy.deepcopy(PEER_RAW).items()))))
    assert a.sha256 == b.sha256
    assert a.sha256 != parse_codebook(_peer(analysis__default_ri=0.7)).sha256


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown top-level key": (_peer(analyses={}), "analyses", "unknown key"),
    "missing format": (_peer(format=_DELETE), "format", "required key is missing"),
    "wrong format version": (_peer(format="evidence-codebook/9"), "format", "one of"),
    "unknown column type": (
        _peer(sheets__results__columns__sd1i={"type": "float"}),
        "sheets.results.columns.sd1i.type", "one of text, integer"),
    "type that does not fit the column": (
        _peer(sheets__results__columns__sd1i={"type": "text"}),
        "sheets.results.columns.sd1i.type", "this column holds numeric"),
    "column that is not in the data model": (
        _peer(sheets__results__columns__effect={"type": "numeric"}),
        "sheets.results.columns.effect", "declare it under moderators"),
    "natural key not required": (
        _peer(sheets__arms__columns__arm_key={"type": "text"}),
        "sheets.arms.columns.arm_key.required", "must be required"),
    "required sheet missing": (_peer(sheets__timepoints=_DELETE), "sheets.timepoints",
                               "required sheet"),
    "unsupported measure": (_peer(analysis__measure="MD"), "analysis.measure", "one of SMD"),
    "default r out of range": (_peer(analysis__default_ri=1.5), "analysis.default_ri",
                               "must be < 1"),
    "rho as text": (_peer(analysis__model={"rho": "high"}), "analysis.model.rho", "a number"),
    "unknown rule": (_peer(rules=["sd_positive"]), "rules[0]", "one of events_within_n"),
    "categorical moderator without levels": (
        _peer(moderators__source={"level": "arm", "type": "categorical"}),
        "moderators.source.levels", "needs levels"),
    "moderator at an unknown level": (
        _peer(moderators__dosage={"level": "outcome", "type": "numeric"}),
        "moderators.dosage.level", "one of study, arm, effect"),
    "derived from an unknown column": (
        _peer(moderators__interactivity={**PEER_RAW["moderators"]["interactivity"],
                                         "derived_from": "device"}),
        "moderators.interactivity.derived_from", "must name a column"),
    "map names a level the source lacks": (
        _peer(moderators__interactivity={**PEER_RAW["moderators"]["interactivity"],
                                         "map": {"high": ["hologram"]}}),
        "moderators.interactivity.map", "not a level of platform"),
    "unquoted NO read as false": (
        _peer(moderators__region={**PEER_RAW["moderators"]["region"],
                                  "map": {"Western": ["SE", False]}}),
        "moderators.region.map.Western[1]", "must be a string or a number"),
    "view names an unknown field": (
        _peer(analysis_plan=[{"name": "x", "select": 'continent == "Asia"'}]),
        "analysis_plan[0].select", "unknown field"),
    "view subgroup unknown": (
        _peer(analysis_plan=[{"name": "x", "per": "domain", "subgroup": "gender"}]),
        "analysis_plan[0].subgroup", "unknown field"),
    "max |yi| of zero": (_peer(analysis__max_abs_yi=0), "analysis.max_abs_yi", "must be > 0"),
    "negative max |yi|": (_peer(analysis__max_abs_yi=-2), "analysis.max_abs_yi", "must be > 0"),
    "infinite max |yi|": (_peer(analysis__max_abs_yi=float("inf")), "analysis.max_abs_yi",
                          "must be a finite number"),
    "max |yi| as text": (_peer(analysis__max_abs_yi="many"), "analysis.max_abs_yi",
                         "must be a number"),
}  # fmt: skip


def test_max_abs_yi_is_read_and_defaults_to_the_measure_bound() -> None:
    assert load_codebook(PEER_CODEBOOK).analysis.max_abs_yi is None
    assert parse_codebook(_peer(analysis__max_abs_yi=15)).analysis.max_abs_yi == 15.0


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_codebook_is_an_error_naming_the_key(name: str) -> None:
    raw, key, rule = BAD[name]
    with pytest.raises(ValidationError) as info:
        parse_codebook(raw, "bad.yaml")
    assert any(f["column"] == key and rule in f["rule"] for f in info.value.failures), (
        info.value.failures
    )
    assert str(info.value).startswith("codebook bad.yaml: key ")


def test_codebook_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("format: evidence-codebook/1\nreview: {name: x\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"is not valid YAML at line \d"):
        load_codebook(path)


def test_missing_codebook_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        load_codebook(tmp_path / "nope.yaml")
    with pytest.raises(NotFoundError, match="no codebook for review 'nope'"):
        find_codebook("nope")
    assert find_codebook("bcg") == BCG_CODEBOOK


def test_cli_codebook_check_accepts_good_and_names_the_bad_key(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["codebook", "check", str(PEER_CODEBOOK)])
    assert ok.exit_code == 0 and "is valid" in ok.output and "22 views" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_peer(analysis__measure="Hedges")), encoding="utf-8")
    result = runner.invoke(app, ["codebook", "check", str(bad)])
    assert result.exit_code == 2
    assert "analysis.measure" in result.output and "Hedges" in result.output
