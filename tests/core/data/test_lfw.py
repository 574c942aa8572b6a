"""LFW from fixture JPEGs in scikit-learn's layout or a plain `<person>/<image>.jpg` folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fedsnn.core.data import DatasetError, load_dataset
from fedsnn.core.data.lfw import load_lfw
from tests.colour_fixtures import write_lfw


def test_sklearn_layout_min_images_split_and_resize(tmp_path: Path) -> None:
    write_lfw(tmp_path, {"Ann_A": 10, "Bob_B": 6, "Cy_C": 2})
    data = load_dataset(f"lfw:{tmp_path},min=5", 32)
    assert data.num_classes == 2 and data.in_channels == 3  # Cy_C has too few images
    assert len(data.train_x) + len(data.test_x) == 16 and len(data.test_x) == round(16 * 0.2)
    assert data.train_x.shape[1:] == (3, 32, 32)
    assert sorted((data.train_y.tolist() + data.test_y.tolist())) == [0] * 10 + [1] * 6
    again = load_lfw(f"{tmp_path / 'lfw_home'},min=5", 32)  # lfw_home works too, same split
    assert again.test_y.tolist() == data.test_y.tolist()


def test_plain_person_folders_gray_and_no_crop(tmp_path: Path) -> None:
    write_lfw(tmp_path, {"A": 3, "B": 3}, side=40)
    plain = tmp_path / "lfw_home" / "lfw_funneled"
    data = load_lfw(f"{plain},min=3,color=gray,crop=none", 16)
    assert data.train_x.shape[1:] == (1, 16, 16) and data.num_classes == 2


def test_face_crop_of_the_250_pixel_originals(tmp_path: Path) -> None:
    write_lfw(tmp_path, {"A": 2, "B": 2})
    image = tmp_path / "lfw_home" / "lfw_funneled" / "A" / "A_0001.jpg"
    Image.new("RGB", (250, 250), (0, 0, 0)).save(image)
    with Image.open(image) as original:
        original = original.copy()
    original.paste((255, 255, 255), (62, 70, 187, 195))  # white face box on black
    original.save(image, quality=100)
    cropped = load_lfw(f"{tmp_path},min=2", 125)
    whole = load_lfw(f"{tmp_path},min=2,crop=none", 125)
    brightest = lambda d: max(float(x.mean()) for x in (*d.train_x, *d.test_x))  # noqa: E731
    assert brightest(cropped) > 0.95 > brightest(whole)


def _error(spec: str) -> str:
    with pytest.raises(DatasetError) as info:
        load_lfw(spec, 32)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_empty_folder_and_too_few_people(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert str(tmp_path / "empty") in _error(str(tmp_path / "empty"))
    assert "does not exist" in _error(str(tmp_path / "missing"))
    write_lfw(tmp_path / "few", {"A": 2, "B": 1})
    assert "lower min=N" in _error(f"{tmp_path / 'few'},min=2")


def test_mixed_sizes_and_unreadable_images_name_the_path(tmp_path: Path) -> None:
    write_lfw(tmp_path, {"A": 2, "B": 2}, side=40)
    odd = tmp_path / "lfw_home" / "lfw_funneled" / "B" / "B_0002.jpg"
    Image.new("RGB", (41, 40)).save(odd)
    message = _error(f"{tmp_path},min=2")
    assert str(odd) in message and "one size" in message
    odd.write_bytes(b"not a jpeg")
    assert str(odd) in _error(f"{tmp_path},min=2")
    assert "min='0'" in _error(f"{tmp_path},min=0")
