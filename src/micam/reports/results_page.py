"""A Markdown results page from a folder of committed evaluation runs, ``RUNS/<model>/``.

``collect`` copies what ``micam evaluate`` wrote into ``RUNS/<model>/`` (a run under another protocol than
the stated one into ``RUNS/<protocol>/<model>/``; CSV, JSON, results.md; curves.csv gzipped) and draws
the mean deletion/insertion curves; ``page`` writes every table and every sentence of
the page from those files (the cross-run reading is ``findings.py``), so the page never says more than the
committed rows do. What is particular to a project (model order and titles, quoted numbers, the commands
shown) is a ``PageContent``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from micam.evaluation.files import (
    ADDED,
    COUNTERFACTUAL,
    CURVES,
    PER_IMAGE,
    REPORT,
    RESULTS,
    SANITY,
    SETTINGS,
    SKIPPED,
)
from micam.evaluation.references import UNRANKED
from micam.evaluation.settings import ALL_METHODS, earlier_flags
from micam.evaluation.tables import markdown_report
from micam.plot import deletion_insertion_plot
from micam.reports.findings import (
    NAMES,
    Results,
    findings,
    listed,
    overview,
    overview_title,
    paired_figure,
    real,
    words,
)
from micam.reports.protocols import PaperTable, claims_paragraph, controls_table, protocol_runs, protocol_table
from micam.reports.same_device import SAME_DEVICE, check_same_settings, same_device_lines

SANITY_SUPPLEMENT = "sanity"  # RUNS/<model>/sanity/: the sanity check on more images, made apart
COPIED = (PER_IMAGE, COUNTERFACTUAL, SANITY, SKIPPED, SETTINGS, RESULTS)
# RUNS/<model>/<folder>/ of a run made apart from the main one -> the rows it keeps there
MADE_APART = {SANITY_SUPPLEMENT: SANITY, SAME_DEVICE: PER_IMAGE}
RECHECK = "recheck.json"  # scripts/recheck.py's output: a few images made again on another device
FIGURE = "paired-differences.png"  # RUNS/paired-differences.png, under the overview


@dataclass(frozen=True)
class PageContent:
    """What the page says that the runs do not: its title and introduction, the model order and titles,
    numbers quoted from the paper (by table: "Table 1", ...), environment lines a model's commands need,
    and how the data, the runs folder and the page's own script are spelled in the commands shown."""

    title: str
    intro: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    titles: Mapping[str, str] = field(default_factory=dict)
    paper: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)  # model -> "NAME=value"
    # model -> the paper's tables its claims are read from, first match per metric (protocols section)
    paper_tables: Mapping[str, tuple[PaperTable, ...]] = field(default_factory=dict)
    data: str = "annotations.json"
    runs_shown: str = "docs/results"
    script: str = "python scripts/results_page.py"


def collect(out: Path, runs: Path, logs: list[Path], sanity_only: bool = False, same_device: bool = False) -> Path:
    """Copy the run in ``out`` into ``runs/<model>/`` (or its ``sanity/`` with ``sanity_only``, its
    ``same-device/`` with ``same_device``: MI-CAM's rows made again on the controls' device)."""
    results = json.loads((out / RESULTS).read_text())
    protocol = results["settings"].get("protocol", "stated")
    target = runs / str(results["model"]) if protocol == "stated" else runs / protocol / str(results["model"])
    apart = SAME_DEVICE if same_device else SANITY_SUPPLEMENT if sanity_only else None
    if apart is not None:  # made apart from the main run: only its rows and what says how they were made
        if same_device:
            check_same_settings(target, out)
        target = target / apart
        target.mkdir(parents=True, exist_ok=True)
        for path in (out / MADE_APART[apart], out / SETTINGS, out / RESULTS, *logs):
            shutil.copyfile(path, target / path.name)
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in (*COPIED, REPORT, ADDED):
        if (out / name).exists():  # a run without a sanity check or gained columns has no such file
            shutil.copyfile(out / name, target / name)
    _gzip_unless_unchanged(out / CURVES, target / f"{CURVES}.gz")
    for log in logs:
        shutil.copyfile(log, target / log.name)
    curves = {m: c for m, c in results["mean_curves"].items() if c.get("n")}
    deletion_insertion_plot(curves, target / "deletion-insertion.png")
    return target


def _gzip_unless_unchanged(source: Path, target: Path) -> None:
    """Gzip ``source`` to ``target``, unless ``target`` already holds the same bytes (gzip stamps the
    time into its header: rewriting unchanged curves would make a new binary file to commit)."""
    if target.exists():
        with source.open("rb") as new, gzip.open(target, "rb") as old:
            while (chunk := new.read(1 << 20)) == old.read(len(chunk) or 1):
                if not chunk:
                    return
    with source.open("rb") as plain, gzip.open(target, "wb", compresslevel=9) as sink:
        shutil.copyfileobj(plain, sink)


def load_runs(runs: Path, order: tuple[str, ...] = ()) -> list[Results]:
    """The results.json of every ``runs/<model>/``: the models of ``order`` first, the others by name."""
    present = [p.name for p in sorted(runs.iterdir()) if (p / RESULTS).exists()]
    models = [m for m in order if m in present] + [m for m in present if m not in order]
    return [json.loads((runs / m / RESULTS).read_text()) for m in models]


def write_page(runs: Path, path: Path, content: PageContent) -> Path:
    """Write the page to ``path`` and its figure to ``runs/paired-differences.png``."""
    path.write_text(page(runs, path, content))
    paired_figure(load_runs(runs, content.order), path=runs / FIGURE)
    return path


def page(runs: Path, path: Path, content: PageContent) -> str:
    """The page's Markdown; ``path`` is where it goes (its links to the figures are relative to it)."""
    loaded = load_runs(runs, content.order)
    figures = Path(os.path.relpath(runs, path.parent)).as_posix()
    lines = [
        f"# {content.title}",
        "",
        *([*content.intro, ""] if content.intro else []),
        f"## {overview_title(loaded)}",
        "",
        *overview(loaded),
        f"![MI-CAM minus each baseline, per metric and model]({figures}/{FIGURE})",
        "",
        "Each point: MI-CAM minus one baseline on one model, mean over images ± 95 % CI, signed so that right of",
        "the line means MI-CAM is better (AD and deletion, where lower is better, are flipped).",
        "",
    ]
    lines += _protocols(runs, loaded, content)
    for results in loaded:
        lines += _Section(results, runs, figures, content).lines()
    return "\n".join(lines).rstrip() + "\n"


def _protocols(runs: Path, loaded: list[Results], content: PageContent) -> list[str]:
    """The paper's claims under the authors' protocol and the stated one, one table per model (where an
    authors' run is committed), with MI-CAM against its controls."""
    per_model = {}
    for results in loaded:
        model = results["model"]
        found = protocol_runs(runs, model)
        if "authors" in found:
            per_model[model] = (found, content.paper_tables.get(model, ()))
    if not per_model:
        return []
    lines = [
        "## The paper's claims under two protocols",
        "",
        "The authors' published scripts differ from the paper's stated definitions (see",
        "`micam.evaluation.settings.PROTOCOLS`): the model sees raw 0-255 pixels, deletion and insertion index",
        "the flattened 224 x 224 x 3 image with the ranks of a 224 x 224 map, AI's baseline keeps the pixels",
        "where the map is 0, MI-CAM grays an 8-bit image, and the pointing game has no tolerance. `micam evaluate",
        "--protocol authors` emulates each of these steps. Per metric and protocol: MI-CAM's mean, its rank of",
        "the six methods and its paired verdicts against Grad-CAM, Grad-CAM++, Score-CAM, XGrad-CAM and",
        "Eigen-CAM (`+` better, `−` worse, `=` no significant difference, 95 % CI); a *claim* is one ordering",
        "of MI-CAM and a baseline in the paper's table, and it *holds* when the paired verdict says the same.",
        "The paper's numbers are for VGG-16 (and MobileNet, Table 5), which cannot be run offline here.",
        "",
        *_coverage(per_model),
        *claims_paragraph(per_model),
        "",
    ]
    for model, (found, papers) in per_model.items():
        authors = found["authors"]
        lines += [
            f"### {content.titles.get(model, model)}",
            "",
            *_authors_status(authors, content),
            "",
            *protocol_table(model, found, papers),
            "",
        ]
        controls = controls_table(found)
        if controls:
            lines += [
                "MI-CAM against its controls (MI-CAM minus the control, mean ± 95 % CI over images, and the verdict):",
                "",
                *controls,
                "",
            ]
        lines += [
            "```bash",
            *([f"export {content.environment[model]}"] if model in content.environment else []),
            f"micam evaluate --data {content.data} --model {model} --protocol authors \\",
            f"    --counterfactual-images 0 --sanity-images 0 --out eval-{model}-authors --resume",
            "```",
            "",
            *_same_device(runs, model, content),
        ]
    return lines


def _same_device(runs: Path, model: str, content: PageContent) -> list[str]:
    """The model's MI-CAM made again on its controls' device, paired with them (``same_device_lines``)."""
    shown = f"{content.runs_shown}/{model}"
    return same_device_lines(runs / model, shown, content.data, content.script, content.environment.get(model))


CPU_MINIMUM_IMAGES = 300  # issue 15: the authors' protocol runs cover at least this many images where no GPU is lent


def _coverage(per_model: Mapping[str, tuple[Mapping[str, Results], Any]]) -> list[str]:
    """How many images each authors' protocol run has, on which devices, and what an open claim means
    while they are few."""
    counts = {model: runs["authors"]["n_images"] for model, (runs, _) in per_model.items()}
    requested = max(_available(runs["authors"]) for runs, _ in per_model.values())
    if all(n >= requested for n in counts.values()):
        return []
    listed_counts = ", ".join(f"{model} {n:,}" for model, n in counts.items())
    devices = sorted({r["device_name"] for runs, _ in per_model.values() for r in runs["authors"].get("runs") or []})
    on_cpu_only = bool(devices) and all(d.startswith("CPU") for d in devices)
    scope = (
        f"made on the CPU alone, no GPU having been lent long enough; the first {CPU_MINIMUM_IMAGES} per model is the "
        "scope set for a CPU-only machine, and `PROTOCOL=authors scripts/gpu_run.sh` finishes them on a GPU"
        if on_cpu_only and min(counts.values()) >= CPU_MINIMUM_IMAGES
        else f"made on {' and '.join(devices) or 'no recorded device'}"
    )
    return [
        f"The authors' protocol runs cover part of the shared images (so far: {listed_counts}, of {requested:,};",
        f"{scope}). With this few images many paired verdicts are `=`, so an *open* claim there is undecided, not",
        "refuted. The runs go on with the command under each table.",
        "",
    ]


def _authors_status(results: Results, content: PageContent) -> list[str]:
    done, requested = results["n_images"], _available(results)
    devices = sorted({r["device_name"] for r in results.get("runs") or []})
    what = f"the first {done:,} of the {requested:,} shared images" if done < requested else f"all {done:,} images"
    return [
        f"Authors' protocol run: {what} (the first entries of `{content.data}` in file order, not chosen),",
        f"in {results['wall_time_s']:.0f} s on {' and '.join(devices)}; rows in "
        f"`{content.runs_shown}/authors/{results['model']}/`. Stated protocol: the run of this model's section below.",
    ]


def sections_of(report: str) -> dict[str, str]:
    """The "## " sections of a results.md, by title, each demoted one level."""
    found: dict[str, str] = {}
    for chunk in report.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        found[title] = f"### {title}\n{body.rstrip()}\n"
    return found


def _available(results: Results) -> int:
    """The images of the run's data (a run made with --limit counts against all of them)."""
    return int(results.get("n_available") or results.get("n_requested") or results["n_images"])


def _status(results: Results) -> str:
    done, requested = results["n_images"], _available(results)
    return f"{done:,} of the {requested:,} shared images" if done < requested else f"all {done:,} shared images"


class _Section:
    """One model's part of the page."""

    def __init__(self, results: Results, runs: Path, figures: str, content: PageContent) -> None:
        self.results, self.content, self.figures = results, content, figures
        self.model: str = results["model"]
        self.folder = runs / self.model
        self.shown = f"{content.runs_shown}/{self.model}"  # the run folder as the page names it
        supplement = self.folder / SANITY_SUPPLEMENT / RESULTS
        self.supplement: Results | None = json.loads(supplement.read_text()) if supplement.exists() else None
        # the section on the two protocols shows MI-CAM made again on one device where it covers the model
        self.in_protocols = "authors" in protocol_runs(runs, self.model)

    def environment(self) -> list[str]:
        """The line exporting what the model's command needs, if anything."""
        exported = self.content.environment.get(self.model)
        return [f"export {exported}"] if exported else []

    def lines(self) -> list[str]:
        results, model, content = self.results, self.model, self.content
        s, sessions = results["settings"], results.get("runs") or []
        devices = {(r["device_name"], r["torch"]) for r in sessions}
        unfinished = results["n_images"] < _available(results)
        lines = [f"## {content.titles.get(model, model)} — {_status(results)}", ""]
        if unfinished:
            lines += [
                f"**Unfinished: {results['n_images']:,} images so far.** They are the first entries of",
                f"`{content.data}` in file order (not chosen); each has all six methods,",
                "the two reference maps and every metric. The run goes on with `--resume` (below).",
                "",
            ]
        lines += [
            *self._wall_time(),
            "",
            *self._extension(),
            *self._recheck(),
            "```bash",
            *self.environment(),
            f"micam evaluate --data {content.data} --model {model} \\",
            f"    --out eval-{model} --counterfactual-images {s['counterfactual_images']} "
            f"--sanity-images {s['sanity_images']}{''.join(f' {flag}' for flag in earlier_flags(s))} --resume",
            "```",
            "",
            self._settings(len(devices) > 1),
            "",
        ]
        for title, body in sections_of(markdown_report(results)).items():
            if title == "Time" and len(devices) > 1:
                continue
            if title.startswith("Sanity"):
                body = body.replace("\n\n", f"\n\nOn the first {s['sanity_images']} image(s) of the data. ", 1)
            lines.append(body)
            if title.startswith("Sanity") and self.supplement:
                lines += self._supplement_section(self.supplement)
            key = title.split(" —")[0]
            if key in content.paper:
                lines += [content.paper[key], ""]
            if key == "Table 2":
                lines += [f"![Mean deletion and insertion curves]({self.figures}/{model}/deletion-insertion.png)", ""]
        lines += ["### What these numbers say", "", *findings(results, self.supplement), ""]
        return lines + (self._resume() if unfinished else [])

    def _extension(self) -> list[str]:
        """What the run gained after it was made (methods, metric columns) and on how many images."""
        base = self.results.get("extension")
        if not base:
            return []
        methods = [m for m in self.results["methods"] if m not in base["methods"]]
        groups = [g for g in self.results["settings"]["metrics"] if g not in base["metrics"]]
        extended = sum(r.get("extended", 0) for r in self.results.get("runs") or [])
        sizes = {
            s["average_drop"]["n"] for m, s in self.results["methods"].items() if m in methods and "average_drop" in s
        }
        return [
            f"**Extended** after it was made, its earlier rows kept byte for byte: {listed(methods)} (every metric)"
            f" and the metric groups {listed(groups)} (for every method; columns in"
            f" `{self.shown}/{ADDED}`), on the first {max(sizes, default=extended):,} images so far. Rows marked"
            ' "(first N images)" below cover those images; the others cover all of them. The extension goes on'
            " with the run's own command (below) plus `--methods all --metrics default --limit N`."
            + (
                f" MI-CAM's rows made again on the controls' device are in `{self.shown}/{SAME_DEVICE}/`; "
                + ("the section on the two protocols pairs" if self.in_protocols else "the table below pairs")
                + " them with the controls (a pair across devices carries their float differences)."
                if (self.folder / SAME_DEVICE / PER_IMAGE).exists()
                else ""
            ),
            "",
            *([] if self.in_protocols else _same_device(self.folder.parent, self.model, self.content)),
        ]

    def _wall_time(self) -> list[str]:
        results = self.results
        sessions = results.get("runs") or []
        listed_sessions = "; ".join(
            f"{r['images']:,} images"
            + (f" and the gained methods / metrics of {r['extended']:,} earlier ones" if r.get("extended") else "")
            + f" in {r['seconds']:.1f} s on {r['device_name']} (torch {r['torch']})"
            for r in sessions
        )
        cpu = [r for r in sessions if r["device_name"].startswith("CPU") and r["images"] and not r.get("extended")]
        per_image = (
            f" On the 2-core CPU: {sum(r['seconds'] for r in cpu) / sum(r['images'] for r in cpu):.1f} s per image"
            " on average: all eight maps and every metric, with the sanity check and the counterfactual"
            " analysis (made once per run) included."
            if cpu
            else ""
        )
        return [
            f"Wall time {results['wall_time_s']:.1f} s in "
            + (
                f"{len(sessions)} sessions of one resumed run (finished images are never recomputed)"
                if len(sessions) > 1
                else "one session"
            )
            + f": {listed_sessions}.{per_image} Top-1 accuracy of the model on these images:",
            f"{100 * results['top1_accuracy']['mean']:.1f} %. Skipped images: {results['skipped']['count']}.",
        ]

    def _settings(self, mixed_devices: bool) -> str:
        s = self.results["settings"]
        mi = s["mi_cam"]
        return (
            f"Settings (all in `{self.shown}/{RESULTS}`): target layer `{s['target_layer']}`; the"
            f" {s['target']} class is explained; scores are softmax {s['score']}; removed pixels become"
            f" {'black (0 before normalization)' if s['baseline'] == 'black' else s['baseline']}; {s['steps']} steps"
            f" of {100 // s['steps']} %; AD/AI threshold {s['threshold']}; pointing game at {s['tolerance']:g} px and"
            f" at 0 px; geometry `{s['geometry_used']}`; MI-CAM preset `{s['mi_preset']}` ({mi['estimator']} estimator"
            + (f", {mi['bins']} bins" if mi.get("bins") else "")
            + f", {mi['upsample_mode']} upsampling, gray of the {mi['gray_of']}). Cells: mean ± 95 %"
            f" CI half-width over images; bold = best of the {words(len(real(self.results)))} real methods."
            + (" The per-method time table is left out: it mixes devices." if mixed_devices else "")
        )

    def _recheck(self) -> list[str]:
        """A paragraph on how far one image's numbers depend on the device (scripts/recheck.py's output)."""
        path = self.folder / RECHECK
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
        exported = self.content.environment.get(self.model)
        return [
            f"**Across devices:** {len(check['images'])} images whose rows were made on {' and '.join(made_on)} were"
            f" made again on {check['recomputed_on']} (`{check['command']}`"
            + (f" with {exported.split('=')[0]} exported as below" if exported else "")
            + ", output in"
            f" `{self.shown}/{RECHECK}`). The predicted classes were"
            f" {'the same' if check['same_predictions'] else 'NOT the same'}; per-image differences, mean / largest"
            f" over images and methods: {differences}. They are float-arithmetic differences (GPU sessions ran with"
            " PyTorch's defaults, under which cuDNN may compute convolutions in TF32): a map value near the AD/AI"
            " threshold or a near-tie in the deletion order is enough to move one image's number.",
            "",
        ]

    def _supplement_section(self, supplement: Results) -> list[str]:
        """The table of the model's separate, larger sanity check (collect --sanity) and its command."""
        model, s = self.model, supplement["settings"]
        left_out = [m for m in ALL_METHODS if m not in s["methods"] and m not in UNRANKED]
        body = next(b for title, b in sections_of(markdown_report(supplement)).items() if title.startswith("Sanity"))
        rows = [line for line in body.splitlines() if line.startswith("|")]
        return [
            f"The same check on the first {s['sanity_images']} images, made apart"
            + (f" ({listed(left_out)} left out: its masked passes make it too slow on the CPU)" if left_out else "")
            + f"; rows in `{self.shown}/{SANITY_SUPPLEMENT}/`:",
            "",
            *rows,
            "",
            "```bash",
            *self.environment(),
            f"micam evaluate --data {self.content.data} --model {model} \\",
            f"    --methods {','.join(s['methods'])} --metrics sanity \\",
            f"    --limit {s['sanity_images']} --sanity-images {s['sanity_images']} --out sanity-{model}",
            f"{self.content.script} collect sanity-{model} --sanity && {self.content.script} page",
            "```",
            "",
        ]

    def _resume(self) -> list[str]:
        model, shown = self.model, self.shown
        return [
            "### Going on with this run",
            "",
            "The run resumes from the committed files on any device (the dataset is recognized by the SHA-256 of",
            "its annotation file; the device-dependent defaults of the first session carry over):",
            "",
            "```bash",
            f"mkdir -p eval-{model} && cp {shown}/{{per_image,counterfactual,sanity,skipped}}.csv \\",
            f"    {shown}/{{settings,results}}.json eval-{model}/ \\",
            f"    && gunzip -c {shown}/{CURVES}.gz > eval-{model}/{CURVES}",
            *self.environment(),
            f".venv/bin/micam evaluate --data {self.content.data} --model {model} \\",
            f"    --out eval-{model} --resume",
            f"{self.content.script} collect eval-{model} && {self.content.script} page",
            "```",
            "",
        ]
