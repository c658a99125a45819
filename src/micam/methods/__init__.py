"""CAM methods: MI-CAM and the paper's five baselines, all on the shared ``BaseCAM`` engine."""

from micam.methods.base import BaseCAM, Explainer, LayerContext, MethodOptions, SharedSettings
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

__all__ = [
    "METHODS",
    "MICAM",
    "BaseCAM",
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
    "XGradCAM",
]
