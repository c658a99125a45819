"""Mutual-information estimators used to weight activation maps."""

from micam.estimators.fused import fused_available, upsampled_mutual_information
from micam.estimators.plugin import (
    DEFAULT_BINS,
    ESTIMATORS,
    Estimator,
    dense_ranks,
    equal_width_bin_codes,
    mutual_information,
)

__all__ = [
    "DEFAULT_BINS",
    "ESTIMATORS",
    "Estimator",
    "dense_ranks",
    "equal_width_bin_codes",
    "fused_available",
    "mutual_information",
    "upsampled_mutual_information",
]
