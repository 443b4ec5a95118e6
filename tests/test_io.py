"""File I/O shared by every command: atomic writes, the lock around shared files, and run
directories that a refused command does not leave behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from sdlab import SdlabError
from sdlab.config import build_config
from sdlab.config.schema import SweepConfig
from sdlab.core.io import atomic_write_text, file_lock, run_dir_setup
from sdlab.experiments.sweep import record_levels


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_an_interrupted_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old\n")


    with pytest.raises(TypeError):
        atomic_write_text(path, object())  # fails while writing
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


HOLD_AND_WRITE = """
import sys
from pathlib import Path
from sdlab.core.io import atomic_write_text, file_lock
path = Path(sys.argv[1])
with file_lock(path):
    atomic_write_text(path, path.read_text() + "second\\n")
"""


def test_the_file_lock_makes_a_second_writer_wait(tmp_path):
    path = tmp_path / "sweep.yaml"
    atomic_write_text(path, "")
    with file_lock(path):
        other = subprocess.Popen([sys.executable, "-c", HOLD_AND_WRITE, str(path)])
        time.sleep(1.5)
        assert other.poll() is None, "the second writer did not wait for the lock"
        atomic_write_text(path, path.read_text() + "first\n")
    assert other.wait(timeout=120) == 0
    assert path.read_text() == "first\nsecond\n"  # nothing lost between its read and its write


RECORD_LEVEL = """
import sys
from pathlib import Path
from sdlab.config import build_config
from sdlab.config.schema import SweepConfig
from sdlab.experiments.sweep import record_levels
sweep_dir, seed = Path(sys.argv[1]), int(sys.argv[2])
config = build_config(SweepConfig, {"output_dir": str(sweep_dir), "grid": {"seed": [seed]}})
for _ in range(20):
    record_levels(config, sweep_dir)
"""


def test_parts_of_a_sweep_recording_at_once_keep_every_level(tmp_path):
    """Four processes record four levels of one axis into one sweep directory at the same time."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    parts = [subprocess.Popen([sys.executable, "-c", RECORD_LEVEL, str(sweep_dir), str(seed)]) for seed in range(4)]
    assert [part.wait(timeout=300) for part in parts] == [0, 0, 0, 0]
    assert sorted(yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["grid"]["seed"]) == [0, 1, 2, 3]
    record_levels(build_config(SweepConfig, {"output_dir": str(sweep_dir), "grid": {"seed": [9]}}), sweep_dir)
    assert sorted(yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["grid"]["seed"]) == [0, 1, 2, 3, 9]


def test_a_refused_set_up_removes_the_run_directory_it_created(tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "config.yaml").write_text("kept\n")
    with pytest.raises(SdlabError):
        with run_dir_setup(tmp_path / "new") as run_dir:
            (run_dir / "config.yaml").write_text("x\n")
            raise SdlabError("bad input")
    assert not (tmp_path / "new").exists()
    with pytest.raises(SdlabError):
        with run_dir_setup(earlier, resume=True):
            raise SdlabError("bad input")
    assert (earlier / "config.yaml").read_text() == "kept\n"  # a directory it did not create stays


def test_an_atomic_write_gives_the_file_an_ordinary_files_mode(tmp_path):
    """A temporary file is created private (0600); the written file must be readable like any other."""
    import os

    ordinary = tmp_path / "plain.txt"
    ordinary.write_text("x")
    atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    assert os.stat(tmp_path / "config.yaml").st_mode & 0o777 == os.stat(ordinary).st_mode & 0o777
