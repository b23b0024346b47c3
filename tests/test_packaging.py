"""A normal install (``pip install .``, a wheel) carries what the commands read at run time.

The migrations, codebooks and seeds live at the top of the repository (the project card fixes
the layout); ``pyproject.toml`` ships them as ``data-files`` under ``<prefix>/share/evidence``,
where :func:`evidence.config.project_root` finds them when the package is not a source tree.
"""

from __future__ import annotations

import fnmatch
import sys
import tomllib
from pathlib import Path

from evidence.config import project_root

ROOT = project_root()


def _shipped() -> dict[str, list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"]["data-files"]


def test_every_migration_codebook_and_seed_file_is_shipped_with_a_normal_install() -> None:
    patterns = [(target, p) for target, globs in _shipped().items() for p in globs]
    files = [
        p.relative_to(ROOT).as_posix()
        for d in ("migrations", "schemas", "seeds")
        for p in (ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    files.append("alembic.ini")
    missing = []
    for f in files:
        hits = [t for t, p in patterns if fnmatch.fnmatch(f, p) and "/" not in f[len(p) - 1 :]
                or f == p]  # fmt: skip
        if not hits:
            missing.append(f)
        # each file lands under share/evidence at its own relative place
        for target in hits:
            assert target == "/".join(["share/evidence", *f.split("/")[:-1]]), (f, target)
    assert not missing, f"not shipped by pip install .: {missing}"


def test_an_installed_layout_is_found_under_the_prefix(tmp_path: Path, monkeypatch) -> None:
    import evidence.config as config

    share = tmp_path / "share" / "evidence"
    (share / "migrations").mkdir(parents=True)
    monkeypatch.setattr(config, "__file__", str(tmp_path / "site-packages" / "evidence" / "x.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(config.sysconfig, "get_path", lambda name: str(tmp_path / "nowhere"))
    assert config.project_root() == share
