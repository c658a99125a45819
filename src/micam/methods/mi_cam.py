"""MI-CAM (Iyer et al., 2025, Def. 4-5 and Algorithm 1): channels weighted by mutual information.

For each channel k of the target layer: Up(A_k), the map upsampled to the input size, and Gr(X),
the grayscale input, give alpha_k = I(Up(A_k); Gr(X)) (``micam.mutual_information``, in nats);
the map is ReLU(sum_k alpha_k Up(A_k)), optionally Gaussian-blurred before the ReLU, then scaled to
[0, 1]. Upsampling is linear, so sum_k alpha_k Up(A_k) = Up(sum_k alpha_k A_k): the weighted sum is
formed at feature resolution and upsampled once (same values, K times less work).
Class-agnostic: no gradients, no targets; the forward pass stops after the target layer, so a
headless encoder works as well as a classifier.

1-D signals (B, C, L) and 3-D volumes (B, C, D, H, W) work the same way: the MI is taken over all
L or D*H*W positions, "bilinear" upsampling is linear or trilinear, the gray signal is the luma of
3 channels or the mean of any other number, and a blur is the same separable Gaussian along every
axis. Their MI always takes the straightforward torch route (the fused CPU kernels are 2-D only).

Choices the paper leaves open, with their defaults (``preset="authors"`` reproduces the authors'
public code: raw 0-255 RGB input, nearest upsampling, their luma, the distinct-value estimator, an
11x11 sigma-7 blur, and a real ReLU where their code has ``np.max(cam, 0)``):

==================  ======================================  ==============================
parameter           default                                 authors
==================  ======================================  ==============================
upsample_mode       "bilinear" (half-pixel centres)         "nearest" (block replication)
estimator, bins     "binned", 32 bins                       "reference" (sklearn's MI)
pixel_mean/std      None: gray of the tensor as given;      None (their tensor is raw 0-255
                    set them to gray the restored photo     pixels)
luma                0.299 / 0.587 / 0.114 (BT.601)          0.2989 / 0.5870 / 0.1140
normalize_maps      False: raw activations are summed       False
blur                None                                    (11, 7.0): kernel size, sigma
==================  ======================================  ==============================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from micam.estimators import DEFAULT_BINS, ESTIMATORS, upsampled_mutual_information
from micam.imaging import BT601_LUMA, gaussian_blur, grayscale
from micam.methods.base import BaseCAM, LayerContext, min_max_per_map, upsample, weighted_sum

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "upsample_mode": "bilinear",
        "estimator": "binned",
        "bins": DEFAULT_BINS,
        "luma": BT601_LUMA,
        "normalize_maps": False,
        "blur": None,
    },
    "authors": {
        "upsample_mode": "nearest",
        "estimator": "reference",
        "bins": DEFAULT_BINS,
        "luma": (0.2989, 0.5870, 0.1140),
        "normalize_maps": False,
        "blur": (11, 7.0),
    },
}
UPSAMPLE_MODES = ("bilinear", "nearest")


class MICAM(BaseCAM):
    """Channel weight = I(Up(A_k); Gr(X)), the MI between the upsampled map and the gray input."""

    class_agnostic = True

    def __init__(  # type: ignore[no-untyped-def]
        self,
        model,
        target_layers=None,
        *,
        preset: str = "default",
        upsample_mode: str | None = None,
        estimator: str | None = None,
        bins: int | None = None,
        luma: Sequence[float] | None = None,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
        normalize_maps: bool | None = None,
        blur: tuple[int, float] | bool | None = None,
        **kwargs,
    ) -> None:
        """Arguments left as None take the preset's value; ``blur=False`` disables a preset's blur."""
        super().__init__(model, target_layers, **kwargs)
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        chosen = dict(PRESETS[preset])
        given = {
            "upsample_mode": upsample_mode,
            "estimator": estimator,
            "bins": bins,
            "luma": luma,
            "normalize_maps": normalize_maps,
            "blur": blur,
        }
        chosen.update({key: value for key, value in given.items() if value is not None})
        if chosen["blur"] is False:
            chosen["blur"] = None
        if chosen["upsample_mode"] not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {chosen['upsample_mode']!r}")
        if chosen["estimator"] not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {chosen['estimator']!r}")
        if (pixel_mean is None) != (pixel_std is None):
            raise ValueError("pass both pixel_mean and pixel_std (the input's normalization) or neither")
        self.preset = preset
        self.upsample_mode: str = chosen["upsample_mode"]
        self.estimator: str = chosen["estimator"]
        self.bins: int = chosen["bins"]
        self.luma = tuple(chosen["luma"])
        self.normalize_maps: bool = chosen["normalize_maps"]
        self.blur: tuple[int, float] | None = chosen["blur"]
        self.pixel_mean, self.pixel_std = pixel_mean, pixel_std

    @property
    def settings(self) -> dict[str, Any]:
        """Every choice that determines the map, for recording next to results."""
        return {
            "preset": self.preset,
            "upsample_mode": self.upsample_mode,
            "estimator": self.estimator,
            "bins": self.bins if self.estimator != "reference" else None,
            "luma": list(self.luma),
            "gray_of": "restored pixels" if self.pixel_mean is not None else "input tensor",
            "pixel_mean": None if self.pixel_mean is None else list(self.pixel_mean),
            "pixel_std": None if self.pixel_std is None else list(self.pixel_std),
            "normalize_maps": self.normalize_maps,
            "blur": None if self.blur is None else list(self.blur),
            "target_layers": self.target_layer_names,
        }

    def channel_weights(self, context: LayerContext) -> Tensor:
        """MI of every upsampled map with the gray input, without materializing the upsampled layer:
        fused kernels on CPU where they are exact (images), else a bounded chunk of maps at a time."""
        inputs, activations = context.inputs, context.activations
        gray = grayscale(inputs, self.luma, self.pixel_mean, self.pixel_std)
        return upsampled_mutual_information(activations, gray, self.upsample_mode, self.estimator, self.bins)

    def layer_map(self, context: LayerContext, weights: Tensor, size: tuple[int, ...]) -> Tensor:
        activations = context.activations
        if self.normalize_maps:
            activations = min_max_per_map(activations, activations.dim() - 2)
        weighted = weighted_sum(weights, activations)
        cam = upsample(weighted[:, None], size, self.upsample_mode)[:, 0]
        if self.blur is not None:
            cam = gaussian_blur(cam, int(self.blur[0]), float(self.blur[1]))
        return cam.clamp(min=0)
