"""Draw the README's gallery from the bundled CC0 photos (examples/): every method side by side.

Usage: .venv/bin/python scripts/make_gallery.py [OUT_DIR]   (default docs/gallery)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from micam import models, plot
from micam.evaluation.datasets import read_rgb
from micam.methods import METHODS
from micam.methods.factory import make_method
from micam.reports import restore_image

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "gallery"
    loaded = models.load("mobilenet_v2")
    photos = [REPO / "examples" / name for name in ("chelsea.png", "coffee.png")]
    x = torch.stack([loaded.preprocess(read_rgb(p)) for p in photos])
    with torch.no_grad():
        targets = loaded.model(x).argmax(dim=1).tolist()
    maps = {}
    for name in METHODS:
        with make_method(name, loaded.model, loaded.target_layer, pixel_mean=loaded.mean, pixel_std=loaded.std) as cam:
            maps[name] = cam(x, targets=targets)
    images = [restore_image(t, loaded.mean, loaded.std) for t in x]
    titles = [f"{loaded.categories[t]} (MobileNetV2)" for t in targets]
    plot.comparison_grid(images, maps, titles, path=out / "method-comparison.png", cell=1.6)
    print(out / "method-comparison.png")


if __name__ == "__main__":
    main()
