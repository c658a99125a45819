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
11x11 sigma-7 blur, and a real ReLU where their code has ``np.max(cam, 0)``; ``column_max=True``
emulates that line instead):

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
gray_uint8          False: a float gray image               True: 8-bit, as TensorFlow's
                                                            rgb_to_grayscale returns it on
                                                            their uint8 image
column_max          False: ReLU                             False (see below)
==================  ======================================  ==============================

``column_max=True`` is the last line of the authors' ``MI CAM.py``, ``np.max(cam, 0)``, taken
literally: no ReLU, and every pixel gets the largest value of its column (the (W,) vector numpy
broadcasts down the rows of an (H, W) image). Off in the authors' preset too: their metric scripts
threshold and multiply a map with the (224, 224, 3) image, which a (224,) vector cannot broadcast
against, so the maps they scored cannot have been that line's output. It is a switch so its effect can
be measured.

The distinct-value ``"reference"`` estimator counts values that differ by one ulp as distinct, and
bilinear upsampling rounds differently from one implementation to the next (CPU or GPU, torch build,
fused kernel): its weights then move by up to about 0.07 nats. MI-CAM says so once per process, with a
``UserWarning`` (a choice of settings, not a fault of the data), the first time it computes weights
with that pair; nearest upsampling (the authors' choice) and the binned estimators are unaffected.

The chosen values are a ``MICAMOptions`` (``cam.options``, checked in one place; ``cam.upsample_mode``
and the others read it), recorded by ``cam.settings``. ``estimator`` is any name registered in
``micam.estimators.ESTIMATORS``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn

from micam.capture.layers import LayerSpec
from micam.estimators import DEFAULT_BINS, get_estimator, upsampled_mutual_information
from micam.imaging import BT601_LUMA, UPSAMPLE_MODES, check_upsample_mode, gaussian_blur, grayscale
from micam.methods.base import (
    BaseCAM,
    LayerContext,
    MethodOptions,
    SharedSettings,
    min_max_per_map,
    option_attribute,
    upsample,
    weighted_sum,
)

__all__ = ["MICAM", "PRESETS", "UPSAMPLE_MODES", "MICAMOptions"]

REFERENCE_TIES_WARNING = (
    "MI-CAM with the distinct-value 'reference' estimator and bilinear upsampling: values 1 ulp apart count "
    "as distinct, and bilinear rounding differs between implementations (CPU/GPU, torch builds), which moves "
    "the weights by up to about 0.07 nats; use upsample_mode='nearest' (the authors' choice) or a binned "
    "estimator for weights that do not depend on it"
)
# Whether the warning above was given in this process (it is given once).
_warned: dict[str, bool] = {"reference_ties": False}

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "upsample_mode": "bilinear",
        "estimator": "binned",
        "bins": DEFAULT_BINS,
        "luma": BT601_LUMA,
        "normalize_maps": False,
        "blur": None,
        "gray_uint8": False,
        "column_max": False,
    },
    "authors": {
        "upsample_mode": "nearest",
        "estimator": "reference",
        "bins": DEFAULT_BINS,
        "luma": (0.2989, 0.5870, 0.1140),
        "normalize_maps": False,
        "blur": (11, 7.0),
        "gray_uint8": True,
        "column_max": False,
    },
}


@dataclass(frozen=True)
class MICAMOptions(MethodOptions):
    """Every choice that determines an MI-CAM map; the defaults are ``PRESETS["default"]``.

    ``from_preset`` fills the values a caller leaves as None from a preset. ``blur=False`` is stored as
    None (no blur); ``luma`` as a tuple.
    """

    preset: str = "default"
    upsample_mode: str = "bilinear"
    estimator: str = "binned"
    bins: int = DEFAULT_BINS
    luma: Sequence[float] = BT601_LUMA
    pixel_mean: Sequence[float] | None = None
    pixel_std: Sequence[float] | None = None
    normalize_maps: bool = False
    blur: tuple[int, float] | None = None
    gray_uint8: bool = False
    column_max: bool = False

    @classmethod
    def from_preset(cls, preset: str = "default", **given: Any) -> MICAMOptions:
        """The preset's values, overridden by the ``given`` ones that are not None."""
        chosen = dict(PRESETS.get(preset, {})) if isinstance(preset, str) else {}
        chosen.update({key: value for key, value in given.items() if value is not None})
        return cls(preset=preset, **chosen)

    def check(self) -> None:
        if not isinstance(self.preset, str) or self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        check_upsample_mode(self.upsample_mode)
        get_estimator(self.estimator, self.bins)
        if (self.pixel_mean is None) != (self.pixel_std is None):
            raise ValueError("pass both pixel_mean and pixel_std (the input's normalization) or neither")
        object.__setattr__(self, "luma", tuple(self.luma))
        if cast(object, self.blur) is False:  # the field's type leaves out the False a caller may pass
            object.__setattr__(self, "blur", None)

    def settings(self) -> dict[str, Any]:
        """The options as recorded next to results, with ``gray_of`` (what is grayscaled) after ``luma``
        and ``bins`` None for an estimator that takes none."""
        recorded: dict[str, Any] = {}
        for key, value in super().settings().items():
            if key == "pixel_mean":
                recorded["gray_of"] = "restored pixels" if value is not None else "input tensor"
            if key in ("pixel_mean", "pixel_std", "blur") and value is not None:
                value = list(value)
            recorded[key] = value
        if not get_estimator(self.estimator, self.bins).uses_bins:
            recorded["bins"] = None
        return recorded


class MICAM(BaseCAM):
    """Channel weight = I(Up(A_k); Gr(X)), the MI between the upsampled map and the gray input."""

    class_agnostic = True
    options: MICAMOptions
    # Each option reads (and sets) cam.options.
    preset = option_attribute("preset")
    upsample_mode = option_attribute("upsample_mode")
    estimator = option_attribute("estimator")
    bins = option_attribute("bins")
    luma = option_attribute("luma")
    pixel_mean = option_attribute("pixel_mean")
    pixel_std = option_attribute("pixel_std")
    normalize_maps = option_attribute("normalize_maps")
    blur = option_attribute("blur")
    gray_uint8 = option_attribute("gray_uint8")
    column_max = option_attribute("column_max")

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[LayerSpec] | LayerSpec | None = None,
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
        gray_uint8: bool | None = None,
        column_max: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Arguments left as None take the preset's value; ``blur=False`` disables a preset's blur.
        ``estimator`` is a name in ``micam.estimators.ESTIMATORS``."""
        super().__init__(model, target_layers, **kwargs)
        self.options = MICAMOptions.from_preset(
            preset,
            upsample_mode=upsample_mode,
            estimator=estimator,
            bins=bins,
            luma=luma,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            normalize_maps=normalize_maps,
            blur=blur,
            gray_uint8=gray_uint8,
            column_max=column_max,
        )

    @classmethod
    def options_from_settings(cls, settings: SharedSettings) -> dict[str, Any]:
        """The preset; the input's normalization except with the authors' preset (their code grays the
        tensor as it is)."""
        column_max = settings.mi_column_max or None  # None: the preset's
        if settings.mi_preset == "authors":
            return {"preset": "authors", "column_max": column_max}
        return {
            "preset": settings.mi_preset,
            "pixel_mean": settings.pixel_mean,
            "pixel_std": settings.pixel_std,
            "column_max": column_max,
        }

    @property
    def settings(self) -> dict[str, Any]:
        """Every choice that determines the map, for recording next to results."""
        return {**super().settings, "target_layers": self.target_layer_names}

    def channel_weights(self, context: LayerContext) -> Tensor:
        """MI of every upsampled map with the gray input, without materializing the upsampled layer:
        fused kernels on CPU where they are exact (images), else a bounded chunk of maps at a time."""
        activations = context.activations
        gray = self.gray_image(context.inputs)
        if self.estimator == "reference" and self.upsample_mode == "bilinear" and not _warned["reference_ties"]:
            _warned["reference_ties"] = True
            warnings.warn(REFERENCE_TIES_WARNING, UserWarning, stacklevel=2)
        return upsampled_mutual_information(activations, gray, self.upsample_mode, self.estimator, self.bins)

    def gray_image(self, inputs: Tensor) -> Tensor:
        """Gr(X): the (B, *spatial) gray image the maps' MI is taken with. With ``gray_uint8`` it is the
        8-bit gray TensorFlow's ``rgb_to_grayscale`` returns on a uint8 image: the 0-255 pixels (the
        tensor as given, or the restored photo x 255) scaled to [0, 1], weighted by ``luma`` in float32,
        then ``trunc(g * 255.5)`` clipped to 0-255 (``convert_image_dtype``'s rounding)."""
        if not self.gray_uint8:
            return grayscale(inputs, self.luma, self.pixel_mean, self.pixel_std)
        if self.pixel_mean is not None:
            unit = grayscale(inputs.float(), self.luma, self.pixel_mean, self.pixel_std)
        else:
            unit = grayscale(inputs.float() * (1.0 / 255.0), self.luma)
        return (unit * 255.5).clamp(0.0, 255.0).floor().to(inputs.dtype)

    def layer_map(self, context: LayerContext, weights: Tensor, size: tuple[int, ...]) -> Tensor:
        activations = context.activations
        if self.normalize_maps:
            activations = min_max_per_map(activations, activations.dim() - 2)
        weighted = weighted_sum(weights, activations)
        cam = upsample(weighted[:, None], size, self.upsample_mode)[:, 0]
        if self.blur is not None:
            cam = gaussian_blur(cam, int(self.blur[0]), float(self.blur[1]))
        if self.column_max:  # the authors' np.max(cam, 0), in place of the ReLU
            if cam.dim() != 3:
                raise ValueError(f"column_max needs 2-D maps (images), got maps of shape {tuple(cam.shape[1:])}")
            return cam.amax(dim=1, keepdim=True).expand_as(cam).contiguous()
        return cam.clamp(min=0)
