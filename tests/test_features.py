"""`emotic features`: per-frame embeddings per video as Parquet, read back by `datasets`, equal to the model's own
pooled features, resumable, and refusing what it cannot do."""

import json
import os

import numpy as np
import pytest
import torch

from emotic.inference import features as features_command
from emotic.training.synthetic import synthetic_video, write_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    EmoticForImageClassification(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                              intermediate_size=64, image_size=32, patch_size=8,
                                              fusion_layer=1)).save_pretrained(folder)
    EmoticImageProcessor(size=32, geometry="template").save_pretrained(folder)
    return folder


def frames(count, seed=0):
    return [image for image, _, _ in synthetic_video(np.random.default_rng(seed), count, 64)]


def run(model_dir, *args):
    return features_command.main([str(model_dir), *map(str, args), "--quiet"])


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
        views = processor(pictures, return_tensors="pt")
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
