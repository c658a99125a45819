"""One self-contained HTML report of a results folder: settings, tables and figures, images inlined.

The page has no script and loads nothing from the network, so it opens the same way anywhere
(a browser, an e-mail attachment, an offline machine). It gathers, under the folder given:
* every ``results.json`` of ``micam evaluate`` (tables from its ``results.md``, deletion/insertion
  curves and the sanity-check similarities drawn from its numbers);
* every ``benchmark.md`` of ``micam benchmark``;
* every PNG in a ``figures`` folder (the paper's figure equivalents from ``micam reproduce``).
When the evaluations cover more than one model, an overview across them comes before them: MI-CAM's rank per
metric and model and its paired verdicts, the same table and paragraph as the results page
(``findings.py``), one per protocol (runs under the stated definitions and the authors' are never mixed).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from micam import __version__
from micam.benchmark.result import BENCHMARK_REPORT
from micam.evaluation.files import REPORT, RESULTS, write_atomically
from micam.evaluation.store import read_results
from micam.metrics.area_matched import AREA_PERCENTAGES
from micam.plot import area_matched_plot, deletion_insertion_plot
from micam.reports.findings import comparable, overview, overview_title, paired_figure
from micam.runtime import output_folder

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1180px;
       color: #1d1d1f; background: #ffffff; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.7rem; border-bottom: 3px solid #3b6fd8; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; color: #22427f; }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .86rem; }
th, td { border: 1px solid #c9d2e3; padding: .25rem .55rem; text-align: right; }
th { background: #e8eefa; } td:first-child, th:first-child { text-align: left; font-family: monospace; }
tr:nth-child(even) td { background: #f6f8fc; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #dde3ee; }
figcaption { font-size: .85rem; color: #555; }
details { margin: .5rem 0 1rem; } pre { background: #f4f6fa; padding: .6rem; overflow-x: auto; font-size: .78rem; }
code { background: #f1f3f8; padding: 0 .2rem; }
"""


def png_data_uri(figure_or_path: Figure | Path) -> str:
    """A PNG (a matplotlib figure or a file) as a data: URI."""
    if isinstance(figure_or_path, Figure):
        buffer = io.BytesIO()
        figure_or_path.savefig(buffer, format="png", dpi=figure_or_path.dpi)
        data = buffer.getvalue()
    else:
        data = Path(figure_or_path).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def markdown_to_html(text: str) -> str:
    """The small Markdown subset micam writes: headings, pipe tables, paragraphs, **bold**, `code`."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)  # a report's "#" becomes h2
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i].strip())
                i += 1
            out.append(_table(block))
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|")):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return "\n".join(out)


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", escaped)  # links: keep the text (no network)


def _table(block: list[str]) -> str:
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in block]
    body = [r for r in rows[1:] if not all(re.fullmatch(r":?-{2,}:?", c) for c in r)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
    cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _figure(uri: str, caption: str) -> str:
    text = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _sanity_figure(sanity: dict[str, list[dict[str, Any]]]) -> Figure:
    figure = Figure(figsize=(10, 3.4), dpi=100)
    axes = figure.subplots(1, 3)
    for axis, key in zip(axes, ("spearman", "ssim", "hog"), strict=True):
        for method, rows in sanity.items():
            axis.plot([r["stage"] for r in rows], [r[key] for r in rows], marker=".", label=method)
        axis.set_xlabel("blocks randomized (from the output)")
        axis.set_title(f"{key} with the original map", fontsize=10)
        axis.set_ylim(-0.5, 1.05)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def _evaluation_section(path: Path) -> str:
    results = read_results(path)
    markdown = path.with_name(REPORT)
    parts = [markdown_to_html(markdown.read_text()) if markdown.exists() else ""]
    curves = {m: c for m, c in (results.get("mean_curves") or {}).items() if "deletion" in c}
    if curves:
        uri = png_data_uri(deletion_insertion_plot(curves))
        parts.append(_figure(uri, f"Mean deletion / insertion curves over {results['n_images']} images"))
    area = _area_curves(results["methods"])
    if area:
        caption = f"Area-matched Average Drop / Increase by the share of pixels kept, {results['n_images']} images"
        parts.append(_figure(png_data_uri(area_matched_plot(area, AREA_PERCENTAGES)), caption))
    if results.get("sanity"):
        parts.append(_figure(png_data_uri(_sanity_figure(results["sanity"])), "Cascading randomization"))
    settings = html.escape(json.dumps(results.get("settings", {}), indent=2))
    parts.append(f"<details><summary>All settings of this run</summary><pre>{settings}</pre></details>")
    return "\n".join(parts)


def _area_curves(methods: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Each method's mean area-matched AD and AI per kept share, where the run has them."""
    curves = {}
    for name, summary in methods.items():
        keys = {kind: [f"area_matched_{kind}_p{p}" for p in AREA_PERCENTAGES] for kind in ("drop", "increase")}
        if all(key in summary for column in keys.values() for key in column):
            curves[name] = {kind: [float(summary[key]["mean"]) for key in column] for kind, column in keys.items()}
    return curves


def _overview_section(evaluations: list[Path]) -> str:
    """MI-CAM against the baselines across models, one overview per protocol whose runs cover more than
    one model ("" otherwise): runs under the paper's stated definitions and under the authors' scripts
    are never mixed."""
    by_protocol: dict[str, list[dict[str, Any]]] = {}
    for results in (read_results(p) for p in evaluations):
        if comparable(results):
            by_protocol.setdefault((results.get("settings") or {}).get("protocol", "stated"), []).append(results)
    sections = []
    for protocol, runs in sorted(by_protocol.items(), key=lambda item: item[0] != "stated"):
        if len({r["model"] for r in runs}) < 2:
            continue
        title = overview_title(runs) + ("" if protocol == "stated" else f" ({protocol} protocol)")
        parts = [
            f'<section class="overview"><h2>{html.escape(title)}</h2>',
            markdown_to_html("\n".join(overview(runs))),
        ]
        if any(r.get("paired") for r in runs):
            caption = (
                "MI-CAM minus each baseline, per metric and model: mean over images ± 95 % CI, signed so that right"
                " of the line means MI-CAM is better"
            )
            parts.append(_figure(png_data_uri(paired_figure(runs)), caption))
        sections.append("\n".join(parts) + "</section>")
    return "\n".join(sections)


def _natural_order(path: Path) -> list[object]:
    """fig2 before fig10: numbers in the name compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def build_report(results_dir: Path | str, title: str = "micam report") -> str:
    """The HTML text of the report for everything found under ``results_dir``."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ValueError(f"--results {root} is not a folder")
    evaluations = sorted(root.rglob(RESULTS))
    benchmarks = sorted(root.rglob(BENCHMARK_REPORT))
    figures = sorted((p for p in root.rglob("*.png") if "figures" in p.relative_to(root).parts), key=_natural_order)
    if not (evaluations or benchmarks or figures):
        raise ValueError(
            f"nothing to report under {root}: expected results.json (micam evaluate), benchmark.md "
            "(micam benchmark) or PNGs in a figures/ folder (micam reproduce)"
        )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Made by micam {__version__} from <code>{html.escape(str(root))}</code>.</p>",
    ]
    if figures:
        body.append("<h2>Figures</h2>")
        for png in figures:
            caption = png.stem.replace("_", " ").replace("-", " ")
            body.append(_figure(png_data_uri(png), caption))
    across = _overview_section(evaluations)
    if across:
        body.append(across)
    for path in evaluations:
        body.append(
            f'<section class="evaluation"><h2>Evaluation: {html.escape(str(path.parent.relative_to(root)))}</h2>'
        )
        body.append(_evaluation_section(path) + "</section>")
    for path in benchmarks:
        body.append(f'<section class="benchmark"><h2>Benchmark: {html.escape(str(path.parent.relative_to(root)))}</h2>')
        body.append(markdown_to_html(path.read_text()) + "</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(results_dir: Path | str, out: Path | str, title: str = "micam report") -> Path:
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the HTML file to write (e.g. {out / 'report.html'})")
    output_folder(out.parent, "--out's folder")
    write_atomically(out, build_report(results_dir, title))
    return out
