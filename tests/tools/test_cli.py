"""Bad input to the `fedsnn` command line: one line on stderr, exit status 2, no traceback, and
nothing written (issue 16, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsnn.tools.cli import app


def _fails_in_one_line(args: list[str], expected: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception   # not an uncaught error
    assert "Traceback" not in result.output and expected in result.output, result.output
    return result.output


@pytest.mark.parametrize("content", ["", "{\"rounds\": [", "[1, 2]"])
def test_report_on_a_corrupt_or_empty_audit_json(tmp_path: Path, content: str) -> None:
    (tmp_path / "audit.json").write_text(content)
    (tmp_path / "results.json").write_text("{}")
    _fails_in_one_line(["report", str(tmp_path)], f"{tmp_path / 'audit.json'} is not")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.json", "results.json"]


def test_report_on_a_run_audited_for_dp_only(tmp_path: Path) -> None:
    (tmp_path / "audit.json").write_text('{"dp-audit": {"claims": "hold", "mechanisms": []}}')
    (tmp_path / "results.json").write_text("{}")
    _fails_in_one_line(["report", str(tmp_path)], "holds only the dp-audit")


def test_mia_on_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    _fails_in_one_line(["mia", str(tmp_path)], "is not a finished run (no model.pt)")
    (tmp_path / "model.pt").write_bytes(b"")
    _fails_in_one_line(["mia", str(tmp_path)], "results.json is missing")
    assert not (tmp_path / "mia.json").exists()


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--threads", "-1", "--threads must be >= 1"),
    ("--vectorize", "-1", "--vectorize must be >= 0"),
    ("--encoding", "bogus", "--encoding 'bogus'"),
])
def test_bench_bad_flags_fail_before_writing(tmp_path: Path, flag: str, value: str,
                                             expected: str) -> None:
    out = tmp_path / "bench"
    _fails_in_one_line(["bench", "--dataset", "digits", "--samples", "1", flag, value,
                        "--out", str(out)], expected)
    assert not out.exists()


@pytest.mark.parametrize("command", ["bench", "bench-events"])
def test_bench_out_that_is_a_file_is_refused_and_kept(tmp_path: Path, command: str) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    dataset = "digits" if command == "bench" else "dvs-digits"
    _fails_in_one_line([command, "--dataset", dataset, "--out", str(out)], "is a file")
    assert out.read_text() == "mine"


def test_each_bench_takes_its_own_data(tmp_path: Path) -> None:
    """Images go to `fedsnn bench`, event data to `fedsnn bench-events`; each says where the
    other kind belongs, and neither writes anything."""
    _fails_in_one_line(["bench", "--dataset", "dvs-digits", "--out", str(tmp_path / "a")],
                       "fedsnn bench-events")
    _fails_in_one_line(["bench-events", "--dataset", "digits", "--out", str(tmp_path / "b")],
                       "is not an event dataset")
    _fails_in_one_line(["bench-events", "--dataset", "dvs-digits", "--optimizer", "sgd",
                        "--out", str(tmp_path / "c")], "--optimizer 'sgd'")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("flag", "value"), [("--image-size", "0"), ("--lr", "-0.1"),
                                             ("--pictures", "-1"), ("--seed", "-2"),
                                             ("--iters", "0")])
def test_bench_events_range_checks_its_options_before_writing(tmp_path: Path, flag: str,
                                                              value: str) -> None:
    out = tmp_path / "events"
    _fails_in_one_line(["bench-events", "--dataset", "dvs-digits", flag, value, "--out", str(out)],
                       f"{flag}: expected")
    assert not out.exists()
