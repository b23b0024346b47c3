"""Where the Metapsy releases are read from in tests (never copied into the repository).

``EVIDENCE_METAPSY_DIR`` when set, else ``shared/data/metapsy`` beside the repository (as the
workplace lays it out, for sessions and CI alike). Tests that need the files skip with the
path in their reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get("EVIDENCE_METAPSY_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "metapsy"
)
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"Metapsy releases not found at {DATA} (set EVIDENCE_METAPSY_DIR)"
)
