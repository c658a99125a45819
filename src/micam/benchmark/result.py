"""What a benchmark run measured (``BenchmarkResult``), the ratios the issue sets targets for, and the
two files it is written as: ``benchmark.json`` (the result as is) and ``benchmark.md`` (the table)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

METHODS = (
    "forward",
    "trunk",
    "grad_cam",
    "score_cam",
    "score_cam_pgc",
    "mi_cam",
    "mi_cam_gpu",
    "mi_cam_authors",
    "mi_weights_authors",
    "authors",
)
LABELS = {
    "forward": "forward pass (full model)",
    "trunk": "forward to the target layer",
    "grad_cam": "Grad-CAM",
    "score_cam": "Score-CAM (micam)",
    "score_cam_pgc": "Score-CAM (pytorch-grad-cam 1.5.7)",
    "mi_cam": "MI-CAM (binned, bilinear)",
    "mi_cam_gpu": "MI-CAM, the GPU kernel (Triton)",
    "mi_cam_authors": 'MI-CAM preset="authors" (reference, nearest)',
    "mi_weights_authors": "its MI weights alone (activations recorded beforehand)",
    "authors": "authors' algorithm (sklearn loop, CPU)",
}


BENCHMARK_JSON = "benchmark.json"  # the files write_benchmark makes, named once
BENCHMARK_REPORT = "benchmark.md"


@dataclasses.dataclass
class BenchmarkResult:
    """One run: where it ran, and a row per (model, method, batch) cell. ``to_dict()`` is benchmark.json.

    A row holds model, method, batch, weights and skipped; a timed cell adds runs, median_s and
    images_per_s (the authors' algorithm also mi_loop_s), a skipped one its estimate_s.
    """

    command: str
    device: str
    torch: str
    python: str
    cpu_threads: int
    fused_kernels: bool
    size: int
    repeats: int
    wall_s: float
    notes: list[str]
    results: list[dict[str, Any]]
    authors_weight_checks: list[dict[str, Any]]  # MICAM(preset="authors") against the sklearn loop, batch 1
    # The GPU kernel's MI weights and maps against the default route's on the same batch (per model, batch),
    # and its weights against the CPU route's.
    gpu_kernel_checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ratios: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, one line per model: value, target, met."""
    times: dict[tuple[str, int], dict[str, float]] = {}
    loops: dict[tuple[str, int], float] = {}
    for row in results:
        if not row.get("skipped"):
            times.setdefault((row["model"], row["batch"]), {})[row["method"]] = row["median_s"]
            if "mi_loop_s" in row:
                loops[(row["model"], row["batch"])] = row["mi_loop_s"]
    lines: list[dict[str, Any]] = []

    def add(model: str, what: str, value: float | None, target: str, met: bool | None) -> None:
        lines.append({"model": model, "ratio": what, "value": value, "target": target, "met": met})

    for model in dict.fromkeys(m for m, _ in times):
        t1 = times.get((model, 1), {})
        mi = t1.get("mi_cam")
        for peer in ("score_cam", "score_cam_pgc"):
            if mi and peer in t1:
                value = t1[peer] / mi
                met = value >= 200 if model == "vgg16" else None
                add(model, f"{LABELS[peer]} / MI-CAM", value, ">= 200 (VGG-16)", met)
        if "mi_cam_authors" in t1 and "trunk" in t1 and (model, 1) in loops:
            # The definition; ill-conditioned where the MI step is smaller than the trunk's jitter.
            mi_time = max(t1["mi_cam_authors"] - t1["trunk"], 1e-9)
            value = loops[(model, 1)] / mi_time
            add(model, "authors' sklearn loop / (MI-CAM authors - trunk)", value, ">= 100", value >= 100)
        if "mi_weights_authors" in t1 and (model, 1) in loops:
            value = loops[(model, 1)] / t1["mi_weights_authors"]
            add(model, "authors' sklearn loop / MI-CAM authors' MI weights alone", value, ">= 100", value >= 100)
        bound = 1.0 if model == "vgg16" else 2.0
        for batch in sorted(b for (m, b) in times if m == model):  # the target holds at every batch size
            at = times[(model, batch)]
            if "mi_cam" in at and "grad_cam" in at:
                value = at["mi_cam"] / at["grad_cam"]
                label = "MI-CAM / Grad-CAM" + ("" if batch == 1 else f", batch {batch}")
                add(model, label, value, f"<= {bound}", value <= bound)
            if "mi_cam_gpu" in at and "grad_cam" in at:
                value = at["mi_cam_gpu"] / at["grad_cam"]
                label = f"MI-CAM (GPU kernel) / Grad-CAM, batch {batch}"
                add(model, label, value, "<= 1.5 (GPU, batch 32)", value <= 1.5 if batch == 32 else None)
        big = [b for (m, b) in times if m == model and b > 1 and "mi_cam" in times[(m, b)]]
        if mi and big:
            b = max(big)
            value = (b / times[(model, b)]["mi_cam"]) / (1 / mi)
            add(model, f"MI-CAM images/s, batch {b} / batch 1", value, ">= 1", value >= 1)
    return lines


def markdown(result: BenchmarkResult) -> str:
    """The side-by-side table: per model, each method's median time per batch size and images/s."""
    batches = sorted({row["batch"] for row in result.results})
    lines = [
        f"Device: {result.device}; torch {result.torch}, Python {result.python}; "
        f"input {result.size}x{result.size}; median of up to {result.repeats} runs after a warm-up "
        f"(cells slower than the budget: a single run); fused CPU kernels: {result.fused_kernels}; "
        f"whole run {result.wall_s:.0f} s.",
        "",
    ]
    lines += [f"- {note}" for note in result.notes]
    header = "| model | method | " + " | ".join(f"batch {b}: ms (runs) | batch {b}: img/s" for b in batches) + " |"
    lines += ["", header, "|" + "---|" * (2 + 2 * len(batches))]
    cells: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for entry in result.results:
        cells.setdefault((entry["model"], entry["method"]), {})[entry["batch"]] = entry
    for (model, method), by_batch in cells.items():
        parts = []
        for b in batches:
            row = by_batch.get(b)
            if row is None:
                parts += ["-", "-"]
            elif row.get("skipped"):
                parts += [f"skipped (est. {row['estimate_s']:.0f} s)", "-"]
            else:
                extra = f", MI loop {row['mi_loop_s'] * 1000:.0f}" if "mi_loop_s" in row else ""
                parts += [f"{row['median_s'] * 1000:.1f} ({row['runs']}{extra})", f"{row['images_per_s']:.2f}"]
        lines.append(f"| {model} | {LABELS[method]} | " + " | ".join(parts) + " |")
    lines += ["", "| model | ratio | value | target | met |", "|---|---|---|---|---|"]
    for line in result.ratios:
        value = "-" if line["value"] is None else f"{line['value']:.2f}"
        met = "-" if line["met"] is None else ("yes" if line["met"] else "**no**")
        lines.append(f"| {line['model']} | {line['ratio']} | {value} | {line['target']} | {met} |")
    if result.authors_weight_checks:
        lines += ["", "Same weights as the authors' loop (max relative difference, batch 1):"]
        lines += [f"- {c['model']}: {c['max_relative_difference']:.1e}" for c in result.authors_weight_checks]
    if result.gpu_kernel_checks:
        lines += ["", "The GPU kernel against the default route on the same batch (largest absolute difference):"]
        lines += [
            f"- {c['model']}, batch {c['batch']}: MI weights {c['max_weight_difference']:.1e} nats "
            f"(against the CPU route: {c['max_weight_difference_cpu']:.1e}), maps {c['max_map_difference']:.1e}"
            for c in result.gpu_kernel_checks
        ]
    return "\n".join(lines) + "\n"


def write_benchmark(result: BenchmarkResult, out: Path | str) -> tuple[Path, Path]:
    """``OUT/benchmark.json`` and ``OUT/benchmark.md`` (the folder is made); returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out / BENCHMARK_JSON, out / BENCHMARK_REPORT
    json_path.write_text(json.dumps(result.to_dict(), indent=2))
    markdown_path.write_text(markdown(result))
    return json_path, markdown_path
