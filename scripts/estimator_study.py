"""Does any MI estimator make MI-CAM's weights matter? (issue 15, part 4)

For each shared validation image: MI-CAM's map with every estimator (binned at 8 to 256 bins,
normalized, the authors' distinct-value "reference", KSG, HSIC and normalized HSIC), the unweighted
channel sum (``ChannelSum``: MI-CAM with every weight 1, with the same upsampling as the estimator's
MI-CAM: "reference" runs with the authors' nearest upsampling, the others bilinear) and Grad-CAM, each
scored on the paper's
AD / AI (threshold 0.5), area-matched AD / AI (top 5-50 % of the pixels kept, mean over p) and
deletion / insertion AUC, all with black removed pixels; plus each map's Pearson correlation with the
channel sum and how much of each estimator's MI survives shuffling the gray image's pixels
(``ShuffledMICAM``: total MI shuffled / total MI). Paired over images, every estimator's MI-CAM minus
the channel sum of the same upsampling, mean ± 95 % t interval: a weight that matters moves a metric
off zero. ``--estimators NAME-shuffled`` also scores the map of NAME's shuffled control and pairs NAME's
MI-CAM with it (study.json "minus_own_shuffle"): what the weights' relation to the image adds.

    python scripts/estimator_study.py --data ../shared/data/ilsvrc2012-val/annotations.json --out study
        [--model mobilenet_v2] [--limit N] [--seconds S] [--device cuda] [--estimators binned-32,ksg] [--resume]

Writes OUT/per_image.csv (one row per image and map) and OUT/study.json / OUT/study.md (the paired
table), rewritten after every image, so a run cut by ``--seconds`` (or a kill) keeps what it did, and
``--resume`` carries it on: the same command with a larger ``--limit`` extends a finished run.

    python scripts/estimator_study.py --summary docs/results/estimator-study

reads every run folder under that one and writes its summary.md: each run's verdicts side by side and
the tally over runs and models, computed from the committed study.json files alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from micam import GradCAM, models
from micam.evaluation.compare import paired_differences, verdict
from micam.evaluation.datasets import black_pixel, prepare, read_dataset
from micam.evaluation.files import read_csv, read_json, rewrite_csv, write_atomically
from micam.images import read_rgb
from micam.methods import MICAM, BaseCAM, ChannelSum, ShuffledMICAM
from micam.metrics import (
    METRIC_SPECS,
    area_matched_drop_increase,
    deletion_insertion,
    paper_drop_increase,
    pearson,
    summarize,
)
from micam.runtime import tune_allocator

# name -> MI-CAM keyword options (estimator, bins)
ESTIMATORS: dict[str, dict[str, Any]] = {
    "binned-8": {"estimator": "binned", "bins": 8},
    "binned-16": {"estimator": "binned", "bins": 16},
    "binned-32": {"estimator": "binned", "bins": 32},
    "binned-64": {"estimator": "binned", "bins": 64},
    "binned-128": {"estimator": "binned", "bins": 128},
    "binned-256": {"estimator": "binned", "bins": 256},
    "normalized-32": {"estimator": "normalized", "bins": 32},
    "reference": {"estimator": "reference", "upsample_mode": "nearest"},
    "ksg": {"estimator": "ksg"},
    "hsic": {"estimator": "hsic"},
    "hsic-normalized": {"estimator": "hsic-normalized"},
}
SHUFFLED_TALLY = "shuffled-gray controls, every run (not MI estimators: a yardstick)"
# "<estimator>-shuffled" maps MI-CAM with that estimator against the shuffled gray image
# (``ShuffledMICAM``): scored like any map, and paired with its unshuffled twin when both run
SHUFFLED = "-shuffled"
METRICS = ("average_drop", "average_increase", "area_matched_drop", "area_matched_increase", "deletion", "insertion")
# each column's direction, from its metric's spec (the study calls the two AUCs deletion / insertion)
SPEC_COLUMNS = {"deletion": "deletion_auc", "insertion": "insertion_auc"}
HIGHER_IS_BETTER = {metric: METRIC_SPECS[SPEC_COLUMNS.get(metric, metric)].higher_is_better for metric in METRICS}
COLUMNS = ["image", "map", "seconds", *METRICS, "channel_sum_correlation", "shuffled_share"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="stop starting new images after this")
    parser.add_argument("--steps", type=int, default=100, help="deletion / insertion steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated, from the default")
    parser.add_argument(
        "--resume", action="store_true", help="keep OUT's finished images (rows byte-identical) and add the rest"
    )
    parser.add_argument("--summary", type=Path, help="write the summary of the run folders in this folder, and stop")
    args = parser.parse_args()
    if args.summary is not None:
        write_atomically(args.summary / "summary.md", summary_markdown(args.summary))
        print(f"[study] wrote {args.summary / 'summary.md'}")
        return
    if args.data is None or args.out is None:
        parser.error("--data and --out are required (or give --summary FOLDER)")
    tune_allocator()  # as every micam command: batched passes and the estimators' blocks reuse their memory
    names = args.estimators.split(",")
    unknown = [name for name in names if name.removesuffix(SHUFFLED) not in ESTIMATORS]
    if unknown:
        choices = ", ".join(ESTIMATORS)
        parser.error(f"unknown estimator {', '.join(unknown)}; choose from {choices}, each also as NAME{SHUFFLED}")
    chosen = {name: ESTIMATORS[name.removesuffix(SHUFFLED)] for name in names}
    started = time.perf_counter()
    device = torch.device(args.device)
    loaded = models.load(args.model, device=device)
    dataset = read_dataset(args.data)
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    layer, mean, std = loaded.target_layer_name, loaded.mean, loaded.std
    common = {"pixel_mean": mean, "pixel_std": std}
    nearest = any(options.get("upsample_mode") == "nearest" for options in chosen.values())
    maps_of: dict[str, BaseCAM] = {
        "channel-sum": ChannelSum(loaded.model, [layer], **common),
        **(
            {"channel-sum-nearest": ChannelSum(loaded.model, [layer], **common, upsample_mode="nearest")}
            if nearest
            else {}
        ),
        "grad-cam": GradCAM(loaded.model, [layer]),
        **{
            name: (ShuffledMICAM if name.endswith(SHUFFLED) else MICAM)(loaded.model, [layer], **common, **options)
            for name, options in chosen.items()
        },
    }
    # each estimator's shuffled control, for the share of MI it keeps (its map's twin when that runs too:
    # MI-CAM's weights do not depend on the target class, so its last weights are the ones needed)
    shuffled = {
        name: maps_of[name + SHUFFLED]
        if name + SHUFFLED in maps_of
        else ShuffledMICAM(loaded.model, [layer], **common, **options)
        for name, options in chosen.items()
        if not name.endswith(SHUFFLED)
    }
    black = black_pixel(loaded).to(device)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, earlier_seconds = _earlier_rows(args.out, list(maps_of)) if args.resume else ([], 0.0)
    done = {row["image"] for row in rows}
    for index, sample in enumerate(samples):
        if sample.key in done:
            continue
        if args.seconds is not None and time.perf_counter() - started > args.seconds:
            break
        image, _ = prepare(read_rgb(sample.path), sample, loaded, dataset.geometry)
        x = image[None].to(device)
        with torch.no_grad():
            target = int(loaded.model(x).argmax(dim=1))
        found: dict[str, torch.Tensor] = {}
        seconds: dict[str, float] = {}
        for name, cam in maps_of.items():
            tick = time.perf_counter()
            found[name] = cam(x, targets=[target])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] = time.perf_counter() - tick
        stacked = torch.cat(list(found.values()))
        targets = [target] * stacked.shape[0]
        images = x.expand(stacked.shape[0], -1, -1, -1)
        drop = paper_drop_increase(loaded.model, images, stacked, targets, baseline=black)
        area = area_matched_drop_increase(loaded.model, images, stacked, targets, baseline=black)
        curves = deletion_insertion(loaded.model, images, stacked, targets, steps=args.steps, baseline=black)
        sums = torch.cat([found[_control(name)] for name in found])
        correlation = pearson(stacked.flatten(1), sums.flatten(1))
        for position, name in enumerate(found):
            share = math.nan
            if name in shuffled:
                if name + SHUFFLED not in maps_of:
                    shuffled[name](x)
                share = float(shuffled[name].last_weights.sum() / maps_of[name].last_weights.sum())
            rows.append(
                {
                    "image": sample.key,
                    "map": name,
                    "seconds": seconds[name],
                    "average_drop": float(drop["average_drop"][position]),
                    "average_increase": float(drop["average_increase"][position]),
                    "area_matched_drop": float(area["average_drop"][position]),
                    "area_matched_increase": float(area["average_increase"][position]),
                    "deletion": float(curves["deletion_auc"][position]),
                    "insertion": float(curves["insertion_auc"][position]),
                    "channel_sum_correlation": float(correlation[position]),
                    "shuffled_share": share,
                }
            )
        done.add(sample.key)
        _write(args.out, rows, args, len(done), earlier_seconds + time.perf_counter() - started)
        print(f"[study] {index + 1}/{len(samples)} images, {time.perf_counter() - started:.0f} s", flush=True)


def _earlier_rows(out: Path, maps: list[str]) -> tuple[list[dict[str, Any]], float]:
    """The rows (as text, so they are written back unchanged) and seconds of an earlier run into ``out``;
    refuses a folder whose images do not have exactly this run's maps, since the pairs would not match."""
    path = out / "per_image.csv"
    if not path.exists():
        return [], 0.0
    rows = read_csv(path)
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["image"], []).append(row["map"])
    for image, names in found.items():
        if names != maps:
            raise SystemExit(f"{path}: {image} has maps {names}, this run makes {maps}; use the same --estimators")
    summary = out / "study.json"
    seconds = float(read_json(summary).get("seconds", 0.0)) if summary.exists() else 0.0
    return rows, seconds


def _control(name: str) -> str:
    """The channel sum a map is compared with: the one with the same upsampling."""
    nearest = ESTIMATORS.get(name.removesuffix(SHUFFLED), {}).get("upsample_mode") == "nearest"
    return "channel-sum-nearest" if nearest else "channel-sum"


def _write(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace, images: int, seconds: float) -> None:
    """Rewrite OUT's three files, each all at once, so a kill mid-write leaves the previous image's files
    whole for ``--resume``."""
    rewrite_csv(out / "per_image.csv", COLUMNS, rows)
    as_methods = [{**row, "method": row["map"]} for row in rows]
    names = list(dict.fromkeys(row["map"] for row in rows))
    study: dict[str, Any] = {
        "model": args.model,
        "images": images,
        "seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else "cpu",
        "command": _command(args),
        "means": {
            name: {
                key: summarize([float(r[key]) for r in rows if r["map"] == name])
                for key in (*METRICS, "channel_sum_correlation", "shuffled_share", "seconds")
            }
            for name in names
        },
        "minus_channel_sum": {
            name: paired_differences(
                [r for r in as_methods if r["map"] in (name, _control(name))], name, list(METRICS)
            ).get(_control(name), {})
            for name in names
            if not name.startswith("channel-sum")
        },
    }
    twins = [name for name in names if name + SHUFFLED in names]
    if twins:  # absent otherwise, so runs without shuffled maps keep their files byte for byte
        study["minus_own_shuffle"] = {
            name: paired_differences(
                [r for r in as_methods if r["map"] in (name, name + SHUFFLED)], name, list(METRICS)
            ).get(name + SHUFFLED, {})
            for name in twins
        }
    write_atomically(out / "study.json", json.dumps(study, indent=2, default=str))
    write_atomically(out / "study.md", _markdown(study))


def _command(args: argparse.Namespace) -> str:
    """The command line that repeats this run: options left unset are omitted, flags given bare."""
    words = ["python scripts/estimator_study.py"]
    for key, value in vars(args).items():
        if value is None or value is False:
            continue
        words.append(f"--{key}" if value is True else f"--{key} {value}")
    return " ".join(words)


def _markdown(study: dict[str, Any]) -> str:
    lines = [
        f"# Estimator study: {study['model']}, {study['images']} images ({study['device']}, {study['seconds']} s)",
        "",
        "Each map minus the unweighted channel sum with the same upsampling (nearest for `reference`, else",
        "bilinear), paired over images: mean ± 95 % t interval, and whether it is better, worse or level (≈).",
        "Last columns: mean Pearson correlation of the map with that channel sum, and the share of the total MI",
        "kept when the gray image's pixels are shuffled.",
        "",
        *_head("map", *METRICS, "corr. with sum", "MI kept when shuffled"),
    ]
    for name, differences in study["minus_channel_sum"].items():
        cells = [_cell(metric, differences.get(metric)) for metric in METRICS]
        means = study["means"][name]
        share = means["shuffled_share"]["mean"]
        cells.append(f"{means['channel_sum_correlation']['mean']:.3f}")
        cells.append("" if math.isnan(share) else f"{share:.2f}")
        lines.append(_row(name, *cells))
    if "minus_own_shuffle" in study:
        lines += [
            "",
            "Each estimator's MI-CAM minus the same MI-CAM against the shuffled gray image (weights that cannot",
            "see the image), paired over images: what the weights' relation to the image adds.",
            "",
            *_head("map", *METRICS),
        ]
        for name, differences in study["minus_own_shuffle"].items():
            lines.append(_row(name, *(_cell(metric, differences.get(metric)) for metric in METRICS)))
    lines += ["", f"`{study['command']}`", ""]
    return "\n".join(lines)


def _largest_runs(studies: list[tuple[str, dict[str, Any]]], cpu_only: bool) -> dict[tuple[str, str], str]:
    """(model, map) -> the run that measured it on the most images (the first on a tie), over the CPU
    runs or every run."""
    largest: dict[tuple[str, str], tuple[int, str]] = {}
    for name, study in studies:
        if cpu_only and study["device"] != "cpu":
            continue
        for map_name in study["minus_channel_sum"]:
            key = (study["model"], map_name)
            if key not in largest or study["images"] > largest[key][0]:
                largest[key] = (study["images"], name)
    return {key: name for key, (_, name) in largest.items()}


def _head(*columns: str) -> list[str]:
    """A Markdown table's title row and rule."""
    return [_row(*columns), "|---" * len(columns) + "|"]


def _row(*cells: object) -> str:
    """A Markdown table row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _cell(metric: str, cell: dict[str, float] | None) -> str:
    """A paired difference as "mean ± half-width verdict", empty when not measured."""
    return f"{cell['mean']:+.3f} ± {cell['half_width']:.3f} {_verdict(metric, cell)}" if cell else ""


def _verdict(metric: str, cell: dict[str, float] | None) -> str:
    """A paired difference's verdict: "better" or "worse" when its 95 % interval leaves zero (the side
    says which, given the metric's direction), "≈" when it does not, "" when the pair was not measured
    or has no interval (one image)."""
    if not cell or cell["n"] < 2 or math.isnan(cell["half_width"]):
        return ""
    return {"better": "better", "worse": "worse"}.get(verdict(cell, HIGHER_IS_BETTER[metric]), "≈")


def summary_markdown(root: Path) -> str:
    """Every run folder under ``root`` in one table (one row per run and map, the six verdicts against the
    channel sum), then the tally of the MI estimators' verdicts: over the CPU runs per model and in all,
    against the 5 % of tests a 95 % interval leaves off zero by chance. Grad-CAM's rows (the yardstick)
    and the shuffled-gray maps (controls) stay out of the tally, and a map measured on the same model by
    several runs counts once, in the run with the most images (the first such folder on a tie), since
    those runs share their first images."""
    studies = [(folder.parent.name, read_json(folder)) for folder in sorted(root.glob("*/study.json"))]
    if not studies:
        raise SystemExit(f"{root}: no run folders (*/study.json) to summarize")
    lines = [
        "# Estimator study: every committed run",
        "",
        "Each map minus the unweighted channel sum of the same upsampling, paired over the run's images:",
        "better, worse or level (≈) at 95 % on each metric. Made by",
        f"`python scripts/estimator_study.py --summary {Path(os.path.relpath(root)).as_posix()}` from the runs'",
        "study.json files. Last column: which tallies below count the row (Grad-CAM is a control, the",
        "shuffled-gray maps are tallied apart; a map that another run measured on more images of the same",
        "model counts there: runs of one model read the same image list from its start, so a smaller run's",
        "images are among a larger one's).",
        "",
        *_head("run", "model", "images", "map", *METRICS, "corr. with sum", "MI kept when shuffled", "tallied"),
    ]
    counted_in = {scope: _largest_runs(studies, cpu_only=scope == "CPU") for scope in ("CPU", "every run")}
    tally: dict[str, dict[str, int]] = {}
    for name, study in studies:
        for map_name, differences in study["minus_channel_sum"].items():
            words = [_verdict(metric, differences.get(metric)) for metric in METRICS]
            means = study["means"][map_name]
            share = means["shuffled_share"]["mean"]
            scopes = [scope for scope, runs in counted_in.items() if runs.get((study["model"], map_name)) == name]
            if map_name == "grad-cam":
                keys, tallied = [], "control"
            elif map_name.endswith(SHUFFLED):  # the yardstick: weights that cannot see the image
                keys = [SHUFFLED_TALLY] if "every run" in scopes else []
                tallied = "shuffled yardstick" if keys else "no"
            else:
                keys = [f"CPU, {study['model']}", "CPU, every model"] if "CPU" in scopes else []
                keys += ["every run"] if "every run" in scopes else []
                tallied = " + ".join(scopes) or "no"
            lines.append(
                _row(
                    name,
                    study["model"],
                    study["images"],
                    map_name,
                    *words,
                    f"{means['channel_sum_correlation']['mean']:.3f}",
                    "" if math.isnan(share) else f"{share:.2f}",
                    tallied,
                )
            )
            for key in keys:
                counts = tally.setdefault(key, {"tests": 0, "better": 0, "worse": 0})
                counts["tests"] += sum(word != "" for word in words)
                counts["better"] += words.count("better")
                counts["worse"] += words.count("worse")
    twins = [
        _row(name, study["model"], study["images"], map_name, *(_verdict(m, differences.get(m)) for m in METRICS))
        for name, study in studies
        for map_name, differences in study.get("minus_own_shuffle", {}).items()
    ]
    if twins:
        lines += [
            "",
            "Each estimator's MI-CAM minus the same MI-CAM against the shuffled gray image (its weights'",
            "relation to the image), paired over the run's images: better, worse or level (≈) at 95 %.",
            "",
            *_head("run", "model", "images", "map", *METRICS),
            *twins,
        ]
    lines += [
        "",
        "Tally of the MI estimators' paired tests against the channel sum (Grad-CAM and the shuffled-gray",
        "maps, which are controls, left out). When",
        "nothing differs, a 95 % interval leaves zero in 5 % of tests, 2.5 % on each side. The tests are",
        "not independent: estimators that give almost the same map (binned-32 and normalized-32), metrics",
        "that move together (AD and area-matched AD) and runs that share images (the MobileNetV2 runs share",
        "their first 100) tend to leave zero together, so the chance count is a yardstick, not a test.",
        "",
        *_head("runs", "tests", "MI-CAM better", "MI-CAM worse", "off zero by chance (both sides)"),
    ]
    for key in sorted(tally, key=lambda k: (k == SHUFFLED_TALLY, k == "every run", k == "CPU, every model", k)):
        counts = tally[key]
        lines.append(_row(key, counts["tests"], counts["better"], counts["worse"], f"{0.05 * counts['tests']:.2f}"))
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    main()
