"""The living report (one self-contained HTML file) and the quickstart that builds it."""

from evidence.report.build import ReportResult, build_report, read_report_data
from evidence.report.quickstart import Quickstart, quickstart

__all__ = ["Quickstart", "ReportResult", "build_report", "quickstart", "read_report_data"]
