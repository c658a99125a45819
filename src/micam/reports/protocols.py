"""The paper's claims under two protocols: one table per model with the paper's numbers, a run under
the authors' protocol (``micam evaluate --protocol authors``) and one under the paper's stated
definitions, each with MI-CAM's paired verdicts against the baselines, and which claims hold.

A claim is one pair the paper's table orders: "MI-CAM scores better than Grad-CAM on AD". It holds
under a protocol when the paired difference over images says the same with 95 % confidence, is
reversed when it says the opposite, and is open otherwise. MI-CAM's controls (the channel sum and
MI-CAM on a shuffled gray image) get their own verdicts: weights that matter beat both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from micam.evaluation.compare import COMPARED_METRICS, verdict
from micam.evaluation.files import RESULTS
from micam.methods import CONTROLS
from micam.reports.findings import FOCUS, NAMES, Results, formatted, listed, mark, mean, rank, real, verdicts

PROTOCOL_TITLES = {"authors": "authors' protocol", "stated": "stated protocol"}
PAPER_METRICS = ("average_drop", "average_increase", "deletion_auc", "insertion_auc", "pointing_game", "ebpg")


@dataclass(frozen=True)
class PaperTable:
    """Numbers quoted from the paper: ``values[metric][method]``, under ``source`` ("VGG-16, Table 1")."""

    source: str
    values: Mapping[str, Mapping[str, float]]


def protocol_runs(runs: Path, model: str, protocols: Sequence[str] = ("authors", "stated")) -> dict[str, Results]:
    """The model's committed runs by protocol: the stated one in ``runs/<model>/``, any other in
    ``runs/<protocol>/<model>/`` (those present)."""
    found = {}
    for protocol in protocols:
        path = runs / model / RESULTS if protocol == "stated" else runs / protocol / model / RESULTS
        if path.exists():
            found[protocol] = json.loads(path.read_text())
    return found


def paper_claims(paper: PaperTable, metric: str) -> dict[str, str]:
    """Baseline -> "better" / "worse": how the paper's numbers place MI-CAM against it on ``metric``."""
    values, higher = paper.values.get(metric) or {}, COMPARED_METRICS[metric]
    if FOCUS not in values:
        return {}
    own = values[FOCUS]
    return {m: ("better" if (own > v) == higher else "worse") for m, v in values.items() if m != FOCUS and v != own}


def claim_outcomes(claims: Mapping[str, str], said: Mapping[str, str]) -> dict[str, int]:
    """How many of the paper's pairwise claims the paired verdicts confirm, reverse or leave open."""
    counts = {"hold": 0, "reversed": 0, "open": 0}
    for method, claimed in claims.items():
        found = said.get(method)
        if found == claimed:
            counts["hold"] += 1
        elif found in ("better", "worse"):
            counts["reversed"] += 1
        else:
            counts["open"] += 1
    return counts


def _paper_for(papers: Sequence[PaperTable], metric: str) -> PaperTable | None:
    """The first of the paper's tables that quotes MI-CAM on ``metric``."""
    return next((p for p in papers if FOCUS in (p.values.get(metric) or {})), None)


def _paper_rank(paper: PaperTable, metric: str) -> int:
    values, higher = paper.values[metric], COMPARED_METRICS[metric]
    own = values[FOCUS]
    return 1 + sum((v > own) if higher else (v < own) for m, v in values.items() if m != FOCUS)


def _run_cell(results: Results, metric: str) -> str:
    own = results["methods"].get(FOCUS, {}).get(metric)
    if not own or not own.get("n"):
        return "—"
    marks = "".join(mark(v) for v in verdicts(results, metric).values())
    return f"{formatted(metric, mean(results, FOCUS, metric))} (#{rank(results, metric)}, {marks})"


def _outcome_cell(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "—"
    parts = [f"{counts['hold']} of {total} hold"]
    parts += [f"{counts[k]} {k}" for k in ("reversed", "open") if counts[k]]
    return ", ".join(parts)


def protocol_table(model: str, runs: Mapping[str, Results], papers: Sequence[PaperTable]) -> list[str]:
    """One model's table: per metric, the paper's MI-CAM (rank) and each protocol's MI-CAM (rank,
    paired verdicts against each baseline) with how many of the paper's claims hold under it."""
    protocols = list(runs)
    header = "| metric | paper: MI-CAM (rank) | " + " | ".join(
        f"{PROTOCOL_TITLES.get(p, p)} ({runs[p]['n_images']:,} images) | claims, {PROTOCOL_TITLES.get(p, p)}"
        for p in protocols
    )
    lines = [header + " |", "|---" * (2 + 2 * len(protocols)) + "|"]
    for metric in PAPER_METRICS:
        paper = _paper_for(papers, metric)
        quoted = (
            f"{formatted(metric, paper.values[metric][FOCUS])} (#{_paper_rank(paper, metric)}, {paper.source})"
            if paper
            else "—"
        )
        claims = paper_claims(paper, metric) if paper else {}
        cells = []
        for protocol in protocols:
            results = runs[protocol]
            present = metric in results["methods"].get(FOCUS, {})
            cells.append(_run_cell(results, metric) if present else "—")
            cells.append(_outcome_cell(claim_outcomes(claims, verdicts(results, metric))) if present else "—")
        arrow = "↑" if COMPARED_METRICS[metric] else "↓"
        lines.append(f"| {NAMES[metric]} {arrow} | {quoted} | " + " | ".join(cells) + " |")
    return lines


def controls_table(runs: Mapping[str, Results]) -> list[str]:
    """Per metric and protocol: MI-CAM against the channel sum and the shuffled-gray MI-CAM (MI-CAM's
    mean minus the control's, with the verdict), and MI-CAM's mean correlation with the channel sum."""
    having = {p: r for p, r in runs.items() if any(c in r["methods"] for c in CONTROLS)}
    if not having:
        return []
    columns = [(p, c) for p in having for c in CONTROLS]
    lines = [
        "| metric | "
        + " | ".join(f"{PROTOCOL_TITLES.get(p, p)}: vs {c} ({_n(having[p], c)} images)" for p, c in columns)
        + " |",
        "|---" * (1 + len(columns)) + "|",
    ]
    metrics = [m for m in COMPARED_METRICS if any(m in r["methods"].get(FOCUS, {}) for r in having.values())]
    for metric in metrics:
        cells = []
        for protocol, control in columns:
            difference = ((having[protocol].get("paired") or {}).get("differences") or {}).get(control, {}).get(metric)
            cells.append(control_cell(difference or {}, metric))
        arrow = "↑" if COMPARED_METRICS[metric] else "↓"
        lines.append(f"| {NAMES[metric]} {arrow} | " + " | ".join(cells) + " |")
    correlations = [
        f"{PROTOCOL_TITLES.get(p, p)} {r['methods'][FOCUS]['channel_sum_correlation']['mean']:.3f}"
        for p, r in having.items()
        if (r["methods"].get(FOCUS, {}).get("channel_sum_correlation") or {}).get("n")
    ]
    if correlations:
        said = "; ".join(correlations)
        lines += ["", f"MI-CAM's map correlates with the channel sum's, mean over images: {said}."]
    return lines


def control_cell(difference: Mapping[str, float | int], metric: str) -> str:
    """MI-CAM minus a control: mean ± 95 % half-width and the verdict's mark, or "—" without images."""
    if not difference or not difference.get("n"):
        return "—"
    said = mark(verdict(difference, COMPARED_METRICS[metric]))
    return (
        f"{formatted(metric, float(difference['mean']))} ± {formatted(metric, float(difference['half_width']))} {said}"
    )


def _n(results: Results, method: str) -> str:
    summary = results["methods"].get(method, {}).get("average_drop") or {}
    return f"{int(summary.get('n', 0)):,}"


def claims_paragraph(per_model: Mapping[str, tuple[Mapping[str, Results], Sequence[PaperTable]]]) -> list[str]:
    """Which of the paper's claims hold under which protocol, per metric over the models, in all, and
    where its Table 2 pattern (deletion AUC above insertion AUC for every method) appears."""
    lines = []
    for protocol in ("authors", "stated"):
        said, held, counted = [], 0, 0
        for metric in PAPER_METRICS:
            tally = {"hold": 0, "reversed": 0, "open": 0}
            for runs, papers in per_model.values():
                results = runs.get(protocol)
                paper = _paper_for(papers, metric)
                if results is None or paper is None or metric not in results["methods"].get(FOCUS, {}):
                    continue
                for key, count in claim_outcomes(paper_claims(paper, metric), verdicts(results, metric)).items():
                    tally[key] += count
            total = sum(tally.values())
            held, counted = held + tally["hold"], counted + total
            if total:
                said.append(f"{NAMES[metric]} {tally['hold']} of {total} hold ({tally['reversed']} reversed)")
        if not said:
            continue
        pattern = [
            model
            for model, (runs, _) in per_model.items()
            if protocol in runs and _deletion_above_insertion(runs[protocol])
        ]
        lines.append(
            f"* **Under the {PROTOCOL_TITLES[protocol]}, {held} of the paper's {counted} claims hold:** "
            + "; ".join(said)
            + f". Deletion AUC above insertion AUC for every method, as in the paper's Table 2: {listed(pattern)}."
        )
    return lines


def _deletion_above_insertion(results: Results) -> bool:
    methods = [s for m, s in real(results).items() if "deletion_auc" in s and "insertion_auc" in s]
    return bool(methods) and all(s["deletion_auc"]["mean"] > s["insertion_auc"]["mean"] for s in methods)


__all__ = [
    "PAPER_METRICS",
    "PROTOCOL_TITLES",
    "PaperTable",
    "claim_outcomes",
    "claims_paragraph",
    "controls_table",
    "paper_claims",
    "protocol_runs",
    "protocol_table",
]
