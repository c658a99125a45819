"""Max |ours - pytorch-grad-cam| per method on MobileNetV2 (real ImageNet weights) and real photos.

Usage: .venv/bin/python scripts/peer_equality.py [IMAGE ...]   (default: the two bundled photos)
Both maps are min-max normalized to [0, 1] at 224x224; Eigen-CAM is compared with the peer's map of
the same SVD orientation (the peer leaves the sign to LAPACK; micam fixes it, see eigen_cam.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytorch_grad_cam as peer
import torch
from PIL import Image
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from micam import EigenCAM, GradCAM, GradCAMPlusPlus, XGradCAM, models

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main(paths: list[str]) -> None:
    loaded = models.load("mobilenet_v2")
    paths = paths or [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png")]
    x = torch.stack([loaded.preprocess(Image.open(p)) for p in paths])
    layer = [loaded.target_layer]
    print(f"{len(paths)} image(s): {', '.join(Path(p).name for p in paths)}")
    print("| method | max abs difference |\n|---|---|")
    for ours, theirs in [(GradCAM, peer.GradCAM), (GradCAMPlusPlus, peer.GradCAMPlusPlus), (XGradCAM, peer.XGradCAM)]:
        mine = ours(loaded.model, target_layers=layer)(x).numpy()
        with theirs(loaded.model, target_layers=layer) as cam:
            reference = cam(x, targets=None)
        print(f"| {ours.__name__} | {np.abs(mine - reference).max():.2e} |")
    mine = EigenCAM(loaded.model, target_layers=layer)(x).numpy()
    with torch.no_grad():
        projection = get_2d_projection(loaded.model.features(x).numpy())
    worst = 0.0
    for i in range(len(paths)):
        candidates = [
            scale_cam_image(scale_cam_image(np.maximum(s * projection[i : i + 1], 0), (224, 224)))[0] for s in (1, -1)
        ]
        worst = max(worst, min(np.abs(mine[i] - c).max() for c in candidates))
    print(f"| EigenCAM (same orientation) | {worst:.2e} |")


if __name__ == "__main__":
    main(sys.argv[1:])
