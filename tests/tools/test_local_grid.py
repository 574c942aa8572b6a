"""The in-process grid's server identity is one per process: concurrent users (the demo's ANN and
SNN twins run in two threads) must not restore it under each other's feet."""

from __future__ import annotations

import threading

from flwr.supercore.task_identity import TaskIdentity

from fedsnn.tools.local_grid import server_identity


def test_a_second_thread_waits_for_the_first_identity_block_to_end() -> None:
    inside, may_read = threading.Event(), threading.Event()
    seen: list[object] = []

    def second() -> None:
        with server_identity(run_id=2):
            inside.set()
            may_read.wait(5)
            try:
                seen.append(TaskIdentity.run_id)
            except RuntimeError as error:  # the first block's exit unset it
                seen.append(error)

    with server_identity(run_id=1):
        thread = threading.Thread(target=second)
        thread.start()
        # with the lock the second block cannot start while this one is open
        entered_early = inside.wait(0.5)
    may_read.set()
    thread.join(10)
    assert not entered_early
    assert seen == [2]


def test_a_relative_output_dir_is_found_where_the_run_wrote_it(tmp_path, monkeypatch) -> None:
    # the run resolves a relative output-dir from the home folder (RunConfig.resolved_output_dir);
    # the folder returned must be that one, whatever the working directory
    from client_app import create_client_app
    from fedsnn.tools.local_grid import federate_in_process

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config = {"dataset": "digits", "image-size": 8, "model": "lenet", "output-dir": "runs/rel"}

    def run(_grid, run_config, _data) -> None:
        folder = run_config.resolved_output_dir() / "20261207-lenet"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text("{}")

    folder = federate_in_process(run, create_client_app(config), config, 1)
    assert folder == tmp_path / "home" / "runs" / "rel" / "20261207-lenet"
