"""Mutual-information estimators used to weight activation maps."""

from micam.estimators.plugin import (
    DEFAULT_BINS,
    ESTIMATORS,
    Estimator,
    dense_ranks,
    equal_width_bin_codes,
    mutual_information,
)

__all__ = ["DEFAULT_BINS", "ESTIMATORS", "Estimator", "dense_ranks", "equal_width_bin_codes", "mutual_information"]
