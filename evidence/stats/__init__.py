"""stats."""

from evidence.stats.bias import (
    FsnResult,
    PetPeeseResult,
    RanktestResult,
    RegtestMvResult,
    RegtestResult,
    TrimfillResult,
    fsn,
    pet_peese,
    ranktest,
    regtest,
    regtest_mv,
    trimfill,
)
from evidence.stats.che import CheResult, che, three_level
from evidence.stats.covariance import BlockCovariance, impute_covariance
from evidence.stats.influence import CaseTable, InfluenceResult, cumul, influence, leave1out
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
from evidence.stats.rma_mv import AnovaMv, MvPrediction, ProfileCI, RmaMvResult, anova_mv, rma_mv
from evidence.stats.robust import robust
from evidence.stats.sensitivity import SensitivityResult, sensitivity_suite
from evidence.stats.subgroup import SubgroupResult, subgroup
from evidence.stats.wald import WaldTest, wald_test

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
    "rma_mv",
    "RmaMvResult",
    "MvPrediction",
    "ProfileCI",
    "anova_mv",
    "AnovaMv",
    "robust",
    "wald_test",
    "WaldTest",
    "impute_covariance",
    "che",
    "three_level",
    "CheResult",
    "BlockCovariance",
    "regtest",
    "RegtestResult",
    "ranktest",
    "RanktestResult",
    "trimfill",
    "TrimfillResult",
    "fsn",
    "FsnResult",
    "pet_peese",
    "PetPeeseResult",
    "regtest_mv",
    "RegtestMvResult",
    "leave1out",
    "cumul",
    "CaseTable",
    "influence",
    "InfluenceResult",
    "sensitivity_suite",
    "SensitivityResult",
]
