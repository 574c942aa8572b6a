"""An uploaded picture as a digit-like image the demo's models take, or a one-line reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fedsnn.tools.demo.engine import DemoError

MAX_BYTES = 20 * 2 ** 20          # larger files are refused before they are decoded
MAX_PIXELS = 4096 * 4096          # and so are larger pictures (decompression bombs included)


def load_upload(path: str | Path, size: int) -> torch.Tensor:
    """A [1, size, size] gray image in [0, 1], bright strokes on a dark background (as the
    digits are; a picture with a light background is inverted).

    Raises:
        DemoError: not a readable image, too large a file, or too many pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise DemoError(f"upload: {path.name} is not a file")
    if path.stat().st_size > MAX_BYTES:
        raise DemoError(f"upload: {path.name} is {path.stat().st_size / 2 ** 20:.0f} MB; "
                        f"the demo takes images up to {MAX_BYTES // 2 ** 20} MB")
    too_many = f"too many pixels; the demo takes images up to {MAX_PIXELS:,} pixels " \
        "(e.g. 4096x4096)"
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DemoError(f"upload: {path.name} is {width}x{height} pixels: {too_many}")
            gray = image.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError:
        # PIL refuses to open a picture past twice its own limit, before our check sees its size
        raise DemoError(f"upload: {path.name} has {too_many}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        if isinstance(error, DemoError):
            raise
        raise DemoError(f"upload: {path.name} is not an image the demo can read "
                        "(PNG, JPEG, GIF, BMP, WebP …)") from None
    pixels = np.asarray(gray, dtype=np.float32) / 255.0
    if pixels.mean() > 0.5:
        pixels = 1.0 - pixels
    return torch.from_numpy(pixels.copy()).unsqueeze(0)
