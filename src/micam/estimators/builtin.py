"""The built-in estimators: "binned", "normalized" and "reference" (see ``micam.estimators.plugin``),
and the value-based "ksg", "hsic" and "hsic-normalized" (``micam.estimators.ksg`` and ``.hsic``).

A new estimator is one ``Estimator`` subclass (``micam.estimators.registry``) and one line in
``BUILTIN`` below (or one ``register_estimator`` call from any module).
"""

from __future__ import annotations

from typing import ClassVar, cast

from torch import Tensor

from micam.estimators.fused import GPU_BINS, fused_binned, fused_reference, gpu_binned
from micam.estimators.hsic import HSICEstimator, NormalizedHSICEstimator
from micam.estimators.ksg import KSGEstimator
from micam.estimators.plugin import _bin_index, _binned_mi, _reference_mi, _sum_count_log_count, dense_ranks
from micam.estimators.registry import Estimator, register_estimator


class BinnedEstimator(Estimator):
    """Joint histogram of ``bins`` equal-width bins over each vector's [min, max]."""

    name = "binned"
    normalized: ClassVar[bool] = False

    def codes(self, x: Tensor, bins: int) -> Tensor:
        return _bin_index(x, bins)

    def from_codes(self, codes_a: Tensor, codes_b: Tensor, statistics_b: Tensor | None, bins: int) -> Tensor:
        return _binned_mi(codes_a, codes_b, bins, normalized=self.normalized)

    def fused_blocker(self, mode: str) -> str | None:
        return None

    def fused(self, activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int) -> Tensor:
        return fused_binned(activations, gray, size, mode, bins, normalized=self.normalized)

    def gpu_blocker(self, mode: str, bins: int) -> str | None:
        return None if bins in GPU_BINS else f"the GPU kernel takes {', '.join(map(str, GPU_BINS))} bins, not {bins}"

    def gpu_fused(self, activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int) -> Tensor:
        return gpu_binned(activations, gray, size, mode, bins, normalized=self.normalized)


class NormalizedEstimator(BinnedEstimator):
    """Binned MI over the arithmetic mean of the two binned entropies (scikit-learn's default NMI)."""

    name = "normalized"
    normalized = True


class ReferenceEstimator(Estimator):
    """Contingency table over distinct values: ``sklearn.metrics.mutual_info_score``; takes no bins."""

    name = "reference"
    uses_bins = False

    def codes(self, x: Tensor, bins: int) -> Tensor:
        return dense_ranks(x)

    def shared_statistics(self, codes: Tensor) -> Tensor | None:
        return _sum_count_log_count(codes)

    def from_codes(self, codes_a: Tensor, codes_b: Tensor, statistics_b: Tensor | None, bins: int) -> Tensor:
        # shared_statistics above always gives the tensor.
        return _reference_mi(codes_a, codes_b, cast(Tensor, statistics_b))

    def fused_blocker(self, mode: str) -> str | None:
        return None if mode == "nearest" else "the distinct-value estimator is fused only for nearest upsampling"

    def fused(self, activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int) -> Tensor:
        return fused_reference(activations, gray, size)


BUILTIN: tuple[Estimator, ...] = (
    BinnedEstimator(),
    NormalizedEstimator(),
    ReferenceEstimator(),
    KSGEstimator(),
    HSICEstimator(),
    NormalizedHSICEstimator(),
)
for _estimator in BUILTIN:
    register_estimator(_estimator)
