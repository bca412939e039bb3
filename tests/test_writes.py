"""common/writes.py: unique run names, staging and its clean-up, atomic writers, a full disk (issue 8)."""

import errno
import json
import subprocess
import sys

import numpy as np
import pytest

from common import StoreError, writes
from common.writes import (
    DiskFullError,
    atomic_file,
    clean_stale_staging,
    new_run_name,
    staged_run_dir,
    write_json,
    write_npz,
)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_run_names_started_in_the_same_second_differ(tmp_path):
    names = {new_run_name(tmp_path, "compare-digits") for _ in range(300)}
    assert len(names) == 300  # issue 8 item 6: the old namer gave one name per second
    assert all(n.name.startswith("compare-digits-") for n in names) and not any(n.exists() for n in names)


def test_two_compares_prepared_in_the_same_second_get_different_folders(tmp_path):
    from vision.compare import CompareConfig, prepare_compare
    from vision.specs import ModelName

    config = CompareConfig(models=(ModelName.MLP_NUMPY,), device="cpu")  # default folders, under the test's MLX_HOME
    assert prepare_compare(config).run_dir != prepare_compare(config).run_dir


def test_staging_of_a_dead_process_is_removed_and_a_live_one_kept(tmp_path):
    stale = tmp_path / f".run-a.partial-{dead_pid()}-abc123"
    stale.mkdir()
    (stale / "half.json").write_text("{")
    stale_file = tmp_path / f".metrics.json.partial-{dead_pid()}-abc123"
    stale_file.write_text("{")
    live = tmp_path / f".run-b.partial-{1}-abc123"  # pid 1 is always alive
    live.mkdir()
    resumable = tmp_path / ".store.h5.partial"  # embed's resumable shards: not staging, never touched
    resumable.mkdir()
    with staged_run_dir(tmp_path / "run-c") as stage:
        (stage / "x").write_text("1")
    assert not stale.exists() and not stale_file.exists()
    assert live.exists() and resumable.exists() and (tmp_path / "run-c" / "x").exists()
    assert clean_stale_staging(tmp_path) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_run_leaves_nothing(tmp_path, error):
    with pytest.raises(error):
        with staged_run_dir(tmp_path / "run"):
            raise error()
    assert list(tmp_path.iterdir()) == []


def test_staged_run_dir_never_overwrites(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(StoreError, match="already exists"):
        with staged_run_dir(tmp_path / "run"):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="already exists"):
        with staged_run_dir(tmp_path / "file"):
            pass


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "write",
    [
        lambda path, monkeypatch: (monkeypatch.setattr(json, "dump", _enospc), write_json(path, {"a": 1})),
        lambda path, monkeypatch: (monkeypatch.setattr(np, "savez", _enospc), write_npz(path, {"a": np.zeros(3)})),
    ],
)
def test_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, monkeypatch, write):
    target = tmp_path / "out.file"
    target.write_text("old")
    with pytest.raises(DiskFullError, match=r"^no space left on device /.*out\.file"):
        write(target, monkeypatch)
    assert [p.name for p in tmp_path.iterdir()] == ["out.file"] and target.read_text() == "old"


def test_an_h5py_style_disk_error_is_recognised(tmp_path):
    with pytest.raises(DiskFullError):
        with writes.disk_errors(tmp_path / "x.h5"):
            raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    with pytest.raises(PermissionError):  # other OS errors pass through untouched
        with writes.disk_errors(tmp_path / "x.h5"):
            raise PermissionError(errno.EACCES, "denied")


def test_check_free_space_refuses_up_front(tmp_path):
    with pytest.raises(DiskFullError, match="needs"):
        writes.check_free_space(tmp_path / "big.h5", 1 << 62)
    writes.check_free_space(tmp_path / "small.h5", 10)


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "w.bin"
    with atomic_file(target) as stream:
        stream.write(b"abc")
    assert target.read_bytes() == b"abc"
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as stream:
            stream.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"abc" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]
