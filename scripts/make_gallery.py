"""Draw the README's gallery from the bundled CC0 photos (micam.examples): every method side by side, and
for the cat photo the deletion/insertion curves (Fig. 3's metric), the channel weights (Fig. 9) and
MI-CAM's weights before and after blurring the cat's eyes and nose (Fig. 7).

Usage: .venv/bin/python scripts/make_gallery.py [OUT_DIR]   (default docs/gallery)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from micam import examples, models, plot
from micam.evaluation.datasets import black_pixel
from micam.methods import METHODS
from micam.methods.factory import make_method
from micam.metrics import deletion_insertion
from micam.metrics.counterfactual import blur_box, counterfactual_weights
from micam.plot.overlay import restore_image

REPO = Path(__file__).resolve().parents[1]
CAT_FACE = (40, 50, 190, 170)  # eyes and nose of chelsea.png after the 224 centre crop


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "gallery"
    loaded = models.load("mobilenet_v2")
    x = torch.stack([loaded.preprocess(examples.photo(name)) for name in examples.PHOTOS])
    with torch.no_grad():
        targets = loaded.model(x).argmax(dim=1).tolist()
    maps, weights = {}, {}
    for name in METHODS:
        with make_method(name, loaded.model, loaded.target_layer, pixel_mean=loaded.mean, pixel_std=loaded.std) as cam:
            maps[name] = cam(x, targets=targets)
            weights[name] = cam.last_weights[0]
    images = [restore_image(t, loaded.mean, loaded.std) for t in x]
    titles = [f"{loaded.categories[t]} (MobileNetV2)" for t in targets]
    plot.comparison_grid(images, maps, titles, path=out / "method-comparison.png", cell=1.6)

    curves = {}
    for name, cam_maps in maps.items():
        result = deletion_insertion(loaded.model, x[:1], cam_maps[:1], targets[:1], baseline=black_pixel(loaded))
        curves[name] = {kind: result[f"{kind}_curve"][0].tolist() for kind in ("deletion", "insertion")}
    plot.deletion_insertion_plot(curves, path=out / "deletion-insertion-chelsea.png")
    shown = {name: weights[name] for name in ("mi-cam", "grad-cam", "score-cam")}
    plot.channel_weights_plot(shown, sort=True, path=out / "channel-weights-chelsea.png")
    with make_method("mi-cam", loaded.model, loaded.target_layer, pixel_mean=loaded.mean, pixel_std=loaded.std) as cam:
        change = counterfactual_weights(cam, x[:1], blur_box(CAT_FACE), targets=targets[:1])
    plot.counterfactual_weights_plot(
        change["actual_weights"][0],
        change["counterfactual_weights"][0],
        "mi-cam",
        "eyes and nose blurred",
        path=out / "counterfactual-chelsea.png",
    )
    for name in (
        "method-comparison",
        "deletion-insertion-chelsea",
        "channel-weights-chelsea",
        "counterfactual-chelsea",
    ):
        print(out / f"{name}.png")


if __name__ == "__main__":
    main()
