"""How much the inference copy (batch norm folded, activations in place, "SAME" padding inside the
convolution) and the channels-last layout speed up micam's forward-heavy work, as ratios within one run:
``python benchmarks/inference_speed.py [--model mobilenet_v2] [--device cpu]``.

Times, on the model with random inputs (ImageNet weights when installed, else random weights):
1. one forward pass of a batch: plain, channels-last, batch norm folded only (+ channels-last), the whole
   inference copy, the whole copy + channels-last (what micam runs);
2. one Score-CAM call on one image and one deletion/insertion of one map, with micam's speed-ups
   switched off (the model run as given) and on. Prints a table and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

if __name__ == "__main__":
    try:
        import micam  # noqa: F401
    except ImportError:  # a checkout without an install
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from micam import inference, models
from micam.methods import ScoreCAM
from micam.metrics import deletion_insertion


def timed(work: Callable[[], object], repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` runs after one warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_ups(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """micam's inference copy and layout on (as micam runs) or off (the model as it is), switched
    through the owner of the copy, ``micam.inference``."""
    return contextlib.nullcontext() if enabled else inference.plain_inference()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=models.MODEL_NAMES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    try:
        loaded = models.load(args.model, device=args.device)
        model, weights, layer = loaded.model, "imagenet", loaded.target_layer_name
    except Exception:  # weights not installed: the timing does not depend on them
        loaded = models.load(args.model, weights="random", device=args.device)
        model, weights, layer = loaded.model, "random", loaded.target_layer_name
    x = torch.randn(args.batch, 3, loaded.input_size, loaded.input_size, device=args.device)
    fold_only = inference.inference_copy(model, in_place=False, pad_inside=False)
    folded = inference.inference_copy(model)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    rows: dict[str, float] = {}
    with torch.inference_mode():
        rows["forward, plain"] = timed(lambda: model(x), args.repeats, args.device)
        rows["forward, channels-last"] = timed(lambda: model(channels_last), args.repeats, args.device)
        rows["forward, BN folded only"] = timed(lambda: fold_only(x), args.repeats, args.device)
        rows["forward, BN folded only + channels-last"] = timed(
            lambda: fold_only(channels_last), args.repeats, args.device
        )
        rows["forward, inference copy"] = timed(lambda: folded(x), args.repeats, args.device)
        rows["forward, inference copy + channels-last"] = timed(
            lambda: folded(channels_last), args.repeats, args.device
        )
        same = torch.equal(fold_only(channels_last), folded(channels_last))
    image = x[:1]
    cam_map = torch.rand(1, loaded.input_size, loaded.input_size, device=args.device)
    for enabled, label in ((False, "off"), (True, "on")):
        with speed_ups(enabled), ScoreCAM(model, target_layers=[layer], batch_size=args.batch) as cam:
            rows[f"Score-CAM, 1 image, speed-ups {label}"] = timed(lambda: cam(image, targets=[1]), 1, args.device)
            rows[f"deletion/insertion, 1 map, speed-ups {label}"] = timed(
                lambda: deletion_insertion(model, image, cam_map, [1], batch_size=args.batch), 1, args.device
            )
    plain = rows["forward, plain"]
    print(f"{args.model} ({weights} weights), device {args.device}, batch {args.batch}, torch {torch.__version__}")
    print(f"logits of the inference copy equal to BN folding alone's, bit for bit: {same}")
    print(f"{'work':<44} {'seconds':>8} {'speed-up':>8}")
    for name, seconds in rows.items():
        reference = plain if name.startswith("forward") else rows[name.replace("speed-ups on", "speed-ups off")]
        print(f"{name:<44} {seconds:8.3f} {reference / seconds:7.2f}x")
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "device": args.device,
                    "batch": args.batch,
                    "torch": torch.__version__,
                    "seconds": rows,
                    "bit_identical": same,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
