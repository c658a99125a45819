"""A user's image file as the 8-bit RGB picture a model sees, whatever its mode, orientation or size.

Photos come as 16-bit PNGs and TIFFs, phone JPEGs whose pixels are stored sideways with an EXIF
orientation tag, CMYK and palette files, images with transparency, animated GIFs/WebPs and, now
and then, a "decompression bomb" (a small file claiming billions of pixels). Pillow's plain
``convert("RGB")`` clips 16-bit values to white, ignores orientation and drops transparency onto
whatever colour the hidden pixels hold, so every reader in micam goes through ``read_image``:

* 16-bit (and 32-bit integer) gray is scaled to 8 bits (value / 257), not clipped; float images
  are taken as [0, 1] when their largest value is at most 1, else as 0-255;
* the EXIF orientation is applied (the picture as a photo viewer shows it);
* transparency (RGBA, LA, palette with a transparent colour) is composited on ``background``
  (white by default), CMYK / YCbCr / 1-bit / palette images are converted to RGB;
* an animated image gives its first frame;
* an image of more than ``max_pixels`` pixels is refused before it is decoded.

Every failure is an ``UnreadableImage`` (a ``ValueError``) naming the file, so batch jobs skip the
image and go on. ``notes`` say what was done to an image beyond a plain decode.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["BACKGROUNDS", "DEFAULT_MAX_PIXELS", "ReadImage", "UnreadableImage", "read_image", "read_rgb", "to_rgb"]

# Pillow's own refusal bound (twice its warning bound of 89,478,485 pixels): about 13,400 x 13,400.
DEFAULT_MAX_PIXELS = 2 * 89_478_485
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (255, 255, 255), "black": (0, 0, 0)}


class UnreadableImage(ValueError):
    """A file that cannot be read as an image (missing, not a regular file, damaged, too large)."""


@dataclass
class ReadImage:
    """The RGB picture and what was done to get it (e.g. "16-bit gray scaled to 8 bits")."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, background: str = "white") -> ReadImage:
    """Open and fully decode ``path`` as 8-bit RGB (see the module docstring). ``max_pixels``: refuse
    larger images (None: no limit; a limit above Pillow's own bound raises that process-wide bound to
    match, never lowers it). Only regular files are opened: a FIFO or a device named like an image
    would block or never end."""
    path = Path(path)
    _allow_in_pillow(max_pixels)
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    if not path.is_file():
        raise UnreadableImage(f"{path} is not a regular file" if path.exists() else f"{path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # micam's own limit applies
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise UnreadableImage(_too_large(path, f"{width} x {height} = {width * height:,}", max_pixels))
                frames = getattr(image, "n_frames", 1)
                image.seek(0)
                image.load()
                result = to_rgb(image, background)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as error:  # above Pillow's own bound, found before micam's check
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(claimed.group(1)):,}" if claimed else "more"
        limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise UnreadableImage(_too_large(path, pixels, limit)) from error
    except Exception as error:  # Pillow raises many types for damaged files (SyntaxError, struct.error, ...)
        raise UnreadableImage(f"{path}: cannot read it as an image ({type(error).__name__}: {error})") from error
    if frames > 1:
        result.notes.append(f"first frame of {frames}")
    return result


def read_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, background: str = "white") -> Image.Image:
    """``read_image(...).image``: the decoded 8-bit RGB picture."""
    return read_image(path, max_pixels, background).image


def to_rgb(image: Image.Image, background: str = "white") -> ReadImage:
    """An opened (loaded) image of any mode as upright 8-bit RGB, with notes on what was changed."""
    notes: list[str] = []
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied")
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        image, note = _scaled_gray(image)
        notes.append(note)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        lowest_alpha = rgba.getchannel("A").getextrema()[0]
        if lowest_alpha != 255:  # some pixel is not opaque
            canvas = Image.new("RGBA", rgba.size, (*BACKGROUNDS[background], 255))
            image = Image.alpha_composite(canvas, rgba)
            notes.append(f"transparency composited on {background}")
        else:
            image = rgba
    elif mode not in ("RGB", "L", "P", "1"):
        notes.append(f"{mode} converted to RGB")
    return ReadImage(image.convert("RGB"), notes)


def _scaled_gray(image: Image.Image) -> tuple[Image.Image, str]:
    """16/32-bit integer or float gray as 8-bit gray, scaled rather than clipped."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        note = f"float gray {'[0, 1]' if scale > 1 else '0-255'} scaled to 8 bits"
    else:
        scale = 1.0 / 257.0  # 65535 -> 255, the exact inverse of 8 -> 16 bit expansion (x * 257)
        note = "16-bit gray scaled to 8 bits"
    eight = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(eight), note


def _allow_in_pillow(max_pixels: int | None) -> None:
    """Pillow refuses images above 2 x ``Image.MAX_IMAGE_PIXELS`` in ``Image.open``; raise that bound
    above the caller's limit when it is as high (monotonic: no concurrent reader sees a lower bound
    than it asked for)."""
    bound = Image.MAX_IMAGE_PIXELS
    if bound is None:
        return
    if max_pixels is None:
        Image.MAX_IMAGE_PIXELS = None
    elif max_pixels >= 2 * bound:  # micam's own check, with its clearer message, comes first
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1


def _too_large(path: Path, pixels: str, limit: int) -> str:
    return (
        f"{path}: {pixels} pixels exceeds the limit of {limit:,} "
        "(a decompression bomb or a very large image; raise it with --max-pixels if you trust the file)"
    )
