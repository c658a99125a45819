"""micam: mutual-information-weighted class activation maps (MI-CAM) and the CAM baselines."""

from micam.estimators import mutual_information
from micam.methods import (
    METHODS,
    MICAM,
    BaseCAM,
    ChannelSum,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    ScoreCAM,
    ShuffledMICAM,
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
    "ChannelSum",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "DetectionBoxTarget",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "RegressionOutputTarget",
    "ScoreCAM",
    "SemanticSegmentationTarget",
    "ShuffledMICAM",
    "SimilarityTarget",
    "XGradCAM",
    "mutual_information",
]
