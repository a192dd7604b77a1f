"""`emotic features`: per-frame embeddings per video as Parquet, read back by `datasets`, equal to the model's own
pooled features, resumable, and refusing what it cannot do."""

import json
import os

import numpy as np
import pytest
import torch

from emotic.inference import features as features_command
from emotic.training.synthetic import synthetic_video, write_video


def frames(count, seed=0):
    return [image for image, _, _ in synthetic_video(np.random.default_rng(seed), count, 64)]


def run(model_dir, *args):
    return features_command.main([str(model_dir), *map(str, args), "--quiet", "--geometry", "template"])


def test_features_are_the_heads_input_per_frame_and_load_with_datasets(model_dir, tmp_path):
    from datasets import load_dataset

    from emotic import EmoticForImageClassification, EmoticImageProcessor

    clip = tmp_path / "clip"
    clip.mkdir()
    pictures = frames(7)
    for index, image in enumerate(pictures):
        image.save(clip / f"{index + 1:05d}.png")
    (clip / "00008.png").write_bytes(b"not a png")  # an unreadable frame: carries frame 7's features
    write_video(tmp_path / "talk.mp4", frames(5, seed=1))
    assert run(model_dir, clip, tmp_path / "talk.mp4", "--output_dir", tmp_path / "feats") == 0

    table = load_dataset("parquet", data_files=str(tmp_path / "feats" / "features" / "*.parquet"), split="train")
    assert table.column_names == ["video", "frame", "image_location", "status", "features"]
    rows = table.filter(lambda row: row["video"] == "clip")
    assert rows["frame"] == list(range(8)) and rows["image_location"][0] == "clip/00001.png"
    assert rows["status"] == ["face"] * 7 + ["unreadable"]
    values = np.array(rows["features"], dtype=np.float32)
    model = EmoticForImageClassification.from_pretrained(model_dir).eval()
    processor = EmoticImageProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        views = processor(pictures, return_tensors="pt", geometry="template")
        expected = model.forward_head(model.forward_features(views["pixel_values"], views["pixel_values_aux"]),
                                      pre_logits=True).numpy()
    assert values.shape == (8, 32) and np.allclose(values[:7], expected, atol=1e-5)
    assert np.array_equal(values[7], values[6])  # the unreadable frame carries its neighbour's, and says so
    assert len(table.filter(lambda row: row["video"] == "talk")) == 5
    summary = json.loads((tmp_path / "feats" / "summary.json").read_text())
    assert summary["videos"]["clip"] == {"frames": 8, "face": 7, "no_face": 0, "unreadable": 1}
    assert summary["totals"]["frames"] == 13 and summary["settings"]["hidden_size"] == 32


def test_a_restarted_run_skips_finished_videos_and_clears_a_killed_runs_partial_file(model_dir, tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / name).mkdir()
        for index, image in enumerate(frames(3, seed)):
            image.save(tmp_path / name / f"{index + 1:05d}.png")
    out = tmp_path / "feats"
    assert run(model_dir, tmp_path / "a", "--output_dir", out) == 0
    finished = (out / "features" / "a.parquet").stat().st_mtime_ns
    (out / "features" / "b.parquet.12345.partial").write_bytes(b"half a file")  # a run killed mid-video
    assert run(model_dir, tmp_path / "a", tmp_path / "b", "--output_dir", out) == 0
    assert (out / "features" / "a.parquet").stat().st_mtime_ns == finished  # not redone
    assert (out / "features" / "b.parquet").is_file() and not list((out / "features").glob("*.partial"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["already_done"] == 1 and summary["videos"]["a"]["frames"] == 3
    with pytest.raises(SystemExit):  # another model's features never go into the same folder
        run(model_dir, tmp_path / "a", "--output_dir", out, "--dtype", "bfloat16")
    assert (out / "features" / "a.parquet").stat().st_mtime_ns == finished


def test_features_refuse_what_they_cannot_do_before_writing(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for args, words in (([tmp_path / "empty"], "no frame images"),
                        ([tmp_path / "nowhere.mp4"], "no such file or folder"),
                        ([tmp_path / "empty", "--backend", "onnxruntime"], "features come from the PyTorch model")):
        with pytest.raises(SystemExit) as exit_info:
            run(model_dir, *args, "--output_dir", tmp_path / "out")
        assert exit_info.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00 ftypisom" + os.urandom(500))
    assert run(model_dir, tmp_path / "broken.mp4", "--output_dir", tmp_path / "out") == 1  # skipped, said, counted
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["skipped"]) == ["broken"] and not list((tmp_path / "out" / "features").iterdir())


def launch(module, *args, tmp_path):
    """`accelerate launch` of `module` on 2 CPU processes (gloo: `--multi_gpu` with ACCELERATE_USE_CPU)."""
    import subprocess
    import sys

    from conftest import free_port

    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", module,
         *map(str, args), "--quiet", "--geometry", "template"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        # TMPDIR: torch elastic's per-launch log folder lands in this test's folder, not left in /tmp
        env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})


def test_two_processes_split_the_videos_and_write_what_one_process_writes(model_dir, tmp_path):
    """`accelerate launch` with 2 CPU processes: predict's per-video CSVs and submission and the features files
    are byte for byte one process's; each video is done once, none skipped, and the summary counts them all."""
    import filecmp

    from emotic.inference import predict as predict_command

    inputs = []
    for index in range(5):  # videos of different lengths, so the two shares differ
        folder = tmp_path / "videos" / f"v{index}"
        folder.mkdir(parents=True)
        for frame, image in enumerate(frames(3 + index, seed=index)):
            image.save(folder / f"{frame + 1:05d}.png")
        inputs.append(folder)
    assert predict_command.main([str(model_dir), *map(str, inputs), "--output_dir", str(tmp_path / "one"),
                                 "--smoothing_window", "3", "--quiet", "--geometry", "template"]) == 0
    assert run(model_dir, *inputs, "--output_dir", tmp_path / "one-features") == 0
    result = launch("emotic.inference.predict", model_dir, *inputs, "--output_dir", tmp_path / "two",
                    "--smoothing_window", "3", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "5 of 5 inputs predicted (0 already done, 2 processes)" in result.stdout
    result = launch("emotic.inference.features", model_dir, *inputs, "--output_dir", tmp_path / "two-features",
                    tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    names = [f"v{index}" for index in range(5)]
    for one, two, files in (("one", "two", [f"frames/{n}.csv" for n in names] + ["submission.txt"]),
                            ("one-features", "two-features", [f"features/{n}.parquet" for n in names])):
        for name in files:
            assert filecmp.cmp(tmp_path / one / name, tmp_path / two / name, shallow=False), name
        assert sorted(p.name for p in (tmp_path / two).rglob("*") if p.is_file() and not p.name.startswith(".")) == \
            sorted(p.name for p in (tmp_path / one).rglob("*") if p.is_file() and not p.name.startswith("."))
    one, two = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two"))
    assert list(two["videos"]) == names and two["videos"] == one["videos"] and not two["skipped"]
    assert two["totals"] == {**one["totals"], "processes": 2}


def test_a_process_killed_mid_run_loses_only_its_unfinished_video_and_a_rerun_completes(model_dir, tmp_path):
    import filecmp
    import signal
    import subprocess
    import sys
    import time

    from conftest import free_port

    from emotic.inference import predict as predict_command

    inputs = []
    for index in range(6):
        folder = tmp_path / "videos" / f"v{index}"
        folder.mkdir(parents=True)
        for frame, image in enumerate(frames(4, seed=index) * 60):  # 240 frames: seconds per video
            image.save(folder / f"{frame + 1:05d}.png")
        inputs.append(folder)
    out = tmp_path / "two"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
               "--dynamo_backend", "no", "-m", "emotic.inference.predict", str(model_dir), *map(str, inputs),
               "--output_dir", str(out), "--quiet", "--geometry", "template"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "frames").glob("*.csv")) and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()
                   and _parent(entry.name) == launcher.pid]
        assert len(workers) == 2
        os.kill(max(workers), signal.SIGKILL)  # one process dies mid-video; the launcher stops the other
        assert launcher.wait(timeout=120) != 0
    finally:
        launcher.kill()
    finished = sorted(path.name for path in (out / "frames").glob("*.csv"))
    assert 0 < len(finished) < 6  # killed mid-run: some videos done, not all

    assert predict_command.main([str(model_dir), *map(str, inputs), "--output_dir", str(tmp_path / "one"),
                                 "--quiet", "--geometry", "template"]) == 0
    for name in finished:  # what was finished before the kill is whole and right
        assert filecmp.cmp(out / "frames" / name, tmp_path / "one" / "frames" / name, shallow=False), name
    command[command.index("--main_process_port") + 1] = str(free_port())
    assert subprocess.run(command, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env=env).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["already_done"] == len(finished) and summary["totals"]["videos"] == 6
    for name in [f"frames/v{index}.csv" for index in range(6)] + ["submission.txt"]:
        assert filecmp.cmp(out / name, tmp_path / "one" / name, shallow=False), name
    assert not list((out / "frames").glob("*.partial"))


def _parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
