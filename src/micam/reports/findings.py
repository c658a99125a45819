"""What evaluation runs say about MI-CAM, read from their ``results.json``: ranks, best methods, paired
verdicts, the overview table across models, the paragraph over every model and the findings of one run.

Everything here is computed from the summaries a run wrote, so a sentence never says more than the
committed rows do. The results page (``results_page.py``) and ``micam report`` both read runs through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from micam.evaluation.compare import COMPARED_METRICS, verdict
from micam.evaluation.references import UNRANKED
from micam.evaluation.store import PAIRED_FOCUS
from micam.evaluation.tables import best_methods, decimals
from micam.metrics import METRIC_SPECS
from micam.plot import paired_differences_plot

FOCUS = PAIRED_FOCUS  # the method every run compares image by image with the others
NAMES = {column: spec.short for column, spec in METRIC_SPECS.items() if spec.short}  # "AD", "deletion", ...
# How the papers spell the methods, for sentences (a method missing here is shown by its key).
TITLES = {
    "mi-cam": "MI-CAM",
    "grad-cam": "Grad-CAM",
    "grad-cam++": "Grad-CAM++",
    "score-cam": "Score-CAM",
    "xgrad-cam": "XGrad-CAM",
    "eigen-cam": "Eigen-CAM",
}
_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MARKS = {"better": "+", "worse": "−"}  # anything else ("no significant difference") is "="
Results = dict[str, Any]  # one run's results.json


def real(results: Results) -> dict[str, dict[str, Any]]:
    """The run's methods without the reference maps, in table order."""
    return {m: s for m, s in results["methods"].items() if m not in UNRANKED}


def comparable(results: Results) -> bool:
    """Whether the run scored MI-CAM and another method on every compared metric it has, and has some
    (a sanity-only run has none; a run made before a metric existed lacks that one; MI-CAM made again
    alone, as in a ``same-device/`` folder, has nothing to be ranked against)."""
    own = results.get("methods", {}).get(FOCUS, {})
    present = [metric for metric in COMPARED_METRICS if metric in own]
    others = [m for m in real(results) if m != FOCUS]
    return bool(present and others) and all((own.get(metric) or {}).get("n") for metric in present)


def mean(results: Results, method: str, metric: str) -> float:
    return float(results["methods"][method][metric]["mean"])


def best(results: Results, metric: str) -> tuple[list[str], float]:
    """The best real method(s) on a metric, in table order, and their mean."""
    winners = best_methods(results["methods"], metric, COMPARED_METRICS[metric])
    names = [m for m in real(results) if m in winners]
    return names, mean(results, names[0], metric)


def rank(results: Results, metric: str) -> int:
    """MI-CAM's rank among the real methods on a metric (1 = best; ties share the better rank)."""
    higher = COMPARED_METRICS[metric]
    own = mean(results, FOCUS, metric)
    others = [float(s[metric]["mean"]) for m, s in real(results).items() if m != FOCUS and metric in s]
    return 1 + sum((v > own) if higher else (v < own) for v in others)


def verdicts(results: Results, metric: str) -> dict[str, str]:
    """Baseline -> paired verdict for MI-CAM on one metric, in table order ("better", "worse", or
    "no significant difference")."""
    differences = (results.get("paired") or {}).get("differences") or {}
    higher = COMPARED_METRICS[metric]
    return {m: verdict(differences[m][metric], higher) for m in real(results) if m != FOCUS and m in differences}


def mark(outcome: str) -> str:
    """A paired verdict as one character: ``+`` MI-CAM better, ``−`` worse, ``=`` no significant difference."""
    return _MARKS.get(outcome, "=")


def formatted(metric: str, value: float) -> str:
    """A metric's value with the decimals of every table."""
    return f"{value:.{decimals(metric)}f}"


def words(count: int) -> str:
    """A small count in words ("six"), a larger one in digits."""
    return _WORDS[count] if 0 <= count < len(_WORDS) else str(count)


def listed(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _baselines(runs: list[Results]) -> list[str]:
    """Every real method other than MI-CAM over the runs, in table order."""
    return list(dict.fromkeys(m for results in runs for m in real(results) if m != FOCUS))


def overview_title(runs: list[Results]) -> str:
    return f"At a glance: MI-CAM against the {words(len(_baselines(runs)))} baselines"


def shared_metrics(runs: list[Results]) -> dict[str, bool]:
    """The compared metrics (column -> higher is better) that every run has for MI-CAM (runs made
    before a metric existed lack it)."""
    return {
        metric: higher
        for metric, higher in COMPARED_METRICS.items()
        if all(metric in (results["methods"].get(FOCUS) or {}) for results in runs)
    }


def overview(runs: list[Results]) -> list[str]:
    """The table of MI-CAM's mean, rank and paired verdicts per metric and model, and the paragraph over
    every model (Markdown lines, without a heading: ``overview_title`` gives one)."""
    baselines = _baselines(runs)
    metrics = shared_metrics(runs)
    lines = [
        f"Per metric: MI-CAM's mean, its rank among the {words(len(baselines) + 1)} methods (1 = best), and the"
        " paired verdict against",
        "each baseline (image-by-image differences, 95 % CI; `+` MI-CAM better, `−` worse, `=` no significant",
        f"difference), in the order {', '.join(TITLES.get(m, m) for m in baselines)}.",
        "",
        "| model (images) | " + " | ".join(f"{NAMES[m]} {'↑' if up else '↓'}" for m, up in metrics.items()) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for results in runs:
        cells = []
        for metric in metrics:
            marks = "".join(mark(v) for v in verdicts(results, metric).values())
            fewer = _fewer_images(results, metric)
            cells.append(
                f"{formatted(metric, mean(results, FOCUS, metric))} (#{rank(results, metric)}, {marks}"
                + (f"; {fewer:,} images" if fewer else "")
                + ")"
            )
        lines.append(f"| {results['model']} ({results['n_images']:,}) | " + " | ".join(cells) + " |")
    partial = any(_fewer_images(results, metric) for results in runs for metric in metrics)
    note = [
        "A cell that names a number of images covers only those (a metric added to the run after it was made);",
        "the model's other cells cover every image in its row's count.",
        "",
    ]
    if not partial:
        note = []
    return [*lines, "", *note, *across(runs)]


def _fewer_images(results: Results, metric: str) -> int | None:
    """MI-CAM's image count on a metric when it is below the run's (an extension not yet complete)."""
    count = (results["methods"].get(FOCUS) or {}).get(metric, {}).get("n")
    return int(count) if count is not None and int(count) < int(results["n_images"]) else None


def across(runs: list[Results]) -> list[str]:
    """One paragraph over every model: MI-CAM's ranks and how its paired comparisons came out."""
    metrics = shared_metrics(runs)
    ranks = [rank(results, metric) for results in runs for metric in metrics]
    tally: dict[str, dict[str, int]] = {}
    for results in runs:
        for metric in metrics:
            for method, outcome in verdicts(results, metric).items():
                counts = tally.setdefault(method, {"better": 0, "worse": 0, "level": 0})
                counts[outcome if outcome in ("better", "worse") else "level"] += 1
    if not ranks or not tally:
        return []
    firsts = sum(r == 1 for r in ranks)
    per_method = "; ".join(
        f"{method} {c['better']} better / {c['worse']} worse / {c['level']} level" for method, c in tally.items()
    )
    return [
        f"Across the {len(runs)} models and {len(metrics)} metrics, MI-CAM ranks #{min(ranks)} to"
        f" #{max(ranks)} of {words(len(_baselines(runs)) + 1)} and is the best method in {firsts} of {len(ranks)}"
        f" cases. Its paired verdicts (MI-CAM better / worse / level, counted over models and metrics): {per_method}.",
        "",
    ]


def paired_figure(runs: list[Results], path: str | Path | None = None) -> Figure:
    """MI-CAM minus each baseline per metric and model with 95 % CIs (saved to ``path`` when given)."""
    differences = {
        r["model"]: {m: d for m, d in r["paired"]["differences"].items() if m not in UNRANKED}
        for r in runs
        if r.get("paired")
    }
    return paired_differences_plot(differences, shared_metrics(runs), NAMES, focus=FOCUS, path=path)


def findings(results: Results, supplement: Results | None = None) -> list[str]:
    """The bullet points of what one run's numbers say (``supplement``: a larger sanity check of its model)."""
    per_metric, wins, clear_wins = [], 0, 0
    methods, others = results["methods"], real(results)
    metrics = shared_metrics([results])
    for metric in metrics:
        winners, top = best(results, metric)
        wins += FOCUS in winners
        said = verdicts(results, metric)
        labels = {"better": "better than", "worse": "worse than"}
        groups: dict[str, list[str]] = {"better than": [], "worse than": [], "level with": []}
        for name, outcome in said.items():
            groups[labels.get(outcome, "level with")].append(name)
        clear_wins += bool(said) and all(v == "better" for v in said.values())
        paired = "; ".join(f"{label} {', '.join(names)}" for label, names in groups.items() if names)
        per_metric.append(
            f"{NAMES[metric]} {formatted(metric, mean(results, FOCUS, metric))} (#{rank(results, metric)}; best"
            f" {'/'.join(winners)} {formatted(metric, top)}; {paired or 'no paired rows'})"
        )
    lead = (
        f"**MI-CAM has the best mean of the {words(len(others))} methods on {wins} of {len(metrics)}"
        f" metrics here, and is significantly better than every baseline on {clear_wins}**"
        if wins
        else f"**MI-CAM is not the best of the {words(len(others))} methods on any metric here**"
    )
    found = [
        f"* {lead} (the paper claims it is best on all of them for VGG-16, which cannot be tested offline). "
        "Paired over images: " + "; ".join(per_metric) + "."
    ]
    names = list(others)
    twins = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if all(_close(methods[a][m]["mean"], methods[b][m]["mean"]) for m in metrics)
    ]
    for a, b in twins:
        found.append(
            f"* **{a} and {b} score the same on every metric here** (to 4 significant digits): their normalized"
            " maps agree up to float rounding."
        )
    centre = methods.get("centre-gaussian")
    if centre:
        pg = [s["pointing_game"]["mean"] for s in others.values()]
        ebpg = [s["ebpg"]["mean"] for s in others.values()]
        found.append(
            f"* **Centre bias:** a centre Gaussian that looks at nothing scores pointing game"
            f" {centre['pointing_game']['mean']:.3f} (methods {min(pg):.3f}-{max(pg):.3f}) and EBPG"
            f" {centre['ebpg']['mean']:.2f} % (methods {min(ebpg):.2f}-{max(ebpg):.2f} %): localization on these"
            " images says little about a method."
        )
    random = methods.get("random")
    if random and random["deletion_auc"]["mean"] < min(s["deletion_auc"]["mean"] for s in others.values()):
        found.append(
            f"* **Deletion with per-pixel black removal rewards noise:** the random map has the best deletion AUC"
            f" ({random['deletion_auc']['mean']:.3f}), because scattered black pixels destroy the prediction faster"
            " than any contiguous region; insertion has no such artefact"
            f" (random {random['insertion_auc']['mean']:.3f})."
        )
    found += _counterfactual(results)
    if results.get("sanity"):
        sentence = "* **Sanity check:** " + sanity_sentence(results)
        if supplement:
            more = supplement["settings"]["sanity_images"]
            sentence += f" On the first {more} images: " + sanity_sentence(supplement)
        found.append(sentence)
    return found


def _counterfactual(results: Results) -> list[str]:
    """Which methods' weights ignore the input, and how far MI-CAM's move (Sec. 4.5)."""
    counterfactual = results.get("counterfactual") or {}
    constant = [m for m, g in counterfactual.items() if all(g[i]["relative_change"]["mean"] < 1e-9 for i in g)]
    found = []
    if constant:
        found.append(
            f"* **{listed(constant)}: weights that ignore the input** (counterfactual change exactly 0). The target"
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
    return found


def sanity_sentence(results: Results) -> str:
    """How much of each method's map survives randomizing every block (Spearman of the last stage)."""
    last = {m: rows[-1]["spearman"] for m, rows in results["sanity"].items() if rows}
    kept = [m for m, v in last.items() if v > 0.5]
    n = results["settings"]["sanity_images"]
    return (
        "after randomizing every block, the Spearman correlation with the original map is "
        + ", ".join(f"{m} {v:.2f}" for m, v in last.items())
        + (
            f"; {listed(kept)} {'keeps' if len(kept) == 1 else 'keep'} more than 0.5 of it and would fail the"
            f" check (on {n} images)."
            if kept
            else f"; every method loses most of its similarity, as it should (on {n} images)."
        )
    )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b), 1e-12)
