"""stats."""

from evidence.stats.rma import (
    AnovaResult,
    ConfintResult,
    PredictResult,
    RMAResult,
    anova,
    confint,
    predict,
    rma,
)
from evidence.stats.subgroup import SubgroupResult, subgroup

__all__ = [
    "rma",
    "RMAResult",
    "predict",
    "PredictResult",
    "confint",
    "ConfintResult",
    "anova",
    "AnovaResult",
    "subgroup",
    "SubgroupResult",
]
