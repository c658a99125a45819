"""Every parameter of an evaluation run, their checks, and which of them a resumed run may change."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from micam.engines import ENGINES
from micam.evaluation.references import REFERENCES
from micam.images import BACKGROUNDS, DEFAULT_MAX_PIXELS
from micam.methods import CONTROLS, METHODS
from micam.metrics import TRACKERS
from micam.metrics.confidence import INCREASE_BASELINES
from micam.metrics.deletion_insertion import AUC_X, PIXEL_INDEXING, REMOVED_PIXELS

# The trackers' groups (micam.metrics.TRACKERS), then the analyses the runner makes itself.
METRIC_GROUPS = (*(tracker.group for tracker in TRACKERS), "counterfactual", "sanity")
# Every group runs by default, ROAD included (18 sparse solves per image and map: about 1.6 s per
# 224 x 224 image and map on a 2-core CPU, docs/benchmark.md); --metrics picks fewer.
DEFAULT_METRIC_GROUPS = METRIC_GROUPS
ALL_METHODS = (*METHODS, *CONTROLS, *REFERENCES)
# Settings that may differ between a run and its resumption (they do not change any number); the data
# is compared by content (data_fingerprint), not by the path it was given under.
RESUMABLE_KEYS = frozenset(
    {
        "limit",
        "out",
        "resume",
        "device",
        "batch_size",
        "forward_batch_size",
        "score_cam_batch_size",
        "data",
        "loader_workers",
        "max_pixels",  # changes only which images are skipped, and skipped images are listed
        "engine",  # where shards run: the same rows from every engine
        "address",
        "workers",
    }
)


@dataclass
class EvaluationSettings:
    """Every parameter of a run; all of them are written next to the results."""

    data: str
    model: str = "mobilenet_v2"
    weights: str = "imagenet"
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRIC_GROUPS))
    limit: int | None = None
    out: str = "micam-eval"
    device: str = "auto"
    resume: bool = False
    batch_size: int = 16
    forward_batch_size: int | None = None  # None: 64 on CPU, 1024 on CUDA
    score_cam_batch_size: int | None = None  # None: 32 on CPU, 1024 on CUDA
    target: str = "predicted"  # or "label"
    geometry: Literal["auto", "stretch", "crop"] = "auto"  # "stretch", "crop" or the dataset's recommendation
    score: Literal["probability", "logit"] = "probability"
    threshold: float = 0.5
    steps: int = 100
    # "black" (pixels set to 0 before normalization), "zero" (tensor 0), "mean", "blur"
    baseline: Literal["black", "zero", "mean", "blur"] = "black"
    insertion_order: Literal["standard", "paper"] = "standard"
    tolerance: float = 15.0
    mi_preset: str = "default"
    mi_column_max: bool = False  # MI-CAM: the authors' literal np.max(cam, 0) in place of the ReLU
    counterfactual_images: int | None = None  # None: 50 on CUDA, 10 on CPU
    sanity_images: int | None = None  # None: 4 on CUDA, 1 on CPU (Score-CAM x 20 stages is slow on a CPU)
    seed: int = 0
    output_selector: str | int | None = None  # picks the class scores from a tuple/dict model output
    # A bring-your-own model's options (``micam.models.load``'s keywords; None = the model's own).
    num_classes: int | None = None
    labels: str | None = None
    input_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    layer: str | None = None
    trust_checkpoint: bool | None = None
    loader_workers: int | None = None  # processes decoding images (None: 2, or 0 where there is one core)
    engine: str = "local"  # where shards of images run: "local" (this process) or "ray" (micam.engines)
    address: str | None = None  # ray: None starts a local runtime, "auto" / "ray://HOST:PORT" joins a cluster
    workers: int | None = None  # ray: actors (None: one per GPU, else one per CPU core)
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are skipped (decompression bombs); 0: no limit
    background: str = "white"  # what transparent pixels are composited on ("white" or "black")
    auc_x: str = "changed"  # deletion/insertion AUC over the fraction of pixels changed ("even": k / steps)
    # The protocol (``PROTOCOLS``): "stated" follows the paper's stated definitions, "authors" emulates
    # the authors' published scripts. It labels the preset the switches came from: the CLI's --protocol
    # fills every switch not given; from Python, EvaluationSettings(data, protocol="authors",
    # **PROTOCOLS["authors"]) sets them all, and any switch can also be set on its own.
    protocol: str = "stated"
    input_scale: str = "normalized"  # "raw": the model sees 0-255 pixels without normalization
    pixel_indexing: str = "pixels"  # deletion / insertion: whole pixels, or the authors' flat indexing
    increase_baseline: str = "empty"  # AI's B: the empty image, or the authors' (map == 0 pixels kept)

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_METHODS)} or 'all'")
        unknown = [m for m in self.metrics if m not in METRIC_GROUPS]
        if unknown or not self.metrics:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_GROUPS)} or 'all'")
        choices = {
            "target": ("predicted", "label"),
            "geometry": ("auto", "stretch", "crop"),
            "score": ("probability", "logit"),
            "baseline": REMOVED_PIXELS,
            "insertion_order": ("standard", "paper"),
            "background": tuple(BACKGROUNDS),
            "auc_x": AUC_X,
            "protocol": tuple(PROTOCOLS),
            "input_scale": INPUT_SCALES,
            "pixel_indexing": PIXEL_INDEXING,
            "increase_baseline": INCREASE_BASELINES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be positive")
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold must be a number in [0, 1] (maps are scaled to [0, 1]), got {self.threshold}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number of pixels, 0 or more, got {self.tolerance}")
        for key in ("counterfactual_images", "sanity_images", "forward_batch_size", "score_cam_batch_size"):
            value = getattr(self, key)
            if value is not None and (value < 0 or (value == 0 and key.endswith("batch_size"))):
                raise ValueError(
                    f"{key} must be {'positive' if key.endswith('batch_size') else '0 or more'}, got {value}"
                )
        if self.max_pixels < 0:
            raise ValueError(f"max_pixels must be 0 (no limit) or more, got {self.max_pixels}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {tuple(ENGINES)}, got {self.engine!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ValueError(f"loader_workers must be 0 or more, got {self.loader_workers}")


INPUT_SCALES = ("normalized", "raw")
# Each protocol's switches. "authors" emulates the published scripts step by step (ramsiyer1/MI-CAM):
# * input_scale "raw": ``model.predict(img_to_array(img))``, 0-255 RGB into the network, with
#   ``preprocess_input`` imported and never applied (every script; black is then 0);
# * pixel_indexing "authors" and auc_x "even": ``Deletion Curve.py`` ranks the 224 x 224 map and uses
#   the ranks as indices into the flattened 224 x 224 x 3 image, then ``np.trapz`` over ``linspace``;
# * increase_baseline "authors": ``Drop_Increase.py``'s ``baseline_image = np.where(cam_mask > 0, 0,
#   image)`` (B keeps only the pixels where the normalized map is 0);
# * mi_preset "authors": ``MI CAM.py``: nearest upsampling, sklearn's ``mutual_info_score`` on the
#   8-bit gray ``tf.image.rgb_to_grayscale`` returns, weighted sum, 11 x 11 sigma-7 blur;
# * tolerance 0: their pointing game has none; geometry "stretch": ``load_img(target_size=(224, 224))``;
# * mi_column_max stays False: ``MI CAM.py`` ends in ``np.max(cam, 0)`` (each column's maximum, no
#   ReLU), but their metric scripts use the map against the (224, 224, 3) image, which that (224,)
#   vector cannot broadcast against: the maps they scored were 2-D. --mi-column-max measures the line.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "stated": {
        "input_scale": "normalized",
        "pixel_indexing": "pixels",
        "increase_baseline": "empty",
        "auc_x": "changed",
        "mi_preset": "default",
        "mi_column_max": False,
        "tolerance": 15.0,
        "geometry": "auto",
    },
    "authors": {
        "input_scale": "raw",
        "pixel_indexing": "authors",
        "increase_baseline": "authors",
        "auc_x": "even",
        "mi_preset": "authors",
        "mi_column_max": False,
        "tolerance": 0.0,
        "geometry": "stretch",
    },
}

# What a run started before a setting existed did, where that differs from the setting's default.
EARLIER_BEHAVIOUR = {"auc_x": "even"}


def reproducing(saved: dict[str, Any]) -> dict[str, Any]:
    """``EvaluationSettings`` keywords that redo a saved run: its own values, and for settings added
    since, what the run did (``EARLIER_BEHAVIOUR``) rather than today's default."""
    names = {f.name for f in fields(EvaluationSettings)}
    return {key: value for key, value in (EARLIER_BEHAVIOUR | saved).items() if key in names}


def earlier_flags(settings: dict[str, Any]) -> list[str]:
    """The flags that make a fresh run compute what a saved one did where a setting's default changed after
    it began (``EARLIER_BEHAVIOUR``): ``["--auc-x even"]`` for a stated-protocol run made before AUCs
    used the fraction changed. Without them the command shown for a committed run would make other
    numbers."""
    protocol = PROTOCOLS.get(str(settings.get("protocol", "stated")), {})
    today = asdict(EvaluationSettings(data="")) | protocol
    made = EARLIER_BEHAVIOUR | settings
    return [f"--{key.replace('_', '-')} {made[key]}" for key in EARLIER_BEHAVIOUR if made[key] != today[key]]


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match on resume; a setting added after a run was started counts as what
    that run did: its default, or ``EARLIER_BEHAVIOUR`` where the default changed how numbers come out
    (so a run started with the older AUC rule is resumed only with ``--auc-x even``)."""
    defaults = asdict(EvaluationSettings(data="")) | EARLIER_BEHAVIOUR
    return {k: v for k, v in (defaults | settings).items() if k not in RESUMABLE_KEYS}
