"""Mutual-information estimators used to weight activation maps: objects in one registry by name."""

from micam.estimators import builtin as builtin  # registers "binned", "normalized", "reference", "ksg", "hsic"...
from micam.estimators.fused import fused_available, upsampled_mutual_information
from micam.estimators.hsic import HSICEstimator, NormalizedHSICEstimator, hsic_dependence
from micam.estimators.ksg import KSGEstimator, SubsampleError, ksg_mutual_information, ksg_subsample_error
from micam.estimators.plugin import dense_ranks, equal_width_bin_codes, mutual_information
from micam.estimators.registry import (
    DEFAULT_BINS,
    ESTIMATORS,
    Estimator,
    get_estimator,
    register_estimator,
)
from micam.estimators.subsample import DEFAULT_SAMPLES, subsample_indices

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_SAMPLES",
    "ESTIMATORS",
    "Estimator",
    "HSICEstimator",
    "KSGEstimator",
    "NormalizedHSICEstimator",
    "SubsampleError",
    "dense_ranks",
    "equal_width_bin_codes",
    "fused_available",
    "get_estimator",
    "hsic_dependence",
    "ksg_mutual_information",
    "ksg_subsample_error",
    "mutual_information",
    "register_estimator",
    "subsample_indices",
    "upsampled_mutual_information",
]
