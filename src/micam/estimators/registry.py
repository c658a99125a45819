"""The estimator interface and the registry of estimators by name.

An estimator is an object with a ``name``, a ``check(bins)`` and the computation, of one of two kinds:

* code-based (the default): ``codes`` turns each row of samples into integer codes (a bin, a rank),
  ``from_codes`` gives the MI of paired code rows, and optionally ``fused`` computes the MI of every
  upsampled activation map with a gray image in one pass (``micam.estimators.fused``);
* value-based (``value_based = True``: nearest-neighbour and kernel estimators, which have no codes):
  ``from_values`` takes the paired float rows themselves. They have no fused kernel, so MI-CAM
  upsamples a bounded chunk of maps at a time and hands the rows to ``from_values``.
 ``get_estimator(name, bins)`` is the one place names and bins are checked;
``mutual_information``, ``upsampled_mutual_information`` and ``MICAM`` all go through it.

Adding an estimator is one subclass and one ``register_estimator(MyEstimator())``; the built-in ones
live in ``micam.estimators.builtin``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

DEFAULT_BINS = 32
MIN_BINS, MAX_BINS = 2, 1024


class Estimator:
    """Base class of a plug-in MI estimator (see the module docstring)."""

    name: ClassVar[str]
    uses_bins: ClassVar[bool] = True  # False: ``bins`` is ignored (and not checked)
    value_based: ClassVar[bool] = False  # True: ``from_values`` computes from the float rows (no codes)

    def check(self, bins: object) -> None:
        """Raise a ValueError when this estimator cannot use ``bins``."""
        if not self.uses_bins:
            return
        if isinstance(bins, bool) or not isinstance(bins, int) or not MIN_BINS <= bins <= MAX_BINS:
            raise ValueError(f"bins must be an integer from {MIN_BINS} to {MAX_BINS}, got {bins!r}")

    def codes(self, x: Tensor, bins: int) -> Tensor:
        """(R, N) samples -> (R, N) integer codes (whole numbers of any dtype), row by row."""
        raise NotImplementedError

    def shared_statistics(self, codes: Tensor) -> Tensor | None:
        """(R,) statistics of the code rows of ``b`` that ``from_codes`` reuses; computed once per row
        of ``b``, however many rows of ``a`` it is paired with. None when the estimator needs none."""
        return None

    def from_codes(self, codes_a: Tensor, codes_b: Tensor, statistics_b: Tensor | None, bins: int) -> Tensor:
        """(R,) float64 MI in nats of each pair of (R, N) code rows."""
        raise NotImplementedError

    def from_values(self, a_rows: Tensor, b_rows: Tensor) -> Tensor:
        """(R,) float64 estimate for each pair of (R, N) rows of finite values (any real dtype), on their
        device; what ``mutual_information`` calls instead of ``codes``/``from_codes`` where ``value_based``.
        The rows come a bounded chunk at a time, so an estimator sees them whole but never a whole layer."""
        raise NotImplementedError(f"the {self.name!r} estimator computes from codes, not values")

    def fused_blocker(self, mode: str) -> str | None:
        """Why ``fused`` cannot compute this estimator after ``mode`` upsampling; None when it can."""
        return f"the {self.name!r} estimator has no fused kernel"

    def fused(self, activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int) -> Tensor:
        """(B, K) float64 MI of each (B, K, h, w) float32 CPU map upsampled to ``size`` with the (B, H, W)
        gray image, by the fused kernels; called only where ``fused_blocker(mode)`` is None."""
        raise NotImplementedError(f"the {self.name!r} estimator has no fused kernel")

    def gpu_blocker(self, mode: str, bins: int) -> str | None:
        """Why ``gpu_fused`` cannot compute this estimator after ``mode`` upsampling; None when it can."""
        return f"the {self.name!r} estimator has no GPU kernel"

    def gpu_fused(self, activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int) -> Tensor:
        """(B, K) float64 MI of each (B, K, h, w) float32 map upsampled to ``size`` with the (B, H, W) gray
        image, by the Triton kernel; called only where ``gpu_blocker(mode, bins)`` is None."""
        raise NotImplementedError(f"the {self.name!r} estimator has no GPU kernel")

    def __repr__(self) -> str:
        return f"<estimator {self.name!r}>"


# name -> estimator; iterate it for the names.
ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(estimator: Estimator, *, replace: bool = False) -> Estimator:
    """Make ``estimator`` available by its name everywhere an estimator name is taken."""
    name = getattr(estimator, "name", None)
    if not isinstance(estimator, Estimator) or not isinstance(name, str) or not name:
        raise TypeError(f"register an Estimator instance with a non-empty name, got {estimator!r}")
    if name in ESTIMATORS and not replace:
        raise ValueError(f"an estimator named {name!r} is already registered; pass replace=True to replace it")
    ESTIMATORS[name] = estimator
    return estimator


def get_estimator(name: object, bins: object = DEFAULT_BINS) -> Estimator:
    """The estimator registered as ``name``, after checking that it can use ``bins``."""
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    estimator = ESTIMATORS[name]
    estimator.check(bins)
    return estimator
