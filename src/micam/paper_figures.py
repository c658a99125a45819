"""The paper's figures drawn from a model on real photos: what ``micam reproduce`` puts in OUT/figures.

Method comparison grids (Fig. 1/4), multiple objects (Fig. 5), localization with boxes and the
pointing-game peak (Fig. 6), counterfactual weights of MI-CAM (Fig. 7) and of the baselines (Fig. 10),
the sanity-check strip (Fig. 8), channel weights (Fig. 9). The drawing itself is ``micam.plot``'s.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import cast

import torch

from micam import examples, models, plot
from micam.evaluation import read_dataset
from micam.evaluation.datasets import black_pixel, prepare
from micam.images import read_rgb
from micam.methods import METHODS, BaseCAM
from micam.methods.factory import make_method
from micam.metrics import box_mask, cascading_randomization, randomization_stages
from micam.plot.overlay import restore_image

MULTI_OBJECT_PHOTOS = ("darknet/dog.jpg", "darknet/person.jpg", "darknet/horses.jpg")


def draw_paper_figures(loaded: models.LoadedModel, annotations: Path, photos: Path, out: Path, device: str) -> None:
    """Every figure of the paper as a PNG in ``out``: the model ``loaded`` on the bundled photos, the first
    annotated validation images of ``annotations`` and the multi-object photos under ``photos`` (where present)."""
    out.mkdir(parents=True, exist_ok=True)
    layer = loaded.target_layer_name

    def method(name: str, model: torch.nn.Module | None = None) -> BaseCAM:
        return make_method(
            name,
            model or loaded.model,
            layer,
            pixel_mean=loaded.mean,
            pixel_std=loaded.std,
            score_cam_batch_size=256 if device.startswith("cuda") else 32,
        )

    def explain_all(x: torch.Tensor, targets: list[int]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        maps, weights = {}, {}
        for name in METHODS:
            with method(name) as cam:
                maps[name] = cam(x, targets=targets).cpu()
                weights[name] = _weights(cam).cpu()
        return maps, weights

    def predicted(x: torch.Tensor) -> list[int]:
        with torch.no_grad():
            classes: list[int] = loaded.model(x).argmax(dim=1).tolist()
            return classes

    # Fig. 1 / 4: the bundled CC0 photos and two annotated validation images.
    dataset = read_dataset(annotations)
    pictures = [loaded.preprocess(examples.photo(name)) for name in examples.PHOTOS]
    prepared = [prepare(read_rgb(s.path), s, loaded, "stretch") for s in dataset.samples[:4]]
    x = torch.stack(pictures + [t for t, _ in prepared[:2]]).to(device)
    targets = predicted(x)
    maps, weights = explain_all(x, targets)
    images = [restore_image(t, loaded.mean, loaded.std) for t in x]
    names = [loaded.categories[t] for t in targets]
    plot.comparison_grid(images, maps, names, path=out / "fig1_4_method_comparison.png")
    plot.channel_weights_plot(
        {n: weights[n][0] for n in ("mi-cam", "grad-cam", "score-cam")}, path=out / "fig9_channel_weights.png"
    )
    # Fig. 5: photos with several objects.
    multi = [photos / p for p in MULTI_OBJECT_PHOTOS if (photos / p).exists()]
    if multi:
        xm = torch.stack([loaded.preprocess(read_rgb(p)) for p in multi]).to(device)
        tm = predicted(xm)
        mm, _ = explain_all(xm, tm)
        plot.comparison_grid(
            [restore_image(t, loaded.mean, loaded.std) for t in xm],
            mm,
            [loaded.categories[t] for t in tm],
            path=out / "fig5_multiple_objects.png",
        )
    # Fig. 6: localization with the ground-truth boxes, MI-CAM and Grad-CAM.
    for i, (tensor, boxes) in enumerate(prepared[:2]):
        image = restore_image(tensor, loaded.mean, loaded.std)
        for name in ("mi-cam", "grad-cam"):
            plot.localization_view(
                image,
                maps[name][2 + i],
                boxes,
                f"{name}, {dataset.samples[i].key.split('/')[-1]}",
                path=out / f"fig6_localization_{i + 1}_{name}.png",
            )
    # Fig. 7 / 10: counterfactual weights (the object's boxes blacked out).
    tensor, boxes = prepared[0]
    xi = tensor[None].to(device)
    target = predicted(xi)
    inside = box_mask(boxes, tuple(xi.shape[-2:]), device)
    counterfactual = torch.where(inside, black_pixel(loaded).to(device), xi)
    for name in ("mi-cam", "grad-cam", "score-cam", "eigen-cam"):
        with method(name) as cam:
            cam(xi, targets=target)
            actual = _weights(cam)[0]
            cam(counterfactual, targets=target)
            changed = _weights(cam)[0]
        figure = "fig7" if name == "mi-cam" else "fig10"
        plot.counterfactual_weights_plot(
            actual, changed, name, "object blacked out", path=out / f"{figure}_counterfactual_{name}.png"
        )
    # Fig. 8: sanity-check strips.
    stages = randomization_stages(loaded.model)
    picks = [0, 1, len(stages) // 4, len(stages) // 2, len(stages)]
    image = restore_image(tensor, loaded.mean, loaded.std)
    for name in ("mi-cam", "grad-cam"):
        rows = cascading_randomization(loaded.model, functools.partial(method, name), xi, target, layers=stages)
        plot.sanity_strip(
            image,
            [rows[i]["map"][0] for i in picks],
            [str(rows[i]["layer"]) for i in picks],
            name,
            path=out / f"fig8_sanity_{name}.png",
        )


def _weights(cam: BaseCAM) -> torch.Tensor:
    """The channel weights of the call just made."""
    return cast(torch.Tensor, cam.last_weights)
