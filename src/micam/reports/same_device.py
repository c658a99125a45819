"""MI-CAM against its controls with both sides made on one device.

A run that gained the controls later (``micam evaluate --resume --methods all``) can pair MI-CAM's rows
from one device (an H100 session) with the controls' rows from another (the CPU session that extended
it). Their float arithmetic differs (cuDNN may run convolutions in TF32), and a map value near the AD/AI
threshold is enough to move one image's number, so such a paired difference carries device noise beside
the difference of the maps. ``RUNS/<model>/same-device/`` holds MI-CAM's rows made again, with the
run's settings, on the controls' device; the page pairs them with the same control rows and shows both
verdicts side by side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from micam.evaluation.compare import COMPARED_METRICS, paired_differences, verdict
from micam.evaluation.files import EXTENSION, PER_IMAGE, RESULTS, SETTINGS, read_json
from micam.evaluation.rows import devices_by_image, read_rows
from micam.evaluation.settings import comparable, earlier_flags
from micam.methods import CONTROLS
from micam.reports.findings import FOCUS, NAMES, mark
from micam.reports.protocols import control_cell

SAME_DEVICE = "same-device"  # RUNS/<model>/same-device/: MI-CAM's rows made again on the controls' device
# Besides what a resumed run may change (``comparable``): what is computed, the versions and the device
# (which the page names), and what follows from the methods.
FREE_SETTINGS = frozenset(
    {
        "methods", "metrics", "counterfactual_images", "sanity_images", EXTENSION, "micam_version", "torch",
        "python", "device_name", "reference_maps", "counterfactual_interventions",
    }
)  # fmt: skip


def differing_settings(committed: Mapping[str, Any], again: Mapping[str, Any]) -> list[str]:
    """The settings in which a recomputation differs from the run, beyond ``FREE_SETTINGS``: with any of
    them its rows would not be the run's rows made again."""
    one, other = comparable(dict(committed)), comparable(dict(again))
    return sorted(k for k in (set(one) | set(other)) - FREE_SETTINGS if one.get(k) != other.get(k))


def check_same_settings(run: Path, again: Path) -> None:
    """Refuse MI-CAM's rows in ``again`` unless they were made with ``run``'s settings (both the settings
    results.json resolves and settings.json, which holds the data's fingerprint)."""
    differing = sorted(
        set(differing_settings(read_json(run / RESULTS)["settings"], read_json(again / RESULTS)["settings"]))
        | set(differing_settings(read_json(run / SETTINGS), read_json(again / SETTINGS)))
    )
    if differing:
        raise ValueError(f"{again} was made with other settings than {run}: {', '.join(differing)}")


def same_device_lines(run: Path, shown: str, data: str, script: str, export: str | None = None) -> list[str]:
    """The paragraph and table for ``run`` (a stated-protocol run folder), or nothing when it has no
    ``same-device/`` rows. ``shown`` is how the page spells the run's folder, ``data`` the annotations,
    ``script`` the results page's script and ``export`` an environment line the model needs, for the
    commands shown under the table."""
    folder = run / SAME_DEVICE
    if not (folder / PER_IMAGE).exists():
        return []
    results, again_results = read_json(run / RESULTS), read_json(folder / RESULTS)
    check_same_settings(run, folder)
    again = [row for row in read_rows(folder) if row["method"] == FOCUS]
    images = {row["image"] for row in again}
    all_rows = read_rows(run)
    committed = [row for row in all_rows if row["image"] in images]
    controls = [row for row in committed if row["method"] in CONTROLS]
    present = [c for c in CONTROLS if any(row["method"] == c for row in controls)]
    if not again or not present:
        return []
    as_committed = paired_differences([*(r for r in committed if r["method"] == FOCUS), *controls], FOCUS)
    one_device = paired_differences([*again, *controls], FOCUS)
    metrics = [m for m in COMPARED_METRICS if any(one_device[c][m]["n"] for c in present)]
    first_made = devices_by_image(all_rows, results)
    made_on = Counter(first_made.get(image, "an unrecorded device") for image in images)
    # controls gained later were made by the extending sessions, controls run from the start with MI-CAM
    extending = {s["device_name"] for s in results.get("runs", []) if s.get("extended")}
    controls_on = sorted(extending or {first_made.get(image, "an unrecorded device") for image in images})
    again_on = sorted({s["device_name"] for s in again_results.get("runs", [])})
    columns = [(c, kind) for c in present for kind in ("as committed", "one device")]
    lines = [
        f"**On one device.** MI-CAM's rows of these {len(images):,} images were made on {_counted(made_on)};",
        f"the controls' rows{_gained_columns(results)} on {' and '.join(controls_on)}.",
        f"MI-CAM made again on {' and '.join(again_on)} with the run's settings (rows in",
        f"`{shown}/{SAME_DEVICE}/`), paired with the same control rows:",
        "",
        "| metric | " + " | ".join(f"vs {c}, {kind}" for c, kind in columns) + " |",
        "|---" * (1 + len(columns)) + "|",
    ]
    changed = []
    for metric in metrics:
        cells = []
        for control in present:
            before, after = as_committed[control][metric], one_device[control][metric]
            cells += [control_cell(before, metric), control_cell(after, metric)]
            higher = COMPARED_METRICS[metric]
            if before["n"] and after["n"] and verdict(before, higher) != verdict(after, higher):
                changed.append(
                    f"{NAMES[metric]} vs {control} ({mark(verdict(before, higher))} → {mark(verdict(after, higher))})"
                )
        arrow = "↑" if COMPARED_METRICS[metric] else "↓"
        lines.append(f"| {NAMES[metric]} {arrow} | " + " | ".join(cells) + " |")
    said = (
        f"Verdicts that change on one device: {'; '.join(changed)}."
        if changed
        else "Every verdict is the same on one device."
    )
    return [
        *lines,
        "",
        said,
        "",
        "```bash",
        *_commands(results["model"], again_results["settings"], data, script, export),
        "```",
        "",
    ]


def _commands(model: str, settings: Mapping[str, Any], data: str, script: str, export: str | None) -> list[str]:
    """The commands that make and collect the rows of ``same-device/``, with a flag for each setting
    whose default changed after the run began (``auc_x``: the run's rule, not today's)."""
    out = f"{SAME_DEVICE}-{model}"
    flags = "".join(f" {flag}" for flag in earlier_flags(dict(settings)))
    return [
        *([f"export {export}"] if export else []),
        f"micam evaluate --data {data} --model {model} --methods {','.join(settings['methods'])} \\",
        f"    --metrics {','.join(settings['metrics'])}{flags} \\",
        f"    {f'--limit {limit} ' if (limit := settings.get('limit')) else ''}--device {settings['device']}"
        f" --out {out} --resume",
        f"{script} collect {out} --same-device",
    ]


def _gained_columns(results: Mapping[str, Any]) -> str:
    """ " (and every method's GROUPS columns)" for the metric groups the run gained with its controls."""
    base = (results.get("extension") or {}).get("metrics")
    gained = [g for g in results["settings"]["metrics"] if base is not None and g not in base]
    return f" (and every method's {', '.join(gained)} columns)" if gained else ""


def _counted(devices: Counter[str]) -> str:
    if len(devices) == 1:
        return next(iter(devices))
    return " and ".join(f"{device} ({count:,})" for device, count in devices.most_common())
