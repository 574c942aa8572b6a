"""Labeled Faces in the Wild from a local copy (never downloaded).

Spec: `lfw:<dir>[,min=N][,crop=face|none][,color=rgb|gray]`. `<dir>` is scikit-learn's data home
(`<dir>/lfw_home/lfw_funneled/<person>/<person>_0001.jpg`, what `fetch_lfw_people` extracts), its
`lfw_home`, or any folder of `<person>/<image>.jpg`. People with fewer than `min` images (default
20, as in scikit-learn's face-recognition example) are left out; the rest are classes in name
order. LFW has no standard split: the images are split 80/20 with the fixed split seed (the
study's 80 % train / 20 % validation). The 250x250 originals are cropped to the face (`crop=face`:
rows 70-195 as scikit-learn's default slice, widened to a square about its centre), then resized
to `image-size`; all images must have one size.

On the Hugging Face hub there is no canonical LFW; scikit-learn's layout is the standard route.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from fedsnn.core.data.base import DatasetError, ImageData, _split
from fedsnn.core.image_format import resize
from fedsnn.core.data.spec_options import one_of, parse_folder_options, positive_int

log = logging.getLogger(__name__)

USAGE = ("'lfw:<dir>[,min=N][,crop=face|none][,color=rgb|gray]' with <dir>/<person>/<image>.jpg "
         "(or scikit-learn's <dir>/lfw_home/lfw_funneled/…)")
DEFAULT_MIN_IMAGES = 20
ORIGINAL_SIDE = 250
FACE_BOX = (62, 70, 187, 195)  # left, top, right, bottom in a 250x250 original
SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUTS = ("", "lfw_funneled", "lfw", "lfw_home/lfw_funneled", "lfw_home/lfw")


def _people(root: Path) -> dict[str, list[Path]]:
    """Person folder name -> its image files (sorted), for the folders of `root` that have any."""
    people = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(f for f in person.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file())
        if images:
            people[person.name] = images
    return people


def find_people(folder: Path) -> tuple[Path, dict[str, list[Path]]]:
    """The first layout under `folder` with `<person>/<image>` files, and its people.

    Raises:
        DatasetError: `folder` is missing or no layout has any image.
    """
    if not folder.is_dir():
        raise DatasetError(f"lfw: folder {folder} does not exist; expected {USAGE}")
    for layout in LAYOUTS:
        root = folder / layout if layout else folder
        people = _people(root) if root.is_dir() else {}
        if people:
            return root, people
    raise DatasetError(f"lfw: no <person>/<image>.jpg files in {folder}; expected {USAGE}")


def read_image(path: Path, crop: str, color: str) -> np.ndarray:
    """One image as uint8 [H, W, C] (face-cropped when it is a 250x250 original and `crop` is 'face').

    Raises:
        DatasetError: the file is not a readable image (one line naming it).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if color == "rgb" else "L")
            if crop == "face" and image.size == (ORIGINAL_SIDE, ORIGINAL_SIDE):
                image = image.crop(FACE_BOX)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(f"lfw: cannot read image {path}: {error}") from None
    return array if array.ndim == 3 else array[:, :, None]


def _stack(paths: list[Path], crop: str, color: str) -> torch.Tensor:
    arrays = []
    for path in paths:
        array = read_image(path, crop, color)
        if arrays and array.shape != arrays[0].shape:
            raise DatasetError(f"lfw: {path} is {array.shape[1]}x{array.shape[0]} but {paths[0]} is "
                               f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; every image must have "
                               "one size")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def load_lfw(argument: str, image_size: int = 32) -> ImageData:
    """LFW people with at least `min` images each, split 80/20, resized to `image_size`.

    Raises:
        DatasetError: bad spec, no images, too few people, an unreadable image or mixed sizes.

    Example:
        >>> load_lfw("~/scikit_learn_data,min=70").num_classes  # doctest: +SKIP
        7
    """
    folder, options = parse_folder_options(
        "lfw", argument, {"min": positive_int, "crop": one_of("face", "none"),
                          "color": one_of("rgb", "gray")}, USAGE)
    minimum = int(options.get("min", DEFAULT_MIN_IMAGES))  # type: ignore[call-overload]
    crop, color = str(options.get("crop", "face")), str(options.get("color", "rgb"))
    root, people = find_people(Path(folder).expanduser())
    kept = {name: images for name, images in people.items() if len(images) >= minimum}
    if len(kept) < 2:
        raise DatasetError(f"lfw: {root} has {len(kept)} people with at least {minimum} images "
                           f"(of {len(people)} people); lower min=N (at least 2 classes needed)")
    paths = [path for images in kept.values() for path in images]
    labels = torch.tensor([label for label, images in enumerate(kept.values()) for _ in images])
    images = resize(_stack(paths, crop, color), image_size)
    train_x, train_y, test_x, test_y = _split(images, labels, 0.2)
    note = (f"LFW from {root}: {len(kept)} people with >= {minimum} images, {len(paths)} images, "
            f"split 80/20 into train {len(train_x)} / test {len(test_x)}; crop={crop}, "
            f"{color}, resized to {image_size}x{image_size}")
    log.info(note)
    return ImageData(f"lfw:{argument}", train_x, train_y, test_x, test_y, len(kept), note=note)
