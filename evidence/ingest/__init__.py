"""Coding sheets into the store: codebooks, readers, validation and the all-or-nothing loader."""

from evidence.ingest.codebook import Codebook, load_codebook, parse_codebook
from evidence.ingest.loader import IngestReport, apply_codebook, ingest, prepare
from evidence.ingest.quickstart import QuickstartResult, review_summary

__all__ = [
    "Codebook",
    "IngestReport",
    "QuickstartResult",
    "apply_codebook",
    "ingest",
    "load_codebook",
    "parse_codebook",
    "prepare",
    "review_summary",
]
