"""micam: mutual-information-weighted class activation maps (MI-CAM) and the CAM baselines."""

from micam.estimators import mutual_information
from micam.methods import (
    METHODS,
    MICAM,
    BaseCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    ScoreCAM,
    XGradCAM,
)
from micam.targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    DetectionBoxTarget,
    RegressionOutputTarget,
    SemanticSegmentationTarget,
    SimilarityTarget,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "MICAM",
    "BaseCAM",
    "BinaryClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "DetectionBoxTarget",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "RegressionOutputTarget",
    "ScoreCAM",
    "SemanticSegmentationTarget",
    "SimilarityTarget",
    "XGradCAM",
    "mutual_information",
]
