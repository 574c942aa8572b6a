"""Bad input to the demo (uploads, run folders) gets a one-line message; good input works."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedsnn.tools.demo.engine import DemoError
from fedsnn.tools.demo.runs import comparison_html, list_runs, report_html
from fedsnn.tools.demo.uploads import load_upload


def test_an_uploaded_picture_becomes_a_bright_digit_on_dark(tmp_path: Path) -> None:
    pixels = np.full((60, 40), 255, dtype=np.uint8)
    pixels[10:50, 18:22] = 0  # a dark "1" on white paper
    Image.fromarray(pixels).convert("RGB").save(tmp_path / "one.jpg")
    image = load_upload(tmp_path / "one.jpg", 28)
    assert image.shape == (1, 28, 28) and image.min() >= 0 and image.max() <= 1
    assert image.mean() < 0.5 and image[0, 14, 14] > 0.5  # inverted: stroke bright


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height 8-bit gray pixels (and holds a few): what a
    decompression bomb looks like to a reader, without writing gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                                         8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_text("not a picture"), "not an image"),
    (lambda p: Image.new("L", (5000, 4000)).save(p, format="PNG"), "too many pixels"),
    # past twice PIL's own limit, PIL refuses it before our check (issue 28: "not an image")
    (lambda p: _png_header(p, 20000, 20000), "too many pixels"),
])
def test_bad_uploads_are_refused_in_one_line(tmp_path: Path, make, words) -> None:
    path = tmp_path / "upload.png"
    make(path)
    with pytest.raises(DemoError, match=words) as error:
        load_upload(path, 28)
    assert "\n" not in str(error.value)


def test_runs_are_listed_opened_and_compared(runs_dir: Path) -> None:
    runs = list_runs(runs_dir, root=runs_dir)
    assert {r.name for r in runs} == {"run-mlp", "run-mlp-snn"}
    assert list_runs("run-mlp", root=runs_dir) == [runs_dir.resolve() / "run-mlp"]  # relative
    page = report_html(runs[0], root=runs_dir)
    assert "Privacy audit of run" in page and "data:image/png;base64" in page
    both = comparison_html(runs, root=runs_dir)
    assert "Audit comparison" in both and "run-mlp-snn" in both
    assert not list(runs_dir.glob("comparison.*"))  # nothing added to the output folder


def test_folders_that_are_not_runs_are_refused(tmp_path: Path, runs_dir: Path) -> None:
    with pytest.raises(DemoError, match="holds no run folder"):
        list_runs(tmp_path, root=tmp_path)
    with pytest.raises(DemoError, match="is not a folder"):
        list_runs(tmp_path / "missing", root=tmp_path)
    (tmp_path / "stray").mkdir()
    with pytest.raises(DemoError, match="not a run folder"):
        report_html(tmp_path / "stray", root=tmp_path)
    (tmp_path / "stray" / "results.json").write_text("{}")
    with pytest.raises(DemoError, match="without the audit"):
        report_html(tmp_path / "stray", root=tmp_path)
    with pytest.raises(DemoError, match="at least two"):
        comparison_html(list_runs(runs_dir, root=runs_dir)[:1], root=runs_dir)


def test_the_runs_view_reads_nothing_outside_its_runs_folder(tmp_path: Path, runs_dir: Path
                                                             ) -> None:
    # issue 28: a visitor could type any folder; real audited runs outside --runs-dir are refused
    root = tmp_path / "runs-dir"
    root.mkdir()
    (root / "link").symlink_to(runs_dir / "run-mlp")  # a link out is outside too
    outside = [runs_dir, runs_dir / "run-mlp", root / ".." / ".." / runs_dir.name, "/etc",
               "../", root / "link"]
    for typed in outside:
        with pytest.raises(DemoError, match=r"outside the demo's runs folder .* \(--runs-dir\)") \
                as error:
            list_runs(str(typed), root=root)
        assert "\n" not in str(error.value)
    with pytest.raises(DemoError, match="outside the demo's runs folder"):
        report_html(runs_dir / "run-mlp", root=root)
    with pytest.raises(DemoError, match="outside the demo's runs folder"):
        comparison_html([runs_dir / "run-mlp", runs_dir / "run-mlp-snn"], root=root)
