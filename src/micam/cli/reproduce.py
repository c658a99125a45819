"""``micam reproduce``: the paper's tables and figures from one command, on the shared real data.

Steps (each shows progress; a total time estimate is printed before anything runs):
1. figures (OUT/figures): method comparison grids (Fig. 1/4), multiple objects (Fig. 5), localization
   with boxes and the pointing-game peak (Fig. 6), counterfactual weights of MI-CAM (Fig. 7) and of the
   baselines (Fig. 10), the sanity-check strip (Fig. 8), channel weights (Fig. 9);
2. ``micam evaluate`` of MobileNetV2 on the first N annotated validation images (Tables 1-3, plus the
   counterfactual and sanity tables), and of MobileNetV1 for the paper's Table 5 (AD/AI) where its
   weights file is present;
3. ``micam benchmark`` (Table 4), bounded in time;
4. ``micam report``: OUT/report.html binding all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from micam import models, plot
from micam.capture.inference import inference_copy, preferred_layout
from micam.evaluation import EvaluationSettings, evaluate, read_dataset
from micam.evaluation.datasets import black_pixel, prepare, read_rgb
from micam.methods import METHODS
from micam.methods.factory import make_method
from micam.metrics import box_mask, cascading_randomization, randomization_stages
from micam.reports import restore_image
from micam.reports.html import write_report
from micam.reports.progress import format_seconds

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MULTI_OBJECT_PHOTOS = ("darknet/dog.jpg", "darknet/person.jpg", "darknet/horses.jpg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_shared = os.environ.get("MICAM_SHARED_DATA", "../shared/data")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--limit", type=int, default=50, help="validation images to evaluate (default: %(default)s)")
    parser.add_argument("--shared", type=Path, default=Path(default_shared), help="shared data (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--benchmark-budget", type=float, default=300.0, help="seconds for the benchmark step")
    parser.add_argument("--resume", action="store_true", help="continue the evaluations in OUT")


def run(args: argparse.Namespace) -> int:
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    annotations = args.shared / "ilsvrc2012-val" / "annotations.json"
    if not annotations.exists():
        raise ValueError(
            f"shared data not found at {args.shared} (needs ilsvrc2012-val/annotations.json); pass --shared DIR "
            "or set MICAM_SHARED_DATA"
        )
    v1_weights = args.shared / "weights" / "mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth"
    loaded = models.load("mobilenet_v2", device=device)
    estimate = _estimate(loaded, args.limit, device, args.benchmark_budget, v1_weights.exists())
    print(
        f"micam reproduce: {args.limit} images on {device}; estimated total {format_seconds(estimate)}", file=sys.stderr
    )
    started = time.perf_counter()
    figures = args.out / "figures"
    _figures(loaded, annotations, args.shared / "photos", figures, device)
    print(f"figures done ({format_seconds(time.perf_counter() - started)})", file=sys.stderr)
    evaluate(
        EvaluationSettings(
            data=str(annotations),
            model="mobilenet_v2",
            limit=args.limit,
            out=str(args.out / "eval-mobilenet_v2"),
            device=device,
            resume=args.resume,
        )
    )
    if v1_weights.exists():
        evaluate(
            EvaluationSettings(
                data=str(annotations),
                model="mobilenet_v1",
                weights=str(v1_weights),
                limit=args.limit,
                out=str(args.out / "table5-mobilenet_v1"),
                device=device,
                resume=args.resume,
                metrics=["drop-increase"],
            )
        )
    from micam.cli import benchmark  # imported late: only this step needs it

    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    benchmark_out = str(args.out / "benchmark")
    benchmark.run(
        parser.parse_args(["--device", device, "--time-budget", str(args.benchmark_budget), "--out", benchmark_out])
    )
    report = write_report(args.out, args.out / "report.html", "micam: the MI-CAM paper reproduced")
    elapsed = time.perf_counter() - started
    (args.out / "reproduce.json").write_text(json.dumps({"limit": args.limit, "device": device, "seconds": elapsed}))
    print(f"done in {format_seconds(elapsed)} (estimated {format_seconds(estimate)}): {report}")
    return 0


def _estimate(loaded: models.LoadedModel, limit: int, device: str, benchmark_budget: float, with_v1: bool) -> float:
    """Seconds, from the measured cost of one forward pass times the passes each step makes."""
    x = preferred_layout(torch.zeros(32, 3, loaded.input_size, loaded.input_size, device=device))
    runner = inference_copy(loaded.model)  # what the masked and perturbed passes run on
    with torch.no_grad():
        runner(x)
        tick = time.perf_counter()
        runner(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    per_image = (time.perf_counter() - tick) / 32
    channels = 1280
    methods = len(METHODS) + 2
    per_eval_image = channels + methods * (2 * 101 + 5)
    counterfactual = min(limit, 50 if device.startswith("cuda") else 10) * 2 * channels
    sanity = (4 if device.startswith("cuda") else 1) * 20 * (channels + 5 * 2)
    figure_passes = 12 * channels + 20 * channels
    passes = limit * per_eval_image + counterfactual + sanity + figure_passes
    if with_v1:
        passes += limit * (1024 + methods * 3)
    return passes * per_image + benchmark_budget


def _figures(loaded: models.LoadedModel, annotations: Path, photos: Path, out: Path, device: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    layer = loaded.target_layer_name

    def method(name: str, model: torch.nn.Module | None = None):  # type: ignore[no-untyped-def]
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
                weights[name] = cam.last_weights.cpu()  # type: ignore[union-attr]
        return maps, weights

    def predicted(x: torch.Tensor) -> list[int]:
        with torch.no_grad():
            return loaded.model(x).argmax(dim=1).tolist()

    # Fig. 1 / 4: the bundled CC0 photos and two annotated validation images.
    dataset = read_dataset(annotations)
    bundled = [EXAMPLES / n for n in ("chelsea.png", "coffee.png") if (EXAMPLES / n).exists()]
    pictures = [loaded.preprocess(read_rgb(p)) for p in bundled]
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
            actual = cam.last_weights[0]  # type: ignore[index]
            cam(counterfactual, targets=target)
            changed = cam.last_weights[0]  # type: ignore[index]
        figure = "fig7" if name == "mi-cam" else "fig10"
        plot.counterfactual_weights_plot(
            actual, changed, name, "object blacked out", path=out / f"{figure}_counterfactual_{name}.png"
        )
    # Fig. 8: sanity-check strips.
    stages = randomization_stages(loaded.model)
    picks = [0, 1, len(stages) // 4, len(stages) // 2, len(stages)]
    image = restore_image(tensor, loaded.mean, loaded.std)
    for name in ("mi-cam", "grad-cam"):
        rows = cascading_randomization(loaded.model, lambda m, name=name: method(name, m), xi, target, layers=stages)
        plot.sanity_strip(
            image,
            [rows[i]["map"][0] for i in picks],
            [str(rows[i]["layer"]) for i in picks],
            name,
            path=out / f"fig8_sanity_{name}.png",
        )
