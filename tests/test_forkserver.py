"""The tests' `emotic` commands forked from tests/forkserver.py behave as `python -m emotic.cli` in a fresh process."""

import os
import subprocess

import pytest

from conftest import FORK_SERVER, emotic_cli, fresh_module


def test_a_forked_command_exits_and_prints_as_a_fresh_process_does(model_dir, tmp_path):
    command = ("predict", model_dir, tmp_path / "nowhere.mp4", "--output_dir", tmp_path / "out", "--quiet")
    served = FORK_SERVER.served
    forked, started = emotic_cli(*command), fresh_module("emotic.cli", *command)
    assert FORK_SERVER.served == served + 1  # the first was forked
    assert (forked.returncode, forked.stdout, forked.stderr) == (started.returncode, started.stdout, started.stderr)
    assert forked.returncode == 2 and "nowhere.mp4: no such file or folder" in forked.stderr
    usage = emotic_cli("--help")
    assert usage.returncode == 0 and "commands:" in usage.stderr


def test_a_forked_command_runs_in_the_callers_folder_and_reads_no_input(model_dir, tmp_path, monkeypatch):
    (tmp_path / "clips").mkdir()
    monkeypatch.chdir(tmp_path)
    result = emotic_cli("predict", model_dir, "clips", "--output_dir", "out", "--quiet")
    assert result.returncode == 2 and "clips: no frame images" in result.stderr  # the relative path was found
    assert not (tmp_path / "out").exists()


def test_the_callers_environment_reaches_the_command_and_one_read_at_import_starts_afresh(tmp_path):
    """A variable nothing imported reads is set in the forked child (COLUMNS: argparse wraps its usage at that width
    when it prints); one huggingface_hub or transformers read at import (HF_HUB_OFFLINE) sends the command to a
    fresh interpreter, which sees it too."""
    usage = "[--videos VIDEOS] [--frames FRAMES]"  # on one line only when 300 columns wide
    served = FORK_SERVER.served
    narrow = emotic_cli("synth")
    wide = emotic_cli("synth", env={**os.environ, "COLUMNS": "300"})
    assert FORK_SERVER.served == served + 2
    assert narrow.returncode == wide.returncode == 2 and usage not in narrow.stderr and usage in wide.stderr
    online = {**os.environ, "COLUMNS": "300", "HF_HUB_OFFLINE": "0"}
    assert not FORK_SERVER.serves(online) and FORK_SERVER.serves(None)
    fresh_wide = emotic_cli("synth", env=online)
    assert FORK_SERVER.served == served + 2 and fresh_wide.stderr == wide.stderr


def test_a_command_past_its_timeout_is_killed_and_the_server_serves_the_next(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        emotic_cli("synth", "--output_dir", tmp_path / "many", "--videos", "500", timeout=2)
    assert emotic_cli("synth", "--output_dir", tmp_path / "few", "--videos", "2", "--frames", "2",
                      "--validation_videos", "1").returncode == 0
    assert (tmp_path / "few" / "summary.json").is_file()
