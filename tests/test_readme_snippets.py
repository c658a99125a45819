"""Every Python snippet of the README's "Your own model" section runs as written and makes real maps."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets(heading: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else None], flags=re.S)


SNIPPETS = _snippets("Your own model")


def test_the_section_has_the_snippets_the_issue_asks_for():
    joined = "\n".join(SNIPPETS)
    for needle in ("timm.create_model", "models.load(", "vit_", "segmentation", "r3d_18", "Conv1d", "detection"):
        assert needle in joined, needle


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch, capsys):
    pytest.importorskip("timm")
    monkeypatch.chdir(tmp_path)  # snippets may write files (a checkpoint)
    namespace: dict[str, object] = {"__name__": f"readme_snippet_{index}"}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a constant (all-zero) map would be a poor example
        exec(compile(SNIPPETS[index], f"README snippet {index}", "exec"), namespace)
    maps = namespace["maps"]
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and float(maps.min()) == 0.0 and float(maps.max()) == 1.0
    printed = capsys.readouterr().out
    for expected in re.findall(r"print\(.*?\)  # (.*)", SNIPPETS[index]):  # the comments say what it prints
        assert expected in printed, (expected, printed)
