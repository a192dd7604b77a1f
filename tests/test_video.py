"""Video inference: smoothing, `emotic predict` on videos, frame folders and bad inputs, restarts, bounded memory,
and the `emotic evaluate` report."""

import csv
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import emotic_cli
from emotic.inference import evaluate, report
from emotic.inference import predict as predict_command
from emotic.training.synthetic import synthetic_video, write_synthetic_affwild2, write_video
from emotic.inference.smoothing import NeighbourFill, StreamingSmoother, smooth_probabilities

MODES = ("mean", "gaussian", "mode")


def soft_run(labels, confidence=0.6, classes=8):
    """Per-frame probabilities: `confidence` on the given class, the rest spread evenly."""
    rows = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    rows[np.arange(len(labels)), labels] = confidence
    return rows


# -- smoothing ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_window_one_is_the_identity(mode):
    probabilities = np.random.default_rng(0).dirichlet(np.ones(8), size=40)
    assert np.array_equal(smooth_probabilities(probabilities, 1, mode), probabilities)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("window", [5, 31])
def test_a_constant_sequence_is_unchanged_up_to_both_ends(mode, window):
    probabilities = soft_run([3] * 12)  # window 31 is longer than the video
    smoothed = smooth_probabilities(probabilities, window, mode)
    if mode == "mode":  # vote shares: all votes for class 3, on every frame including the first and last
        assert np.all(smoothed.argmax(1) == 3) and np.allclose(smoothed[:, 3], 1, atol=1e-5)
    else:
        assert np.allclose(smoothed, probabilities)


@pytest.mark.parametrize("mode", ["mean", "mode"])
def test_an_isolated_one_frame_flip_is_removed_by_window_5(mode):
    labels = [2] * 40
    labels[20] = 5
    probabilities = soft_run(labels, confidence=0.6)
    probabilities[20] = soft_run([5], confidence=0.9)[0]  # a confident flip
    assert smooth_probabilities(probabilities, 1, mode).argmax(1)[20] == 5
    assert np.all(smooth_probabilities(probabilities, 5, mode).argmax(1) == 2)


@pytest.mark.parametrize("mode", ["mean", "gaussian"])
def test_video_ends_use_only_real_frames(mode):
    probabilities = soft_run([1, 1, 6, 6, 6, 6, 6, 6, 6, 6], confidence=0.9)
    smoothed = smooth_probabilities(probabilities, 5, mode)
    assert np.allclose(smoothed.sum(1), 1)  # no zero padding shrinking the ends
    if mode == "mean":  # frame 0 sees frames 0..2 only; the last frame the last three
        assert np.allclose(smoothed[0], probabilities[:3].mean(0))
        assert np.allclose(smoothed[-1], probabilities[-3:].mean(0))
    assert np.allclose(smoothed[-1], probabilities[-1])  # the end of a constant run stays put


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("window", [1, 5, 31])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_streaming_smoothing_equals_smoothing_the_whole_video(mode, window, chunk):
    rng = np.random.default_rng(window * chunk)
    probabilities = rng.dirichlet(np.ones(8) * 0.3, size=101)
    smoother = StreamingSmoother(window, mode)
    parts = [smoother.push(probabilities[i:i + chunk]) for i in range(0, len(probabilities), chunk)]
    streamed = np.concatenate([*parts, smoother.finish()])
    assert np.allclose(streamed, smooth_probabilities(probabilities, window, mode))


@pytest.mark.parametrize("window", [0, 4, -3, 2.5])
def test_a_window_that_cannot_be_centred_is_refused(window):
    with pytest.raises(ValueError, match="odd integer"):
        smooth_probabilities(np.ones((5, 8)) / 8, window)


def test_frames_without_a_face_carry_the_nearest_earlier_prediction():
    rows = np.eye(8)[[0, 1, 2, 3, 4, 5]]
    fill = NeighbourFill()
    out = np.concatenate([fill.push(rows[:3], np.array([False, False, True])),
                          fill.push(rows[3:], np.array([False, True, False])), fill.finish()])
    assert out.argmax(1).tolist() == [2, 2, 2, 2, 4, 4]  # leading ones wait for the first face
    fill = NeighbourFill()
    lonely = np.concatenate([fill.push(rows[:2], np.array([False, False])), fill.finish()])
    assert lonely.argmax(1).tolist() == [0, 1]  # no face anywhere: each keeps its own


# -- emotic predict ---------------------------------------------------------------------------------------------------

def generated_frames(count, size=64, seed=0):
    return [image for image, _, _ in synthetic_video(np.random.default_rng(seed), count, size)]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def predict(model_dir, *args):
    return emotic_cli("predict", model_dir, *args, "--quiet")


def test_predict_writes_per_frame_csv_and_abaw_submission_for_a_video_and_a_frame_folder(model_dir, tmp_path):
    write_video(tmp_path / "clip.mp4", generated_frames(20))
    (tmp_path / "faces").mkdir()
    for index, image in enumerate(generated_frames(11, seed=1)):  # 00010 sorts after 00009, not after 00001
        image.save(tmp_path / "faces" / f"{index + 1}.png")
    out = tmp_path / "out"
    result = predict(model_dir, tmp_path / "clip.mp4", tmp_path / "faces", "--output-dir", out,
                     "--smoothing_window", "5", "--geometry", "template", "--compound_submission")
    assert result.returncode == 0, result.stderr

    lines = (out / "submission.txt").read_text().splitlines()
    assert lines[0] == "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    assert len(lines) == 1 + 20 + 11
    assert lines[1].split(",")[0] == "clip/00001.jpg" and lines[20].split(",")[0] == "clip/00020.jpg"
    assert [line.split(",")[0] for line in lines[21:24]] == ["faces/1.png", "faces/2.png", "faces/3.png"]
    assert all(line.split(",")[1] in {str(i) for i in range(8)} for line in lines[1:])

    rows = read_csv(out / "frames" / "clip.csv")
    assert list(rows[0]) == ["image_location", "frame", "time", "status", "geometry", "raw_label", "label", "Neutral",
                             "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"]
    assert {row["geometry"] for row in rows} == {"template"}  # what each auxiliary view was built from
    assert [(row["frame"], row["time"]) for row in rows[:2]] == [("0", "0.000"), ("1", "0.040")]  # 25 fps
    folder = read_csv(out / "frames" / "faces.csv")  # a frame folder's rate is not known (no --fps): no time
    assert [(row["frame"], row["time"]) for row in folder[9:11]] == [("9", ""), ("10", "")]
    probabilities = np.array([[float(row[name]) for name in list(rows[0])[7:]] for row in rows])
    assert np.allclose(probabilities.sum(1), 1, atol=1e-4)
    labels = [int(row["label"]) for row in rows]
    assert np.all(probabilities[np.arange(len(rows)), labels] >= probabilities.max(1) - 1e-6)  # printed rounded
    assert [row["label"] for row in rows] == [line.split(",")[1] for line in lines[1:21]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["frames"] == 31 and summary["settings"]["smoothing_window"] == 5

    # the compound-expression track, zero-shot: each compound scores the mean of its two basic probabilities
    compound = (out / "submission_compound.txt").read_text().splitlines()
    assert compound[0] == ("image_location,Fearfully_Surprised,Happily_Surprised,Sadly_Surprised,"
                           "Disgustedly_Surprised,Angrily_Surprised,Sadly_Fearful,Sadly_Angry")
    assert len(compound) == 1 + 20 + 11 and [line.split(",")[0] for line in compound[1:]] == \
        [line.split(",")[0] for line in lines[1:]]
    pairs = [("Fear", "Surprise"), ("Happiness", "Surprise"), ("Sadness", "Surprise"), ("Disgust", "Surprise"),
             ("Anger", "Surprise"), ("Sadness", "Fear"), ("Sadness", "Anger")]
    for row, line in zip(rows, compound[1:21]):
        scores = [float(row[a]) + float(row[b]) for a, b in pairs]
        assert int(line.split(",")[1]) == int(np.argmax(scores))


AU_NAMES = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]


@pytest.mark.parametrize("track", ["au", "va"])
def test_predict_writes_each_tracks_columns_and_submission_for_au_and_va_models(tmp_path, track):
    """An action-unit model's per-frame CSV holds each unit's sigmoid probability, smoothed, and the units present;
    its submission 12 0/1 per frame at the model's thresholds. A valence-arousal model's holds the raw and smoothed
    values, and its submission `valence,arousal` in [-1, 1]. Both equal the model's own outputs on the frames."""
    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor
    from emotic.inference import predict as predict_command
    from emotic.inference.smoothing import smooth_probabilities

    torch.manual_seed(0)
    head = {"au": dict(id2label=dict(enumerate(AU_NAMES)), problem_type="multi_label_classification",
                       label_thresholds=[0.3, 0.7] * 6),
            "va": dict(id2label={0: "valence", 1: "arousal"}, problem_type="regression",
                       regression_range=[-1.0, 1.0])}[track]
    model = EmoticForImageClassification(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                      intermediate_size=64, image_size=32, patch_size=8,
                                                      fusion_layer=1, **head)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(std=2.0 if track == "au" else 0.1)  # outputs that vary between frames
    model.save_pretrained(tmp_path / "model")
    processor = EmoticImageProcessor(size=32, geometry="template")
    processor.save_pretrained(tmp_path / "model")
    (tmp_path / "clip").mkdir()
    pictures = generated_frames(12, size=32)
    for index, image in enumerate(pictures):
        image.save(tmp_path / "clip" / f"{index + 1:05d}.png")
    assert predict_command.main([str(tmp_path / "model"), str(tmp_path / "clip"), "--output_dir", str(tmp_path / "out"),
                                 "--smoothing_window", "3", "--quiet"]) == 0

    with torch.no_grad():
        outputs = model(**processor(pictures, return_tensors="pt")).logits
    expected = (outputs.sigmoid() if track == "au" else outputs).numpy()
    smoothed = smooth_probabilities(expected, 3)
    rows = read_csv(tmp_path / "out" / "frames" / "clip.csv")
    lines = (tmp_path / "out" / "submission.txt").read_text().splitlines()
    assert len(rows) == 12 and len(lines) == 1 + 12
    if track == "au":
        assert list(rows[0]) == ["image_location", "frame", "time", "status", "geometry", "raw_units", "units",
                                 *AU_NAMES]
        written = np.array([[float(row[name]) for name in AU_NAMES] for row in rows])
        assert np.allclose(written, smoothed, atol=2e-6)
        thresholds = np.array([0.3, 0.7] * 6)
        assert rows[4]["units"] == "+".join(n for n, on in zip(AU_NAMES, written[4] >= thresholds) if on)
        assert rows[4]["raw_units"] == "+".join(n for n, on in zip(AU_NAMES, expected[4] >= thresholds) if on)
        assert lines[0] == "image_location," + ",".join(AU_NAMES)
        submitted = np.array([[int(v) for v in line.split(",")[1:]] for line in lines[1:]])
        assert np.array_equal(submitted, (written >= thresholds).astype(int))
        assert 0 < submitted.mean() < 1
    else:
        assert list(rows[0]) == ["image_location", "frame", "time", "status", "geometry", "raw_valence", "raw_arousal",
                                 "valence", "arousal"]
        raw = np.array([[float(row["raw_valence"]), float(row["raw_arousal"])] for row in rows])
        written = np.array([[float(row["valence"]), float(row["arousal"])] for row in rows])
        assert np.allclose(raw, expected, atol=2e-6) and np.allclose(written, smoothed, atol=2e-6)
        assert lines[0] == "image_location,valence,arousal" and lines[1].startswith("clip/00001.png,")
        submitted = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
        assert np.allclose(submitted, written, atol=2e-6) and np.abs(submitted).max() <= 1
        assert raw.std(0).min() > 1e-3  # the values follow the frames (no placeholder)
        with pytest.raises(SystemExit):  # a majority vote of labels means nothing for values
            predict_command.main([str(tmp_path / "model"), str(tmp_path / "clip"), "--output_dir",
                                  str(tmp_path / "out2"), "--smoothing_mode", "mode", "--quiet"])


@pytest.mark.parametrize("flags, speedup, expected", [
    ({"avx2", "fma"}, 3.0, torch.float32),  # AVX2 only: bfloat16 would be emulated, many times slower (not measured)
    ({"avx512f", "avx512_bf16"}, 1.6, torch.bfloat16),
    ({"avx512f", "avx512_bf16"}, 0.7, torch.float32),  # in hardware, and still slower than float32: measured so
    ({"amx_bf16", "amx_tile"}, 3.8, torch.bfloat16),
])
def test_dtype_auto_picks_bfloat16_only_where_the_cpu_computes_it_faster(flags, speedup, expected):
    from emotic.inference.runtime import resolve_dtype

    assert resolve_dtype("auto", "cpu", flags, speedup) == expected
    assert resolve_dtype("float32", "cpu", flags, speedup) == torch.float32  # an explicit choice is kept
    if not torch.cuda.is_available():
        assert resolve_dtype("auto", "cuda", flags, speedup) == torch.float32
    with pytest.raises(ValueError, match="--dtype 'int4'; allowed: auto, float32, bfloat16, float16"):
        resolve_dtype("int4", "cpu", flags, speedup)


@pytest.mark.parametrize("option", [["--dtype", "bfloat16"], ["--quantize", "int8"]])
def test_predict_in_bfloat16_or_int8_agrees_with_float32_and_says_which_it_ran(model_dir, tmp_path, option):
    (tmp_path / "faces").mkdir()
    for index, image in enumerate(generated_frames(12, seed=4)):
        image.save(tmp_path / "faces" / f"{index + 1:05d}.png")
    runs = {}
    for name, extra in (("float32", []), ("other", option)):
        result = predict(model_dir, tmp_path / "faces", "--output_dir", tmp_path / name, "--geometry", "template",
                         *extra)
        assert result.returncode == 0, result.stderr
        rows = read_csv(tmp_path / name / "frames" / "faces.csv")
        runs[name] = np.array([[float(row[key]) for key in list(rows[0])[5:]] for row in rows])
    assert np.abs(runs["float32"] - runs["other"]).max() < 0.02  # probabilities of 8 classes, printed to 1e-6
    settings = json.loads((tmp_path / "other" / "summary.json").read_text())["settings"]
    assert settings["precision"] == {"--dtype": "bfloat16", "--quantize": "int8 (dynamic)"}[option[0]]


def test_int8_is_refused_on_a_gpu_device_naming_it(model_dir, tmp_path):
    generated_frames(1)[0].save(tmp_path / "face.png")
    result = predict(model_dir, tmp_path / "face.png", "--quantize", "int8", "--device", "cuda",
                     "--output_dir", tmp_path / "o")
    assert result.returncode == 2 and "--quantize int8 runs on the CPU" in result.stderr


def test_a_video_header_gives_its_declared_frames_or_its_durations_worth(tmp_path):
    """What predict (a cut-off file) and the app (the length limit, the progress bar) read before decoding: MP4
    declares its 50 frames; WebM declares none, so its 2 s at 25 frames/s stand in, scaled by `share`."""
    import av

    from emotic.inference.sources import VideoHeader

    headers = {}
    for suffix in ("mp4", "webm"):
        assert write_video(tmp_path / f"clip.{suffix}", generated_frames(50, size=32)) == 50
        with av.open(str(tmp_path / f"clip.{suffix}")) as container:
            headers[suffix] = VideoHeader.read(container, container.streams.video[0])
    assert headers["mp4"].declared_frames == 50 and headers["mp4"].frames(share=0.95) == 50
    webm = headers["webm"]
    assert webm.declared_frames == 0 and webm.fps == 25 and abs(webm.seconds - 2.0) < 0.1
    assert abs(webm.frames() - 50) <= 2 and webm.frames(share=0.95) < webm.frames()


def test_unreadable_and_zero_frame_videos_are_reported_and_counted_not_crashed(model_dir, tmp_path):
    import av

    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00 ftypisom" + os.urandom(2000))
    with av.open(str(tmp_path / "empty.mp4"), mode="w") as container:  # a header and no frame
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 64
        container.start_encoding()
    write_video(tmp_path / "good.mp4", generated_frames(6))
    result = predict(model_dir, tmp_path / "broken.mp4", tmp_path / "empty.mp4", tmp_path / "good.mp4",
                     "--output-dir", tmp_path / "out", "--geometry", "template")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "skipped broken:" in result.stderr and "cannot be read as a video" in result.stderr
    assert "skipped empty:" in result.stderr and "no video frames" in result.stderr
    assert "2 inputs could not be read" in result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["skipped"]) == {"broken", "empty"} and summary["totals"]["skipped_videos"] == 2
    assert summary["totals"]["frames"] == 6
    assert len((tmp_path / "out" / "submission.txt").read_text().splitlines()) == 1 + 6
    assert not list((tmp_path / "out" / "frames").glob("*.partial"))


def test_missing_inputs_are_refused_before_any_work(model_dir, tmp_path, capsys):
    def refused(*args):
        with pytest.raises(SystemExit) as exit_info:
            predict_command.main([str(model_dir), *map(str, args), "--output-dir", str(tmp_path / "out"), "--quiet"])
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    assert "nowhere.mp4: no such file or folder" in refused(tmp_path / "nowhere.mp4")
    (tmp_path / "empty_folder").mkdir()
    assert "no frame images" in refused(tmp_path / "empty_folder")
    generated_frames(1)[0].save(tmp_path / "empty_folder" / "00001.jpg")
    assert "odd integer" in refused(tmp_path / "empty_folder", "--smoothing_window", "4")
    assert not (tmp_path / "out").exists()


def test_frames_without_a_face_carry_the_previous_prediction_and_are_counted(model_dir, tmp_path):
    faces = generated_frames(12, size=128, seed=0)  # a drawn person dlib's HOG detector finds in every frame
    blank = Image.new("RGB", (128, 128), (90, 140, 200))
    frames = faces[:5] + [blank] * 3 + faces[5:]
    write_video(tmp_path / "gaps.mp4", frames)
    # --detector hog: BlazeFace, trained on real faces, finds few of these drawn ones
    result = predict(model_dir, tmp_path / "gaps.mp4", "--output-dir", tmp_path / "out", "--geometry", "detector",
                     "--detector", "hog", "--smoothing_window", "1",
                     "--faces", "largest")  # one person: the largest face's behaviour
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "out" / "frames" / "gaps.csv")
    assert [row["status"] for row in rows[5:8]] == ["no_face"] * 3
    assert sum(row["status"] == "face" for row in rows) >= 6
    # the auxiliary view of a frame without a face is the whole frame's template boxes, and the CSV says so
    assert [row["geometry"] for row in rows] == ["detector" if row["status"] == "face" else "full_image"
                                                 for row in rows]
    first_face = next(i for i, row in enumerate(rows) if row["status"] == "face")
    for index in range(first_face + 1, len(rows)):
        if rows[index]["status"] == "no_face":
            assert rows[index]["label"] == rows[index - 1]["label"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["totals"]["no_face"] == sum(row["status"] == "no_face" for row in rows) >= 3
    assert f"{summary['totals']['no_face']} without a face" in result.stdout
    views = summary["totals"]["geometries"]
    assert views == {"detector": summary["totals"]["face"], "full_image": summary["totals"]["no_face"]}
    assert f"auxiliary views: detector {views['detector']}, full_image {views['full_image']}" in result.stdout


def test_a_restarted_run_skips_finished_videos_and_refuses_changed_settings(model_dir, tmp_path):
    for name, seed in (("a", 3), ("b", 4)):
        write_video(tmp_path / f"{name}.mp4", generated_frames(8, seed=seed))
    out = tmp_path / "out"
    args = [tmp_path / "a.mp4", tmp_path / "b.mp4", "--output-dir", out, "--geometry", "template"]
    assert predict(model_dir, *args).returncode == 0
    finished = (out / "frames" / "a.csv").stat().st_mtime_ns
    (out / "frames" / "b.csv").unlink()  # as if the run had been killed while on b
    (out / "frames" / "b.csv.partial").write_text("image_location,status\nb/00001.jpg,face\n")
    result = predict(model_dir, *args)
    assert result.returncode == 0 and "(1 already done)" in result.stdout
    assert (out / "frames" / "a.csv").stat().st_mtime_ns == finished
    assert len(read_csv(out / "frames" / "b.csv")) == 8
    assert len((out / "submission.txt").read_text().splitlines()) == 1 + 16
    result = predict(model_dir, *args, "--smoothing_window", "9")
    assert result.returncode == 2 and "smoothing_window" in result.stderr and "--overwrite" in result.stderr


def test_the_emotic_command_reuses_freed_memory_unless_the_user_tuned_malloc():
    """Batch after batch of 64 MiB tensors (the batches of `emotic predict`): once the heap has grown to hold them
    (a few batches: where a small allocation lands after a freed block, the next one cannot reuse it and the heap
    grows once more), each one's memory is a freed one's, without a page fault per 4 KiB; with the user's own
    `MALLOC_*` setting the command leaves glibc as it is and every batch faults in fresh pages."""
    code = ("import resource, torch\nfrom emotic.cli import keep_freed_memory\napplied = keep_freed_memory()\n"
            "faults = []\nfor _ in range(16):\n"
            "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n    torch.ones(16 << 20)\n"
            "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
            "print(applied, *faults[-4:])")
    runs = {}
    for name, extra in (("default", {}), ("user's setting", {"MALLOC_ARENA_MAX": "2"})):
        result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **extra}, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        applied, *faults = result.stdout.split()
        runs[name] = applied == "True", [int(count) for count in faults]
    assert runs["default"][0] and sum(runs["default"][1]) < 1_000, runs  # memory reused
    assert not runs["user's setting"][0] and min(runs["user's setting"][1]) > 8_000, runs  # 16,384 fresh pages each


@pytest.mark.minutes(2.5)
def test_memory_does_not_grow_with_the_length_of_the_stream(model_dir, tmp_path):
    pictures = generated_frames(48, size=32)
    peaks = {}
    for length in (2_000, 20_000):
        path = tmp_path / f"stream{length}.mp4"
        write_video(path, itertools.islice(itertools.cycle(pictures), length))
        code = ("from emotic.cli import main\n"  # the command, as it holds freed memory
                f"assert main(['predict', {str(model_dir)!r}, {str(path)!r},"
                f" '--output-dir', {str(tmp_path / str(length))!r},"
                " '--smoothing_window', '15', '--geometry', 'template', '--quiet']) == 0\n"
                # this process's own peak (VmHWM, kB): ru_maxrss would carry over exec the peak of the test's
                # process, which can exceed predict's, and make both lengths read the same
                "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        assert f"{length} frames" in result.stdout
        peaks[length] = int(result.stdout.split()[-1]) / 1024  # MiB
    # 18,000 more frames of 32x32x3 kept in memory would add ~53 MiB; probabilities alone ~1 MiB
    assert peaks[20_000] - peaks[2_000] < 16, peaks


# -- emotic evaluate --------------------------------------------------------------------------------------------------

def test_evaluate_writes_the_report_and_the_chosen_window_becomes_predicts_default(model_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    write_synthetic_affwild2(data, num_videos=3, frames_per_video=24, size=64, validation_videos=2, seed=5)
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    report = tmp_path / "report"
    assert evaluate.main([str(model), str(data), "--output-dir", str(report), "--geometry", "template",
                          "--smoothing_windows", "1,3,5,9", "--save_smoothing", "--quiet"]) == 0
    for name in ("metrics.json", "confusion_matrix.png", "per_class_f1.png", "smoothing.png", "examples.png",
                 "report.md"):
        assert (report / name).is_file(), name
    for name in ("confusion_matrix.png", "per_class_f1.png", "smoothing.png", "examples.png"):
        with Image.open(report / name) as image:
            image.load()
            assert image.format == "PNG" and min(image.size) > 100
    metrics = json.loads((report / "metrics.json").read_text())
    labelled = sum(1 for txt in (data / "annotations" / "Validation_Set").glob("*.txt")
                   for line in txt.read_text().splitlines()[1:] if int(line) >= 0)
    assert metrics["raw"]["num_frames"] == labelled  # every labelled frame, with or without an image
    curve = metrics["smoothing"]["macro_f1_by_window"]
    assert list(curve) == ["1", "3", "5", "9"] and curve["1"] == metrics["raw"]["macro_f1"]
    best = metrics["smoothing"]["window"]
    assert curve[str(best)] == max(curve.values()) == metrics["smoothed"]["macro_f1"]
    text = (report / "report.md").read_text()
    assert all(f"({name})" in text for name in ("confusion_matrix.png", "per_class_f1.png", "smoothing.png",
                                                "examples.png"))
    assert json.loads((model / "config.json").read_text())["smoothing_window"] == best

    result = predict(model, data / "cropped_aligned" / "synth-002", "--output-dir", tmp_path / "out",
                     "--geometry", "template")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]["smoothing_window"] == best


def test_evaluate_refuses_a_folder_that_is_not_a_dataset(model_dir, tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(SystemExit):
        evaluate.main([str(model_dir), str(tmp_path), "--output-dir", str(tmp_path / "r"), "--quiet"])
    with pytest.raises(SystemExit):
        evaluate.main([str(model_dir), str(tmp_path), "--output-dir", str(tmp_path / "r"),
                       "--smoothing_windows", "2,4"])


@pytest.mark.parametrize("folder", ["EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"])
def test_evaluate_reads_the_official_expression_folders_as_emotic_synths(model_dir, tmp_path, folder):
    from emotic.training.synthetic import write_synthetic_affwild2

    write_synthetic_affwild2(tmp_path / "data", num_videos=2, frames_per_video=8, size=32, validation_videos=1)
    reference = evaluated_scores(model_dir, tmp_path / "data", tmp_path / "r1")
    (tmp_path / "data" / "annotations").rename(tmp_path / "data" / folder)  # the layout Aff-Wild2 ships
    assert evaluated_scores(model_dir, tmp_path / "data", tmp_path / "r2") == reference
    assert reference["raw"]["num_frames"] > 0


TRACK_HEADS = {
    "au": dict(id2label=dict(enumerate(AU_NAMES)), problem_type="multi_label_classification",
               label_thresholds=[0.3, 0.7] * 6),
    "va": dict(id2label={0: "valence", 1: "arousal"}, problem_type="regression", regression_range=[-1.0, 1.0]),
    "multitask": dict(tasks=["va", "expr", "au"], regression_range=[-1.0, 1.0], label_thresholds=[0.4] * 12),
}


@pytest.mark.parametrize("track", ["au", "va", "multitask"])
def test_evaluate_scores_each_track_as_its_metric_scores_predicts_outputs_and_draws_its_figures(tmp_path, track):
    """`emotic evaluate` on an action-unit, valence-arousal or multi-task model reads the track's annotations (the
    challenge folders, or ABAW7's multi-task file), and its raw and smoothed scores are the track's metric of what
    `emotic predict` writes for the same frames (window 1 and 3) against the annotations; the report has the
    track's figures (per-AU F1 bars, the VA scatter, the score and each CCC over the smoothing window)."""
    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor
    from emotic.training.metrics import track_metrics
    from emotic.training.affwild2 import affwild2_annotations, read_affwild2, read_multitask_annotations

    data = tmp_path / "data"
    write_synthetic_affwild2(data, num_videos=3, frames_per_video=24, size=64, validation_videos=2, seed=5,
                             missing_fraction=0.0, unlabelled_fraction=0.1)
    torch.manual_seed(0)
    model = EmoticForImageClassification(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                      intermediate_size=64, image_size=32, patch_size=8,
                                                      fusion_layer=1, **TRACK_HEADS[track]))
    with torch.no_grad():  # outputs that vary between frames, valence and arousal well inside the tanh's range
        model.classifier.weight.normal_(std=1.0 if track == "au" else 0.1)
    model.save_pretrained(tmp_path / "model")
    EmoticImageProcessor(size=32, geometry="template").save_pretrained(tmp_path / "model")
    report = tmp_path / "report"
    assert evaluate.main([str(tmp_path / "model"), str(data), "--output-dir", str(report), "--smoothing_windows",
                          "1,3", "--quiet"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    score = {"au": "au_score", "va": "va_score", "multitask": "mtl_score"}[track]
    assert metrics["track"] == track and metrics["score"] == score
    figures = {"au": ["per_au_f1.png"], "va": ["va_scatter.png"],
               "multitask": ["per_au_f1.png", "per_class_f1.png", "va_scatter.png"]}[track]
    for name in ("smoothing.png", *figures):
        with Image.open(report / name) as image:
            image.load()
            assert image.format == "PNG" and min(image.size) > 100
        assert f"({name})" in (report / "report.md").read_text()
    if track != "au":
        assert len(metrics["smoothing"]["components"]["ccc_valence"]) == 2  # each CCC over the windows

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    videos = ["synth-001", "synth-002"]  # the validation videos
    if track == "multitask":
        held_out, _ = read_multitask_annotations(affwild2_annotations(data, "multitask", "Validation_Set"),
                                                 data / "cropped_aligned")
        labels, keep = np.array(held_out["label"]), {f"{v}/{f}" for v, f in zip(held_out["video"], held_out["frame"])}
    else:
        held_out, _ = read_affwild2(affwild2_annotations(data, track, "Validation_Set"), data / "cropped_aligned",
                                    task=track)  # the annotated frames
        labels, keep = np.array(held_out["label"]), {f"{v}/{f}" for v, f in zip(held_out["video"], held_out["frame"])}
    for window in (1, 3) if track != "multitask" else (1,):  # ABAW7's file lists sampled frames: raw only
        out = tmp_path / f"predicted-{window}"
        assert predict_command.main([str(tmp_path / "model"), *(str(data / "cropped_aligned" / v) for v in videos),
                                     "--output_dir", str(out), "--smoothing_window", str(window), "--quiet"]) == 0
        rows = [row for v in videos for row in read_csv(out / "frames" / f"{v}.csv") if row["image_location"] in keep]
        outputs = np.array([[float(row[name]) for name in names] for row in rows])
        if track != "au":  # the CCCs compare values that vary, not saturated ones
            assert outputs[:, :2].std(0).min() > 1e-3
        expected = track_metrics(track, outputs, labels, names, model.config.label_thresholds)
        assert metrics["smoothing"][f"{score}_by_window"][str(window)] == pytest.approx(expected[score], abs=1e-5)
    best = metrics["smoothing"]["window"]
    assert metrics["raw"][score] == metrics["smoothing"][f"{score}_by_window"]["1"] != 0
    assert metrics["smoothed"][score] == max(metrics["smoothing"][f"{score}_by_window"].values()) == \
        metrics["smoothing"][f"{score}_by_window"][str(best)]

    # the report goes into the card: the track's scores, as measured here
    import yaml

    from emotic.hub_cards.export import export

    card = (export(tmp_path / "model", tmp_path / "export", evaluation=report / "metrics.json") / "README.md")
    (result,) = yaml.safe_load(card.read_text().split("---\n")[1])["model-index"][0]["results"]
    assert round(metrics["raw"][score], 4) == result["metrics"][0]["value"]
    if track == "au":
        assert result["metrics"][0]["name"].endswith("thresholds in config.label_thresholds)")  # evaluate used them


def evaluated_scores(model_dir, data, output):
    assert evaluate.main([str(model_dir), str(data), "--output-dir", str(output), "--geometry", "template",
                          "--smoothing_windows", "1,3", "--quiet"]) == 0
    return {key: json.loads((output / "metrics.json").read_text())[key] for key in ("raw", "smoothed")}


def test_evaluate_on_an_image_folder_scores_each_image_once_without_smoothing(model_dir, tmp_path):
    for name, seed in (("Happiness", 1), ("sadness", 2)):  # class folders match labels case-insensitively
        (tmp_path / "faces" / name).mkdir(parents=True)
        for index, image in enumerate(generated_frames(3, seed=seed)):
            image.save(tmp_path / "faces" / name / f"{index}.png")
    assert evaluate.main([str(model_dir), str(tmp_path / "faces"), "--output-dir", str(tmp_path / "report"),
                          "--geometry", "template", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["split"] == "image folder" and metrics["raw"]["num_frames"] == 6
    assert list(metrics["smoothing"]["macro_f1_by_window"]) == ["1"]
    assert (tmp_path / "report" / "examples.png").is_file() and (tmp_path / "report" / "report.md").is_file()


def test_the_report_draws_the_fusion_attention_over_the_auxiliary_view(model_dir):
    from emotic import EmoticConfig, EmoticForImageClassification
    from emotic.inference.runtime import load_model

    model, processor = load_model(str(model_dir), "cpu")
    implementation = model.config._attn_implementation
    views = processor(generated_frames(3), return_tensors="pt", geometry="template")
    maps = report.fusion_maps(model, views)
    assert maps.shape == (3, 4, 4)  # one value per auxiliary patch of a 32-px view with 8-px patches
    assert (maps >= 0).all() and np.all(maps.sum(axis=(1, 2)) <= 1 + 1e-6) and np.all(maps.sum(axis=(1, 2)) > 0)
    assert model.config._attn_implementation == implementation  # eager only while drawing
    baseline = EmoticForImageClassification(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=64, image_size=32, patch_size=8,
                                                         fusion_strategy="none"))
    assert report.fusion_maps(baseline, views) is None  # no fusion block: nothing to draw
