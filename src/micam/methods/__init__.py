"""CAM methods: MI-CAM and the paper's five baselines, all on the shared ``BaseCAM`` engine, and the
controls that say what MI-CAM's weights add (``controls.py``)."""

from micam.methods.base import BaseCAM, Explainer, LayerContext, MethodOptions, SharedSettings
from micam.methods.controls import ChannelSum, ShuffledMICAM
from micam.methods.eigen_cam import EigenCAM
from micam.methods.grad_cam import GradCAM
from micam.methods.grad_cam_plus_plus import GradCAMPlusPlus, GradCAMPlusPlusOptions
from micam.methods.mi_cam import MICAM, MICAMOptions
from micam.methods.score_cam import ScoreCAM, ScoreCAMOptions
from micam.methods.xgrad_cam import XGradCAM

# Command-line names of the methods, in the paper's table order.
METHODS: dict[str, type[BaseCAM]] = {
    "grad-cam": GradCAM,
    "grad-cam++": GradCAMPlusPlus,
    "score-cam": ScoreCAM,
    "xgrad-cam": XGradCAM,
    "eigen-cam": EigenCAM,
    "mi-cam": MICAM,
}
# Controls of MI-CAM (reference rows of an evaluation, never ranked with the methods).
CONTROLS: dict[str, type[BaseCAM]] = {"channel-sum": ChannelSum, "mi-cam-shuffled": ShuffledMICAM}

__all__ = [
    "CONTROLS",
    "METHODS",
    "MICAM",
    "BaseCAM",
    "ChannelSum",
    "EigenCAM",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradCAMPlusPlusOptions",
    "LayerContext",
    "MICAMOptions",
    "MethodOptions",
    "ScoreCAM",
    "ScoreCAMOptions",
    "SharedSettings",
    "ShuffledMICAM",
    "XGradCAM",
]
