"""Living analysis views: stored selections whose pooled estimates follow every change.

The public names load their module on first use (PEP 562), so a command that needs only
stored results (``evidence diff``) does not import the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each public name lives.
_MODULES = {
    "field_types": "dataset",
    "read_dataset": "dataset",
    "BiasTests": "diagnostics",
    "bias_tests": "diagnostics",
    "view_sensitivity": "diagnostics",
    "ViewFit": "fit",
    "fit_view": "fit",
    "fit_views": "fit",
    "ViewHistory": "history",
    "diff_revisions": "history",
    "recompute_as_of": "history",
    "view_history": "history",
    "RefreshReport": "refresh",
    "refresh_affected": "refresh",
    "refresh_all": "refresh",
    "refresh_views": "refresh",
    "stale_views": "refresh",
    "FieldType": "selection",
    "Selection": "selection",
    "evaluate": "selection",
    "parse_selection": "selection",
    "to_sql": "selection",
    "MODELS": "spec",
    "ViewSpec": "spec",
    "ViewStatus": "store",
    "create_plan_views": "store",
    "create_view": "store",
    "drop_view": "store",
    "list_views": "store",
    "results_table": "store",
    "show_view": "store",
}

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


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
