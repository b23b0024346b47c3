"""Living analysis views: stored selections whose pooled estimates follow every change."""

from evidence.views.dataset import field_types, read_dataset
from evidence.views.diagnostics import BiasTests, bias_tests, view_sensitivity
from evidence.views.fit import ViewFit, fit_view, fit_views
from evidence.views.history import ViewHistory, diff_revisions, recompute_as_of, view_history
from evidence.views.refresh import (
    RefreshReport,
    refresh_affected,
    refresh_all,
    refresh_views,
    stale_views,
)
from evidence.views.selection import FieldType, Selection, evaluate, parse_selection, to_sql
from evidence.views.spec import MODELS, ViewSpec
from evidence.views.store import (
    ViewStatus,
    create_plan_views,
    create_view,
    drop_view,
    list_views,
    results_table,
    show_view,
)

__all__ = [
    "MODELS",
    "BiasTests",
    "ViewFit",
    "bias_tests",
    "fit_view",
    "fit_views",
    "view_sensitivity",
    "FieldType",
    "RefreshReport",
    "Selection",
    "ViewHistory",
    "ViewSpec",
    "ViewStatus",
    "create_plan_views",
    "create_view",
    "diff_revisions",
    "drop_view",
    "evaluate",
    "field_types",
    "list_views",
    "parse_selection",
    "read_dataset",
    "recompute_as_of",
    "refresh_affected",
    "refresh_all",
    "refresh_views",
    "results_table",
    "show_view",
    "stale_views",
    "to_sql",
    "view_history",
]
