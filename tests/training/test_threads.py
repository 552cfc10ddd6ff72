"""``xmixup train --threads-file``: the thread count follows the file while training runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def test_thread_count_follows_the_file(tmp_path: Path) -> None:
    from training.threads import ThreadsFromFile

    before = torch.get_num_threads()
    path = tmp_path / "threads"
    watcher = ThreadsFromFile(path)
    try:
        watcher.poll()  # no file yet: nothing changes, nothing raised
        assert torch.get_num_threads() == before
        path.write_text("1\n")
        watcher.on_step_begin(None, None, None)
        assert torch.get_num_threads() == 1
        path.write_text("")  # caught mid-write: ignored, and read again once it is whole
        watcher.poll()
        assert torch.get_num_threads() == 1
        path.write_text("2\n")
        os.utime(path, ns=(1, 1))  # a distinct mtime even on a coarse clock
        watcher.poll()
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # unchanged file: not re-applied
        watcher.poll()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
