"""`emotic ablate`: one fine-tuning per fusion strategy and layer on the same data, evaluated and tabulated; an
interrupted ablation started again finishes only the missing settings."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import emotic_cli
from emotic import ablate
from emotic.inference import predict
from emotic.training.synthetic import write_synthetic_affwild2

TINY_RUN = ["--model_size", "tiny", "--image_size", "32", "--num_train_epochs", "1",
            "--per_device_train_batch_size", "16", "--disable_tqdm", "true", "--report_to", "none",
            "--dataloader_num_workers", "0", "--smoothing_windows", "1,3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation") / "data"
    write_synthetic_affwild2(root, num_videos=5, frames_per_video=12, size=48, validation_videos=2, seed=11,
                             audio=True)  # videos with sound and transcripts beside the frames
    return root


def test_the_ablation_writes_a_table_with_every_requested_setting(data, tmp_path):
    out = tmp_path / "ablation"
    assert ablate.main([str(data), "--output_dir", str(out), "--strategies", "none,mean,concat_linear",
                        "--fusion_layers", "1,3", *TINY_RUN]) == 0
    record = json.loads((out / "ablation.json").read_text())
    assert [row["setting"] for row in record["settings"]] == ["none", "mean-L1", "mean-L3", "concat_linear-L1",
                                                             "concat_linear-L3"]
    assert record["synthetic"] is True
    for row in record["settings"]:
        run = json.loads((out / row["setting"] / "emotic_run.json").read_text())
        assert run["model"]["fusion_strategy"] == row["fusion_strategy"]
        if row["fusion_layer"] is not None:
            assert run["model"]["fusion_layer"] == row["fusion_layer"]
        assert 0 <= row["macro_f1"] <= 1 and row["train_runtime_s"] >= 0 and row["forward_gflops"] > 0
        report = json.loads((out / row["setting"] / "report" / "metrics.json").read_text())
        assert report["raw"]["macro_f1"] == row["macro_f1"]  # the table's number is the evaluation's
    by_name = {row["setting"]: row for row in record["settings"]}
    # fusing later runs more blocks on both views: the counted cost grows with the layer, the baseline is cheapest
    cost = {name: row["forward_gflops"] for name, row in by_name.items()}
    assert cost["none"] < cost["mean-L1"] < cost["mean-L3"]
    table = (out / "ablation.md").read_text()
    assert "| fusion strategy | fusion layer 1 | fusion layer 3 |" in table and "Generated faces" in table
    for row in record["settings"]:
        assert f"`{row['setting']}` | {row['macro_f1']:.4f}" in table
    assert (out / "ablation.png").stat().st_size > 10_000


def test_a_killed_ablation_started_again_finishes_only_the_missing_settings(data, tmp_path):
    out = tmp_path / "ablation"
    command = [str(data), "--output_dir", str(out), "--strategies", "none,mean,attention", "--fusion_layers", "2",
               *TINY_RUN]
    process = subprocess.Popen([sys.executable, "-m", "emotic.cli", "ablate", *command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "none" / ablate.RESULT
    deadline = time.time() + 300
    while not first.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # mid-way through the next setting
    process.wait()
    assert first.is_file() and not (out / "attention-L2" / ablate.RESULT).is_file()
    kept = {path: path.stat().st_mtime_ns for path in (first, out / "none" / "model.safetensors")}

    assert ablate.main(command) == 0
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())  # the finished setting kept
    record = json.loads((out / "ablation.json").read_text())
    assert [row["setting"] for row in record["settings"]] == ["none", "mean-L2", "attention-L2"]


@pytest.mark.parametrize("args, words", [
    (["--strategies", "sum"], "--strategies: ['sum'] unknown"),
    (["--fusion_layers", "two"], "expected comma-separated integers"),
    (["--fusion_layer", "2"], "--fusion_layer is set by emotic ablate"),
])
def test_the_ablation_refuses_bad_options_naming_them(data, tmp_path, args, words, capsys):
    with pytest.raises(SystemExit) as exit_status:
        ablate.main([str(data), "--output_dir", str(tmp_path / "out"), *args])
    assert exit_status.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_ablation_adds_the_temporal_rows_of_its_best_setting(data, tmp_path, speech_encoders, text_models):
    """--temporal: the best setting's features, a temporal head and its evaluation; with audio and text encoders
    for the features, a head for vision, + audio, + text and all, each evaluated on the same frames with the same
    sound and words. Started again, it keeps what it finished."""
    out = tmp_path / "ablation"
    temporal = ["--temporal", "--temporal_args", "--hidden_size 16 --num_hidden_layers 1 --num_attention_heads 2 "
                "--window_size 8 --window_stride 4 --num_train_epochs 2 --disable_tqdm true --save_strategy no "
                "--eval_strategy no",
                "--features_args", f"--audio_model {speech_encoders / 'wav2vec2'} --audio_window 0.2 --audio_stride "
                f"0.04 --audio_dir {data / 'videos'} --text_model {text_models / 'bert'} --text_window 0.4 "
                f"--transcripts {data / 'transcripts'}"]
    assert ablate.main([str(data), "--output_dir", str(out), "--strategies", "none,mean", "--fusion_layers", "1",
                        *temporal, *TINY_RUN]) == 0
    record = json.loads((out / "ablation.json").read_text())
    best = max(record["settings"], key=lambda row: row["macro_f1"])
    row = record["temporal"]
    assert row["setting"] == best["setting"] and row["frame_macro_f1"] == best["macro_f1"]
    report = json.loads((out / f"temporal-{best['setting']}" / "report" / "metrics.json").read_text())
    assert report["temporal_model"].endswith("head") and report["raw"]["macro_f1"] == row["temporal_macro_f1"]
    assert report["counts"]["frames"] == row_frames(out, best)  # the same frames
    table = (out / "ablation.md").read_text()
    assert f"| temporal head | {row['temporal_macro_f1']:.4f} |" in table
    assert list(row["modalities"]) == ["vision", "vision + audio", "vision + text", "vision + audio + text"]
    assert row["modalities"]["vision"] == row["temporal_macro_f1"]
    for name, score in row["modalities"].items():
        folder = out / f"temporal-{best['setting']}"
        report = json.loads((folder / "-".join(["report", *name.split(" + ")[1:]]) / "metrics.json").read_text())
        assert report["raw"]["macro_f1"] == score and report["counts"]["frames"] == row_frames(out, best)
        assert report["counts"].get("videos_without_audio", []) == []  # every video heard where its head hears
        if "text" in name:  # no words: the held-out videos whose transcript has no cue (12 frames: half a second)
            assert report["counts"]["videos_without_text"] == [
                video for video in ("synth-003", "synth-004")
                if not (data / "transcripts" / f"{video}.srt").read_text().strip()]
        if name != "vision":
            assert f"| temporal head, {name} | {score:.4f} |" in table
    assert f"| best smoothing window ({best['smoothing_window']}) | {best['smoothed_macro_f1']:.4f} |" in table
    # `emotic predict` runs a head that reads on a held-out frame folder: its words from --transcripts, placed at
    # its video's rate (--audio_dir); without --transcripts it is refused in one line
    folder = out / f"temporal-{best['setting']}"
    reading = ["--temporal_model", str(folder / "head-text"), "--text_model", str(text_models / "bert"),
               "--audio_dir", str(data / "videos"), "--geometry", "template", "--quiet"]
    assert predict.main([str(out / best["setting"]), str(data / "cropped_aligned" / "synth-004"), "--output_dir",
                         str(tmp_path / "read"), *reading, "--transcripts", str(data / "transcripts")]) == 0
    assert json.loads((tmp_path / "read" / "summary.json").read_text())["videos"]["synth-004"]["read"] is True
    refused = emotic_cli("predict", out / best["setting"], data / "cropped_aligned" / "synth-004", "--output_dir",
                         tmp_path / "refused", *reading)
    assert refused.returncode == 2 and "was trained on subtitles' words: give the videos' --transcripts DIR" \
        in refused.stderr and "Traceback" not in refused.stderr
    garbled = tmp_path / "garbled"  # one video's subtitle file is not one: that video is skipped, with the reason
    garbled.mkdir()
    (garbled / "synth-003.srt").write_text((data / "transcripts" / "synth-003.srt").read_text())
    (garbled / "synth-004.srt").write_text("1\nsoon --> later\nhello\n")
    skipped = emotic_cli("predict", out / best["setting"], data / "cropped_aligned" / "synth-003",
                         data / "cropped_aligned" / "synth-004", "--output_dir", tmp_path / "garbled-out", *reading,
                         "--transcripts", garbled)
    assert skipped.returncode == 1 and "skipped synth-004: " in skipped.stderr and "synth-004.srt:2: 'soon' is not " \
        "a time" in skipped.stderr and "Traceback" not in skipped.stderr
    assert (tmp_path / "garbled-out" / "frames" / "synth-003.csv").is_file()
    # started again, it keeps the finished temporal run
    kept = (out / f"temporal-{best['setting']}" / ablate.RESULT).stat().st_mtime_ns
    assert ablate.main([str(data), "--output_dir", str(out), "--strategies", "none,mean", "--fusion_layers", "1",
                        *temporal, *TINY_RUN]) == 0
    assert (out / f"temporal-{best['setting']}" / ablate.RESULT).stat().st_mtime_ns == kept


def row_frames(out, best) -> int:
    """The frames the best setting's own evaluation scored."""
    return json.loads((out / best["setting"] / "report" / "metrics.json").read_text())["counts"]["frames"]
