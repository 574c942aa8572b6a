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
