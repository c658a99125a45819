"""MI-CAM against its controls with both sides made on one device (micam.reports.same_device): hand-made
run folders with known rows, the settings check, and the committed same-device folders on the page."""

import csv
import json
from pathlib import Path

import pytest

from conftest import load_script
from micam.evaluation.rows import devices_by_image
from micam.evaluation.settings import earlier_flags
from micam.reports.findings import comparable as findings_comparable
from micam.reports.protocols import controls_table, protocol_runs
from micam.reports.results_page import collect
from micam.reports.same_device import SAME_DEVICE, differing_settings, same_device_lines

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["image", "label", "predicted", "target", "correct", "method", "seconds", "average_drop", "ebpg"]
SETTINGS = {"model": "tiny", "methods": ["mi-cam", "channel-sum"], "metrics": ["drop-increase"], "steps": 100}
SETTINGS |= {"auc_x": "even", "limit": 3, "device": "auto"}
H100, CPU = "H100", "CPU x86_64, 2 threads"


def _rows(folder: Path, rows: list[tuple[str, str, float, float]]) -> None:
    with (folder / "per_image.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for image, method, drop, ebpg in rows:
            writer.writerow(
                {"image": image, "label": 1, "predicted": 1, "target": 1, "correct": True, "method": method}
                | {"seconds": 0.1, "average_drop": drop, "ebpg": ebpg}
            )


def _run(folder: Path, settings: dict, runs: list[dict], extension: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    results = {"model": "tiny", "settings": settings, "runs": runs} | ({"extension": extension} if extension else {})
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "settings.json").write_text(json.dumps(settings))


def _committed(tmp_path: Path) -> Path:
    """Three images: the first made on the CPU, two on an H100; the channel sum and ROAD gained on the CPU."""
    run = tmp_path / "tiny"
    sessions = [{"device_name": CPU, "images": 1}, {"device_name": H100, "images": 2}]
    gained = SETTINGS | {"metrics": ["drop-increase", "road"]}
    extension = {"methods": ["mi-cam"], "metrics": ["drop-increase"]}
    _run(run, gained, [*sessions, {"device_name": CPU, "images": 0, "extended": 3}], extension)
    mi = [("a", "mi-cam", 10.0, 50.0), ("b", "mi-cam", 20.0, 60.0), ("c", "mi-cam", 30.0, 70.0)]
    total = [("a", "channel-sum", 12.0, 50.0), ("b", "channel-sum", 21.0, 59.0), ("c", "channel-sum", 35.0, 69.0)]
    _rows(run, [*mi, *total])
    return run


def _again(run: Path, rows: list[tuple[str, str, float, float]], **changed) -> None:
    folder = run / SAME_DEVICE
    settings = SETTINGS | {"methods": ["mi-cam"], "metrics": ["drop-increase"], "device": "cpu"} | changed
    _run(folder, settings, [{"device_name": CPU, "images": len(rows)}])
    _rows(folder, rows)


def test_devices_by_image_follow_the_sessions_in_row_order_and_an_extension_makes_no_first_rows():
    rows = [{"image": i} for i in ("a", "a", "b", "c", "b", "d")]
    sessions = [{"device_name": "X", "images": 1}, {"device_name": "Y", "images": 0}, {"device_name": "Z", "images": 3}]
    assert devices_by_image(rows, {"runs": sessions}) == {"a": "X", "b": "Z", "c": "Z", "d": "Z"}


def test_the_table_pairs_both_mi_cam_rows_with_the_same_control_rows(tmp_path):
    run = _committed(tmp_path)
    # made again: image c's AD moves across the threshold-like jump; EBPG barely moves
    _again(run, [("a", "mi-cam", 10.0, 50.0), ("b", "mi-cam", 20.0, 60.0), ("c", "mi-cam", 35.0, 70.0)])
    lines = same_device_lines(run, "docs/results/tiny", "data.json", "python page.py")
    text = "\n".join(lines)
    assert "MI-CAM's rows of these 3 images were made on H100 (2) and CPU x86_64, 2 threads (1);" in text
    assert "the controls' rows (and every method's road columns) on CPU x86_64, 2 threads." in text
    # as committed: AD differences -2, -1, -5: mean -2.67, sd 2.08, t(0.975, 2) = 4.303 -> half 5.17
    # one device: 0 - 2, 20 - 21, 35 - 35 = -2, -1, 0: mean -1.00, sd 1, half 2.48
    assert "| AD ↓ | -2.67 ± 5.17 = | -1.00 ± 2.48 = |" in text
    # EBPG differences 0, 1, 1 both ways: mean 0.67, sd 0.577, half 1.43
    assert "| EBPG ↑ | 0.67 ± 1.43 = | 0.67 ± 1.43 = |" in text
    assert "Every verdict is the same on one device." in text
    assert "--metrics drop-increase --auc-x even \\" in text  # the run's AUC rule, not today's default
    assert "python page.py collect same-device-tiny --same-device" in text


def test_a_verdict_that_changes_on_one_device_is_named(tmp_path):
    run = _committed(tmp_path)
    # one device: 11 - 12, 20 - 21, 34 - 35 = -1 each: better with a zero-width interval
    _again(run, [("a", "mi-cam", 11.0, 50.0), ("b", "mi-cam", 20.0, 60.0), ("c", "mi-cam", 34.0, 70.0)])
    text = "\n".join(same_device_lines(run, "docs/results/tiny", "data.json", "python page.py"))
    assert "| AD ↓ | -2.67 ± 5.17 = | -1.00 ± 0.00 + |" in text
    assert "Verdicts that change on one device: AD vs channel-sum (= → +)." in text


def test_rows_made_with_other_settings_are_refused_and_a_run_without_them_says_nothing(tmp_path):
    run = _committed(tmp_path)
    assert same_device_lines(run, "x", "d", "s") == []
    _again(run, [("a", "mi-cam", 10.0, 50.0)], auc_x="changed", limit=1)
    with pytest.raises(ValueError, match="other settings than .*: auc_x"):
        same_device_lines(run, "x", "d", "s")
    # other data under the same keys: only settings.json has the data's fingerprint
    _again(run, [("a", "mi-cam", 10.0, 50.0)])
    (run / "settings.json").write_text(json.dumps(SETTINGS | {"data_fingerprint": "aaa"}))
    (run / SAME_DEVICE / "settings.json").write_text(json.dumps(SETTINGS | {"data_fingerprint": "bbb"}))
    with pytest.raises(ValueError, match="other settings than .*: data_fingerprint"):
        same_device_lines(run, "x", "d", "s")
    # what is computed, where and how fast may differ; how a number is made may not
    assert differing_settings(SETTINGS, SETTINGS | {"device": "cpu", "batch_size": 1, "methods": []}) == []
    assert differing_settings(SETTINGS, SETTINGS | {"steps": 50}) == ["steps"]
    made_before_the_rule = {k: v for k, v in SETTINGS.items() if k != "auc_x"}
    assert differing_settings(made_before_the_rule, SETTINGS) == []  # it made AUCs the "even" way
    assert differing_settings(made_before_the_rule, SETTINGS | {"auc_x": "changed"}) == ["auc_x"]


def test_controls_made_with_mi_cam_from_the_start_are_on_their_images_devices_and_no_limit_is_shown(tmp_path):
    run = tmp_path / "tiny"
    _run(run, SETTINGS, [{"device_name": H100, "images": 2}])
    _rows(run, [("a", "mi-cam", 1.0, 5.0), ("a", "channel-sum", 2.0, 5.0), ("b", "mi-cam", 3.0, 5.0)])
    _again(run, [("a", "mi-cam", 1.5, 5.0), ("b", "mi-cam", 3.0, 5.0)], limit=None)
    text = "\n".join(same_device_lines(run, "x", "d", "s"))
    assert "MI-CAM's rows of these 2 images were made on H100;\nthe controls' rows on H100." in text
    assert "| AD ↓ | -1.00 ± nan = | -0.50 ± nan = |" in text  # one image has both: n = 1, no interval
    assert "--limit" not in text and "    --device cpu --out same-device-tiny --resume" in text


def test_collect_puts_the_rows_made_again_beside_the_run_and_refuses_other_settings(tmp_path):
    _committed(tmp_path / "runs")
    out = tmp_path / "out"
    _run(out, SETTINGS | {"methods": ["mi-cam"]}, [{"device_name": CPU, "images": 1}])
    _rows(out, [("a", "mi-cam", 10.0, 50.0)])
    target = collect(out, tmp_path / "runs", [], same_device=True)
    assert target == tmp_path / "runs" / "tiny" / SAME_DEVICE
    assert sorted(p.name for p in target.iterdir()) == ["per_image.csv", "results.json", "settings.json"]
    _run(out, SETTINGS | {"steps": 20}, [{"device_name": CPU, "images": 1}])
    with pytest.raises(ValueError, match="other settings than .*: steps"):
        collect(out, tmp_path / "runs", [], same_device=True)


def test_the_committed_same_device_rows_are_on_the_page_with_their_run_settings():
    folders = sorted((ROOT / "docs" / "results").glob(f"*/{SAME_DEVICE}/results.json"))
    assert folders, "the committed runs include MI-CAM made again on the controls' device"
    text = load_script("results_page").page()
    for path in folders:
        model = json.loads(path.read_text())["model"]
        assert f"`docs/results/{model}/{SAME_DEVICE}/`), paired with the same control rows:" in text
        assert f"collect {SAME_DEVICE}-{model} --same-device" in text


def _table(lines: list[str]) -> dict[tuple[str, str], str]:
    """A Markdown table's cells by (first cell, column title)."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    header = rows[0]
    return {(row[0], title): cell for row in rows[2:] for title, cell in zip(header[1:], row[1:], strict=True)}


def test_the_committed_pairs_as_committed_are_the_stated_runs_controls_table():
    """Two roads to one number: the controls table reads results.json's paired differences, the
    same-device table pairs the committed rows itself."""
    runs = ROOT / "docs" / "results"
    script = load_script("results_page")
    for path in sorted(runs.glob(f"*/{SAME_DEVICE}/results.json")):
        model = json.loads(path.read_text())["model"]
        controls = _table(controls_table({"stated": protocol_runs(runs, model)["stated"]}))
        lines = same_device_lines(runs / model, "x", "d", "s", script.CONTENT.environment.get(model))
        pairs = _table(lines)
        checked = 0
        for (metric, title), cell in pairs.items():
            if title.endswith(", as committed"):
                control = title.removeprefix("vs ").removesuffix(", as committed")
                stated = next(
                    v
                    for (m, t), v in controls.items()
                    if m == metric and t.startswith(f"stated protocol: vs {control} ")
                )
                # the controls table covers every image with controls: same-device/ must cover them too
                assert cell == stated, f"{model} {metric} vs {control}: extend {SAME_DEVICE}/ to the controls' images"
                checked += 1
        assert checked >= 12  # six metrics, two controls


def test_mi_cam_made_again_alone_is_no_run_to_rank():
    """A same-device folder holds MI-CAM alone: the overviews (page and HTML report) must not rank it."""
    scored = {"average_drop": {"mean": 40.0, "n": 3}}
    assert not findings_comparable({"methods": {"mi-cam": scored}})
    assert findings_comparable({"methods": {"mi-cam": scored, "grad-cam": scored}})
    assert not findings_comparable({"methods": {"mi-cam": scored, "random": scored}})  # a reference map only


def test_a_command_shown_for_an_old_run_names_the_settings_whose_default_changed_since():
    assert earlier_flags({"protocol": "stated", "auc_x": "even"}) == ["--auc-x even"]
    assert earlier_flags({"protocol": "stated"}) == ["--auc-x even"]  # made before the setting existed
    assert earlier_flags({"protocol": "stated", "auc_x": "changed"}) == []
    assert earlier_flags({"protocol": "authors", "auc_x": "even"}) == []  # the authors' protocol's own rule
    assert earlier_flags({"protocol": "authors", "auc_x": "changed"}) == ["--auc-x changed"]
    text = load_script("results_page").page()
    assert "--sanity-images 4 --auc-x even --resume" in text  # the committed stated runs predate the rule
