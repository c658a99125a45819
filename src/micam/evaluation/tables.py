"""Markdown tables of an evaluation, laid out like the MI-CAM paper's Tables 1-3 (methods as rows).

Each cell is the mean ± the half-width of its 95 % confidence interval (t(0.975, n - 1) std / sqrt(n));
the best of the real methods is in bold (the reference maps are never bolded).
"""

from __future__ import annotations

import math
from typing import Any

from micam.evaluation.compare import COMPARED_METRICS, verdict
from micam.evaluation.references import UNRANKED
from micam.metrics import METRIC_SPECS, half_width
from micam.metrics.specs import TABLE_TITLES

# (title, [(metric key, column title, higher is better, display scale)]), from the metrics' specs
_TABLES: list[tuple[str, list[tuple[str, str, bool | None, float]]]] = [
    (
        title,
        [
            (c, m.title, m.higher_is_better if m.ranked else None, m.scale)
            for c, m in METRIC_SPECS.items()
            if m.table == table
        ],
    )
    for table, title in TABLE_TITLES.items()
]


def _cell(summary: dict[str, Any] | None, scale: float, digits: int) -> str:
    if not summary or summary.get("n", 0) == 0 or math.isnan(summary["mean"]):
        return "—"
    if summary["n"] < 2:
        return f"{summary['mean'] * scale:.{digits}f}"
    half = half_width(summary["std"], summary["n"])
    return f"{summary['mean'] * scale:.{digits}f} ± {half * scale:.{digits}f}"


def decimals(key: str) -> int:
    """Decimal places a metric is shown with in every table (its spec's)."""
    return METRIC_SPECS[key].decimals


def _sessions(runs: list[dict[str, Any]]) -> str:
    """ " Sessions: ..." when a resumed run was finished on more than one device or torch."""
    if len({(r.get("device_name"), r.get("torch")) for r in runs}) < 2:
        return ""
    parts = [f"{r['images']} images in {r['seconds']} s on {r['device_name']} (torch {r['torch']})" for r in runs]
    return " Sessions: " + "; ".join(parts) + "."


def markdown_report(results: dict[str, Any]) -> str:
    s = results["settings"]
    mi = s.get("mi_cam") or {}
    lines = [
        f"# micam evaluate: {results['model']} on {_image_count(results)}",
        "",
        f"Data `{s['data']}` ({s['dataset_kind']}, geometry {s['geometry_used']}), weights {s['weights']}, "
        f"target layer `{s['target_layer']}`, device {s.get('device_name') or s['device']}, torch {s['torch']}. "
        f"Explained class: {s['target']}; score: softmax {s['score']}. AD/AI threshold {s['threshold']}; "
        f"deletion/insertion {s['steps']} steps, baseline {s['baseline']}, insertion order {s['insertion_order']}"
        + (", AUC over k / steps (the rule before 2026-11-27)" if s.get("auc_x", "even") == "even" else "")
        + "; "
        + (
            f"protocol {s['protocol']} (input {s['input_scale']}, deletion/insertion indexing {s['pixel_indexing']}, "
            f"AI baseline {s['increase_baseline']}); "
            if s.get("protocol", "stated") != "stated"
            else ""
        )
        + f"pointing-game tolerance {s['tolerance']} px. "
        + (
            f"MI-CAM: {mi.get('estimator')} estimator"
            + (f" ({mi.get('bins')} bins)" if mi.get("bins") else "")
            + f", {mi.get('upsample_mode')} upsampling, gray of the {mi.get('gray_of')}. "
            if mi
            else ""
        ),
        "",
        f"Wall time {results['wall_time_s']} s; skipped images: {results['skipped']['count']}."
        + (
            f" Boxes skipped as invalid (never scored): {results['skipped']['invalid_boxes']}."
            if results["skipped"].get("invalid_boxes")
            else ""
        )
        + _sessions(results.get("runs") or [])
        + (
            f" Top-1 accuracy of the model on these images: {100 * results['top1_accuracy']['mean']:.1f} %."
            if results.get("top1_accuracy")
            else ""
        ),
        "Cells: mean ± 95 % CI half-width over images. `centre-gaussian` and `random` look at nothing: they show"
        " what the data's centre bias and chance alone score.",
        "",
    ]
    methods = results["methods"]
    for title, columns in _TABLES:
        present = [c for c in columns if any(c[0] in m for m in methods.values())]
        if not present:
            continue
        lines += [f"## {title}", "", "| method | " + " | ".join(c[1] for c in present) + " |"]
        lines.append("|---" * (len(present) + 1) + "|")
        best = {key: set() if higher is None else best_methods(methods, key, higher) for key, _, higher, _ in present}
        for name, summary in methods.items():
            cells = []
            for key, _, _, scale in present:
                text = _cell(summary.get(key), scale, decimals(key))
                cells.append(f"**{text}**" if name in best[key] and text != "—" else text)
            lines.append(
                f"| {_label(name, [summary.get(c[0]) for c in present], results['n_images'])} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
    lines += _paired_table(results.get("paired") or {}, results["n_images"])
    lines += _counterfactual_table(results.get("counterfactual") or {})
    lines += _sanity_table(results.get("sanity") or {})
    return "\n".join(lines).rstrip() + "\n"


def _label(name: str, summaries: list[dict[str, Any] | None], n_images: int) -> str:
    """A method's row name, with "(first N images)" where its values cover fewer images than the run
    (a run extended with methods or metrics on its first images only)."""
    counts = [int(s.get("n", 0)) + int(s.get("n_undefined", 0)) for s in summaries if s]
    covered = max(counts, default=n_images)
    return f"{name} (first {covered:,} images)" if 0 < covered < n_images else name


def _image_count(results: dict[str, Any]) -> str:
    """ "N images", or "N of M images (unfinished)" while a run has images left to do."""
    done, requested = results["n_images"], results.get("n_requested")
    skipped = (results.get("skipped") or {}).get("count", 0)
    if requested and done + skipped < requested:
        return f"{done} of {requested} images (unfinished: resume it with --resume)"
    return f"{done} images"


def best_methods(methods: dict[str, dict[str, Any]], key: str, higher: bool) -> set[str]:
    """The real methods with the best mean (all of them when tied)."""
    scored = {
        name: summary[key]["mean"]
        for name, summary in methods.items()
        if name not in UNRANKED and key in summary and summary[key]["n"] and not math.isnan(summary[key]["mean"])
    }
    if not scored:
        return set()
    top = max(scored.values()) if higher else min(scored.values())
    return {name for name, value in scored.items() if value == top}


def _paired_table(paired: dict[str, Any], n_images: int) -> list[str]:
    """Focus method minus each other method, image by image, with the verdict of each difference."""
    if not paired or not paired.get("differences"):
        return []
    focus, differences = paired["focus"], paired["differences"]
    metrics = [m for m in COMPARED_METRICS if m in next(iter(differences.values()))]
    titles = {key: title for _, columns in _TABLES for key, title, _, _ in columns}
    lines = [
        f"## {focus} minus each method, image by image",
        "",
        f"Mean of the per-image differences ({focus} − method) ± 95 % CI half-width, and what it means for"
        f" {focus}: `better`/`worse` when the interval excludes 0, `≈` otherwise. Paired differences are far"
        " tighter than the intervals of the tables above (an image hard for one method is hard for all).",
        "",
        "| method | " + " | ".join(titles.get(m, m) for m in metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for other, by_metric in differences.items():
        cells = []
        pairs = max((d["n"] for d in by_metric.values()), default=n_images)
        for metric in metrics:
            difference = by_metric[metric]
            word = {"better": "better", "worse": "worse"}.get(verdict(difference, COMPARED_METRICS[metric]), "≈")
            digits = decimals(metric)
            if difference["n"] == 0:
                cells.append("—")
            elif difference["n"] == 1:
                cells.append(f"{difference['mean']:+.{digits}f}")
            else:
                fewer = f" ({difference['n']:,} images)" if difference["n"] < pairs else ""
                cells.append(f"{difference['mean']:+.{digits}f} ± {difference['half_width']:.{digits}f} {word}{fewer}")
        name = f"{other} (first {pairs:,} images)" if 0 < pairs < n_images else other
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _counterfactual_table(counterfactual: dict[str, Any]) -> list[str]:
    if not counterfactual:
        return []
    lines = [
        "## Counterfactual analysis — how channel weights move under do(pixels := black)",
        "",
        "`object`: the pixels inside the ground-truth boxes are blacked out; `background`: those outside are."
        " Relative change = mean |Δw| / mean |w|; rank correlation = Spearman between the actual and the"
        " counterfactual weights (1 = same channel ordering).",
        "",
        "| method | object: relative change | object: rank corr. | background: relative change"
        " | background: rank corr. | n |",
        "|---|---|---|---|---|---|",
    ]
    for name, groups in counterfactual.items():
        obj, back = groups.get("object", {}), groups.get("background", {})
        n = (obj.get("relative_change") or {}).get("n", 0)
        lines.append(
            f"| {name} | {_cell(obj.get('relative_change'), 1, 3)} | {_cell(obj.get('rank_correlation'), 1, 3)} | "
            f"{_cell(back.get('relative_change'), 1, 3)} | {_cell(back.get('rank_correlation'), 1, 3)} | {n} |"
        )
    return [*lines, ""]


def _sanity_table(sanity: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not sanity:
        return []
    stages = next(iter(sanity.values()))
    last = len(stages) - 1
    picks = sorted({1, max(1, last // 4), max(1, last // 2), last}) if last >= 1 else [0]
    header = " | ".join(f"after `{stages[i]['layer']}` ({i})" for i in picks)
    lines = [
        "## Sanity check — cascading randomization from the output (Spearman / SSIM with the original map)",
        "",
        "Stage i = the top i blocks re-drawn at random. A map that depends on what the model learned should"
        " lose similarity as stages accumulate.",
        "",
        f"| method | {header} |",
        "|---" * (len(picks) + 1) + "|",
    ]
    for name, rows in sanity.items():
        cells = [f"{rows[i]['spearman']:.2f} / {rows[i]['ssim']:.2f}" for i in picks if i < len(rows)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]
