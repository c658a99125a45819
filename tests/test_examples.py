"""The example photos are package data: loaded through importlib.resources, equal to examples/ byte for byte,
and present in a wheel built from the sources, where an install without the source tree finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import resources

import pytest

from conftest import EXAMPLES, REPO
from micam import examples


def test_packaged_photos_equal_the_repository_copies_byte_for_byte():
    for name in examples.PHOTOS:
        assert resources.files("micam.examples").joinpath(name).read_bytes() == (EXAMPLES / name).read_bytes()


def test_photos_decode_as_rgb():
    sizes = {name: examples.photo(name).size for name in examples.PHOTOS}
    assert sizes == {"chelsea.png": (451, 300), "coffee.png": (600, 400)}
    assert examples.photo("chelsea.png").mode == "RGB"
    with pytest.raises(ValueError, match="chelsea.png"):
        examples.photo_file("cat.png")


def test_an_install_without_the_source_tree_finds_the_photos(tmp_path):
    pytest.importorskip("setuptools")  # the wheel is built offline, with the environment's setuptools
    project = tmp_path / "project"
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*build, "-w", str(tmp_path / "wheels"), str(project)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheels").glob("micam-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel installs by unpacking
        assert {f"micam/examples/{name}" for name in (*examples.PHOTOS, "README.md")} <= set(archive.namelist())
        archive.extractall(site)
    shutil.rmtree(project)
    code = "import micam, micam.examples as e; print(micam.__file__); print([e.photo(n).size for n in e.PHOTOS])"
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    where, sizes = run.stdout.splitlines()
    assert where.startswith(str(site)) and sizes == "[(451, 300), (600, 400)]"
