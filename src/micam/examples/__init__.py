"""The two example photos micam ships (CC0, from scikit-image; see README.md beside this file).

They are package data, found through ``importlib.resources``: an installed micam has them without a
source checkout. The repository's ``examples/`` folder holds the same files, byte for byte, for the
README's quick start (``micam explain examples/chelsea.png``).
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from PIL import Image

PHOTOS = ("chelsea.png", "coffee.png")


def photo_file(name: str) -> Traversable:
    """The packaged file of one of ``PHOTOS`` (open it with ``.open("rb")`` or read ``.read_bytes()``)."""
    if name not in PHOTOS:
        raise ValueError(f"no example photo {name!r}; micam ships {', '.join(PHOTOS)}")
    return resources.files(__name__) / name


def photo(name: str) -> Image.Image:
    """One of ``PHOTOS``, fully decoded as RGB."""
    with photo_file(name).open("rb") as stream, Image.open(stream) as image:
        image.load()
        return image.convert("RGB")
