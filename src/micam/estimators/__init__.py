"""Mutual-information estimators used to weight activation maps: objects in one registry by name."""

from micam.estimators import builtin as builtin  # registers "binned", "normalized", "reference"
from micam.estimators.fused import fused_available, upsampled_mutual_information
from micam.estimators.plugin import dense_ranks, equal_width_bin_codes, mutual_information
from micam.estimators.registry import (
    DEFAULT_BINS,
    ESTIMATORS,
    Estimator,
    get_estimator,
    register_estimator,
)

__all__ = [
    "DEFAULT_BINS",
    "ESTIMATORS",
    "Estimator",
    "dense_ranks",
    "equal_width_bin_codes",
    "fused_available",
    "get_estimator",
    "mutual_information",
    "register_estimator",
    "upsampled_mutual_information",
]
