"""`fedsnn demo` on the command line: its options, and a port it cannot take."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from fedsnn.tools.cli import app


def test_demo_has_host_and_port_options() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output and "127.0.0.1" in result.output


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--port", str(port), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.output
