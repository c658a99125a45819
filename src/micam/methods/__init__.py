"""CAM methods: MI-CAM and the paper's five baselines, all on the shared ``BaseCAM`` engine."""

from micam.methods.base import BaseCAM, LayerContext
from micam.methods.eigen_cam import EigenCAM
from micam.methods.grad_cam import GradCAM
from micam.methods.grad_cam_plus_plus import GradCAMPlusPlus
from micam.methods.mi_cam import MICAM
from micam.methods.score_cam import ScoreCAM
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
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerContext",
    "ScoreCAM",
    "XGradCAM",
]
