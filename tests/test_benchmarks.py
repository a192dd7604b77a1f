"""The benchmark scripts still run (tiny models, one round): they are not timed here, only kept from rotting."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_live_benchmark_serves_a_real_time_stream_and_reports_what_kept_up(tmp_path):
    """bench_live.py's smoke mode: a 3-second 25 fps two-person stream over loopback HTTP, the tiny encoder: a row
    with every frame accounted for (kept or dropped), the latency, and the table."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_live.py"), "--smoke", "--output_dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads((tmp_path / "live.json").read_text())["rows"]
    assert row["frames"] == row["sent"] == 75 and 0 <= row["dropped"] <= 75
    assert 0 < row["sustained_fps"] <= 25 and 0 <= row["latency_p50"] <= row["latency_p95"]
    assert "| tiny | 5 |" in (tmp_path / "live.md").read_text()


def test_the_audio_benchmark_times_features_with_and_without_sound(tmp_path):
    """bench_audio.py's smoke mode: a 4-second talking video, the tiny frame model, a 2-layer speech encoder: both
    runs' frames per second and their ratio, and the table."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_audio.py"), "--smoke", "--output_dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads((tmp_path / "audio.json").read_text())["rows"]
    assert row["frames"] == 100 and row["vision_fps"] > 0 and row["audio_fps"] > 0
    assert abs(row["ratio"] - row["audio_fps"] / row["vision_fps"]) < 0.01
    assert "| tiny | 100 |" in (tmp_path / "audio.md").read_text()


@pytest.mark.parametrize("script", ["bench_models.py", "bench_gpu.py", "bench_tracking.py",
                                    pytest.param("bench_video.py", marks=pytest.mark.minutes(2))])
def test_benchmark_script_runs_in_smoke_mode(script, tmp_path):
    extra = ["--json", str(tmp_path / "out.json")] if script != "bench_models.py" else []
    extra += ["--onnx"] if script == "bench_video.py" else []
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *extra], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    if script == "bench_models.py":
        for heading in ("1. encoder forward", "2. classifier forward", "3. training step", "4. MAE pre-training",
                        "5. memory per batch"):
            assert heading in result.stdout
    elif script == "bench_video.py":  # predict and the pipeline loop timed on both streams, with a breakdown
        streams = json.loads((tmp_path / "out.json").read_text())["streams"]
        assert set(streams) == {"aligned 112x112 frames", "512x512 photos, detector"}
        for stream in streams.values():
            assert set(stream["runs"]) == {"pipeline loop (float32)", "pipeline loop, memory kept",
                                           "emotic predict (float32)", "emotic predict (--dtype auto)",
                                           "emotic predict (--backend onnxruntime)"}
            assert all(run["frames_per_s"] > 0 and run["peak_mib"] > 0 for run in stream["runs"].values())
            for run in stream["runs"].values():  # a tiny model's two frames: the steady cost may be lost in noise
                assert run["start_up_seconds"] > 0 and (run["steady_ms_per_frame"] or 0) >= 0
        for run in streams["512x512 photos, detector"]["runs"].values():  # one photo: its run is its start-up
            assert run["start_up_seconds"] == run["seconds"] and run["steady_ms_per_frame"] is None
        assert {"decode", "views", "detect"} <= set(streams["512x512 photos, detector"]["breakdown_ms_per_frame"])
    elif script == "bench_tracking.py":  # both settings timed, with their id switches
        settings = json.loads((tmp_path / "out.json").read_text())["detectors"]["blazeface"]
        assert {"detect_every_1", "detect_every_5"} <= set(settings)
        for run in (settings["detect_every_1"], settings["detect_every_5"]):
            assert run["tracker_frames_per_s"] > 0 and run["predict_frames_per_s"] > 0 and run["faces_found"] > 40
            assert run["id_switches"] >= 0
    else:
        results = json.loads((tmp_path / "out.json").read_text())["results"]
        assert [row["batch_size"] for row in results] == [2, 4]
        assert all(row["training"]["images_per_s"] > 0 for row in results)
        video = json.loads((tmp_path / "out.json").read_text())["predict"]  # emotic predict end to end, and a loop
        assert video["frames"] == 8 and video["predict_frames_per_s"] > 0 and video["pipeline_loop_frames_per_s"] > 0


def test_detector_benchmark_measures_each_detector_in_smoke_mode(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_detectors.py"), "--smoke", "--json",
                             str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out.json").read_text())
    for name in ("blazeface", "hog"):
        assert results["video"][name]["frames_per_s"] > 0 and 0 <= results["video"][name]["recall"] <= 1
        assert all(0 <= runs[name]["found"] <= 6 for runs in results["group"].values())


@pytest.mark.minutes(1)
def test_real_faces_benchmark_runs_every_row_on_generated_faces_and_resumes_without_redoing_them(tmp_path):
    """The smoke mode of bench_real_faces.py (generated 48x48 grey faces in FER+'s layout, one epoch, one seed):
    every row trains through emotic's commands or the plain loops, the report has each row, and started again the
    benchmark finds every row finished and trains nothing."""
    command = [sys.executable, str(BENCHMARKS / "bench_real_faces.py"), "--smoke", "--seeds", "0", "--output_dir",
               str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "real_faces.json").read_text())
    assert summary["partial"] == []
    rows = {"always_neutral", "mae_pretrain", "cnn", "vit_loop", "emotic_scratch_none", "emotic_mae_none",
            "emotic_mae_attention", "emotic_mae_concat_linear"}
    assert set(summary["results"]) == rows
    for row, runs in summary["results"].items():
        if row != "mae_pretrain":
            assert 0 <= runs[0]["accuracy"] <= 1 and len(runs[0]["confusion_matrix"]) == 8, row
    table = (tmp_path / "out" / "real_faces.md").read_text()
    assert "emotic MAE-pre-trained, attention fusion" in table and (tmp_path / "out" / "real_faces.png").exists()
    assert (tmp_path / "out" / "emotic_mae_attention" / "seed-0" / "model.safetensors").exists()  # models kept
    finished = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("result.json")}
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "done in" not in again.stdout, again.stdout[-2000:]
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("result.json")} == finished
    # an optional row, asked for by name, trains alone beside the finished ones: faces found by the detector
    found = subprocess.run([*command, "--rows", "emotic_mae_attention_found"], capture_output=True, text=True,
                           timeout=300)
    assert found.returncode == 0, found.stderr[-3000:]
    assert found.stdout.count("done in") == 1 and "emotic_mae_attention_found seed 0: done in" in found.stdout
    run = json.loads((tmp_path / "out" / "emotic_mae_attention_found" / "seed-0" / "emotic_run.json").read_text())
    assert set(run["geometries"]["train"]) <= {"detector", "full_image"} and sum(run["geometries"]["train"].values())
    assert set(json.loads((tmp_path / "out" / "real_faces.json").read_text())["results"]) == \
        rows | {"emotic_mae_attention_found"}
