"""Live sources (`emotic.inference.live`): a stream on standard input and an HTTP stream served at real-time pace
by a loopback server (tests/live_server.py) give the rows of the same video read as a file, as do HLS, RTSP and a
temporal head on a piped stream; a model slower than the stream drops frames and holds --max_latency, and the drop
rule does so on a simulated loop; Ctrl-C mid-stream leaves every file complete; sources that are not streams are
refused in one line."""

import csv
import json
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import emotic_cli

HERE = Path(__file__).parent


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def without_location(rows):
    return [{key: value for key, value in row.items() if key != "image_location"} for row in rows]


@pytest.fixture(scope="module")
def stream_file(two_people, tmp_path_factory):
    """The two-person video (48 frames at 10 fps: 4.8 seconds, real faces) as MPEG-TS, what live encoders send."""
    from PIL import Image

    from emotic.training.synthetic import write_video

    frames, _ = two_people
    path = tmp_path_factory.mktemp("live") / "two.ts"
    write_video(path, [Image.fromarray(frame) for frame in frames], fps=10)
    return path


@contextmanager
def served(path, seconds: float, *options):
    """tests/live_server.py serving `path` at real-time pace over HTTP on loopback; its URL."""
    server = subprocess.Popen([sys.executable, str(HERE / "live_server.py"), str(path), str(seconds), *options],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}/{Path(path).name}"
    finally:
        server.kill()
        server.wait()


def predict_command(model_dir, source, output, *options):
    return [sys.executable, "-m", "emotic.cli", "predict", str(model_dir), source, "--output_dir", str(output),
            "--quiet", *options]


def test_a_piped_and_an_http_live_stream_give_the_rows_of_the_same_video_read_as_a_file(model_dir, stream_file,
                                                                                        tmp_path):
    """Every face tracked, smoothed per person: a stream piped on standard input (`ffmpeg ... | emotic predict
    MODEL - --no_drop`: a file piped in comes faster than real time, and is held back instead of dropped) and the same
    stream over HTTP at real-time pace give the file's rows, value for value, with nothing dropped, each live row's
    latency measured; `--jsonl -` streams the same rows as JSON lines."""
    assert emotic_cli("predict", model_dir, stream_file, "--output_dir", tmp_path / "file", "--smoothing_window", "5",
                      "--detect_every", "5", "--quiet").returncode == 0  # what a live source does by default
    expected = without_location(read_rows(tmp_path / "file" / "frames" / "two.csv"))
    assert len({row["track"] for row in expected}) == 2  # both people, tracked

    with open(stream_file, "rb") as handle:
        piped = subprocess.run(predict_command(model_dir, "-", tmp_path / "pipe", "--smoothing_window", "5",
                                               "--no_drop", "--jsonl", "-"), stdin=handle, capture_output=True,
                               text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr[-3000:]
    rows = read_rows(tmp_path / "pipe" / "frames" / "stdin.csv")
    assert without_location(rows) == expected
    # --jsonl -: standard output is a JSON line per row (for other programs), the command's own line on stderr
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert len(lines) == len(rows) and all(line.pop("video") == "stdin" for line in lines)
    for line, row in zip(lines, rows):
        assert line.keys() == row.keys() and isinstance(line["Neutral"], float) and isinstance(line["track"], int)
        assert all(line[key] is None if row[key] == "" else
                   (float(row[key]) == line[key] if isinstance(line[key], (int, float)) else row[key] == line[key])
                   for key in row)
    assert "inputs predicted" in piped.stderr
    faces = json.loads((tmp_path / "pipe" / "predict_settings.json").read_text())["faces"]
    assert faces["detect_every"] == 1 and faces["live_detect_every"] == 5  # files, live sources

    with served(stream_file, 4.8) as url:
        started = time.monotonic()
        live = subprocess.run(predict_command(model_dir, url, tmp_path / "http", "--smoothing_window", "5"),
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert time.monotonic() - started > 4.0  # the stream came at its own pace
    assert live.returncode == 0, live.stderr[-3000:]
    rows = read_rows(tmp_path / "http" / "frames" / "two.csv")
    assert without_location(rows) == expected and rows[0]["image_location"].startswith("two/")
    counts = json.loads((tmp_path / "http" / "summary.json").read_text())["videos"]["two"]
    assert counts["dropped"] == 0 and counts["stopped"] is None
    assert 0 <= counts["latency_p50"] <= counts["latency_p95"] < 5  # decoded to written, the smoothing lag within


def test_hls_and_mjpeg_over_http_are_read_as_live_streams(model_dir, stream_file, tmp_path):
    """HLS (a playlist of MPEG-TS segments, the stream's packets unchanged) gives the rows of the file; MJPEG (JPEG
    pictures in one multipart HTTP answer, as webcams serve them) a row per frame for both people. FFmpeg reads the
    end of an MJPEG answer as a break (it has no end it knows): the output is marked incomplete with the reason (exit
    status 1), every frame read written."""
    assert emotic_cli("predict", model_dir, stream_file, "--output_dir", tmp_path / "file", "--detect_every", "5",
                      "--quiet").returncode == 0  # what a live source does by default
    expected = without_location(read_rows(tmp_path / "file" / "frames" / "two.csv"))
    with served(stream_file, 4.8, "--hls", str(tmp_path / "segments")) as url:
        hls = subprocess.run(predict_command(model_dir, url.replace("two.ts", "index.m3u8"), tmp_path / "hls",
                                             "--no_drop"), capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
    assert hls.returncode == 0, hls.stderr[-3000:]
    assert len(list((tmp_path / "segments").glob("index*.ts"))) > 1  # several segments
    assert without_location(read_rows(tmp_path / "hls" / "frames" / "index.csv")) == expected

    with served(stream_file, 4.8, "--mjpeg") as url:
        mjpeg = subprocess.run(predict_command(model_dir, url.replace("two.ts", "camera.mjpg"), tmp_path / "mjpeg"),
                               capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    rows = read_rows(tmp_path / "mjpeg" / "frames" / "camera.csv")
    assert sorted({int(row["frame"]) for row in rows}) == list(range(48))
    assert {row["track"] for row in rows} == {"1", "2"} and {row["status"] for row in rows} == {"face"}
    summary = json.loads((tmp_path / "mjpeg" / "summary.json").read_text())
    assert summary["videos"]["camera"]["frames"] == 48 and "after 48 frames" in summary["incomplete"]["camera"]
    assert mjpeg.returncode == 1 and "predicted only in part: camera" in mjpeg.stderr  # as for any break


def test_a_model_slower_than_the_stream_drops_frames_and_holds_max_latency(model_dir, stream_file, tmp_path,
                                                                           monkeypatch):
    """A model that takes 0.25 s a batch of 2 frames (8 frames a second) on a 10 fps stream: frames it cannot take
    within --max_latency are dropped (a row each, status `dropped`, counted), rows stay in order, and no row is
    written later than the latency bound plus the batches in flight."""
    from emotic.inference import predict, runtime

    original = runtime.FrameModel.compute

    def slow(self, *args, **kwargs):
        time.sleep(0.25)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(runtime.FrameModel, "compute", slow)
    with served(stream_file, 4.8) as url:
        code = predict.main([str(model_dir), url, "--output_dir", str(tmp_path / "out"), "--faces", "largest",
                             "--geometry", "template", "--batch_size", "2", "--max_latency", "0.5", "--quiet"])
    assert code == 0
    rows = read_rows(tmp_path / "out" / "frames" / "two.csv")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    counts = summary["videos"]["two"]
    dropped = sum(row["status"] == "dropped" for row in rows)
    assert [int(row["frame"]) for row in rows] == list(range(48))  # a row for every frame, dropped ones too
    assert 0 < dropped == counts["dropped"] == summary["totals"]["dropped"] < 48
    assert counts["latency_p95"] < 0.5 + 4 * 0.25 + 0.5  # --max_latency, the batches in flight, a margin


def simulated_loop(prepare, model, fixed, fps=25.0, seconds=60.0, max_latency=2.0, batch_size=32, seed=0):
    """The live loop on a clock of its own: frames arrive at `fps`; a batch's faces and views take `fixed + prepare`
    seconds a frame while the model runs the batch before (`fixed + model` a frame), each time off by up to 30% at
    random, as `runtime.pipelined` runs them; `Pace` decides at every take and is told each stage's times.
    (fraction dropped, latencies of the rows)."""
    from emotic.inference.live import Pace

    rng = np.random.default_rng(seed)
    arrivals = list(np.arange(int(fps * seconds)) / fps)
    pace, queue, latencies, dropped = Pace(max_latency), [], [], 0
    called = model_free = 0.0
    model_batch = None  # (frames, seconds) of the batch in the model, told once it is done
    while arrivals or queue:
        while arrivals and arrivals[0] <= called:
            queue.append(arrivals.pop(0))
        if not queue:  # the loop waits for a frame
            called = arrivals[0]
            continue
        drop, keep = pace.select([called - arrived for arrived in queue], batch_size)
        batch, dropped = queue[drop:drop + keep], dropped + drop
        del queue[:drop + keep]
        pace.taken(keep)
        preparing = (fixed + prepare * keep) * rng.uniform(0.7, 1.3)
        if model_batch is not None:
            pace.timed("model", *model_batch)
        pace.timed("prepare", keep, preparing)
        called = max(called + preparing, model_free)  # the model takes this batch, and the next is asked for
        model_batch = (keep, (fixed + model * keep) * rng.uniform(0.7, 1.3))
        model_free = called + model_batch[1]
        latencies += [model_free - arrived for arrived in batch]
    return dropped / int(fps * seconds), np.asarray(latencies)


@pytest.mark.parametrize("prepare, model, fixed", [
    (0.07, 0.03, 0.0),  # the face detector holds the loop (detection on every frame)
    (0.03, 0.09, 0.05),  # the model holds it, and a batch costs more than its frames
    (0.07, 0.08, 0.05),  # both about as slow
    (0.02, 0.03, 0.05),  # faster than the stream: nothing may be dropped
])
def test_the_drop_rule_holds_max_latency_and_drops_no_more_than_the_loop_cannot_take(prepare, model, fixed):
    """`Pace`, the rule that drops live frames, over a minute of a 25 fps stream: with a loop slower than the stream,
    rows are written within --max_latency (p95) and the frames dropped are about those the slower stage has no time
    for (not many more); with a faster loop, none is dropped. (The rule before, two batches' time estimated from the
    pace of the takes alone, let ViT-B's rows come 3.4 s late under a 2 s bound: a batch's own size was left out.)"""
    dropped, latencies = simulated_loop(prepare, model, fixed)
    assert np.percentile(latencies, 95) <= 2.0
    must = max(0.0, 1 - 1 / (25 * max(prepare, model)))  # what the slower stage cannot take at its per-frame cost
    assert must - 0.02 <= dropped <= must + 0.08  # a batch's fixed cost aside
    assert (dropped == 0) == (must == 0)


def test_ctrl_c_mid_stream_writes_every_file_complete_for_the_frames_read(model_dir, stream_file, tmp_path):
    """SIGINT while a live stream plays (its rows being followed in the partial CSV): predict stops reading,
    finishes the frames it has, and writes the CSV, the submission and the summary, consistent with each other."""
    with served(stream_file, 4.8) as url:
        process = subprocess.Popen(predict_command(model_dir, url, tmp_path / "out", "--faces", "largest",
                                                   "--geometry", "template"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:  # the rows are flushed as they come: wait for a few
            partial = list((tmp_path / "out" / "frames").glob("two.csv.*.partial"))
            if partial and len(partial[0].read_text().splitlines()) > 6:
                break
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    assert "stopping two" in err
    rows = read_rows(tmp_path / "out" / "frames" / "two.csv")
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"]["two"]
    assert 5 < len(rows) < 48 and counts["frames"] == len(rows) and counts["stopped"] == "SIGINT"
    assert [int(row["frame"]) for row in rows] == list(range(len(rows)))
    assert len((tmp_path / "out" / "submission.txt").read_text().splitlines()) == 1 + len(rows)
    assert not list((tmp_path / "out" / "frames").glob("*.partial"))


def test_a_temporal_head_on_a_piped_stream_writes_the_rows_of_the_same_video_read_as_a_file(model_dir, stream_file,
                                                                                           tmp_path, speech_encoders):
    """`--temporal_model` on a live source: its windows run as the frames come (`TemporalHead.trailing`), and the
    rows are those of the same video read as a file (the whole video's windows), to float rounding. A head that
    hears takes video files: with a live source it is refused in one line, nothing written."""
    from transformers import AutoConfig

    from emotic import EmoticTemporalConfig, EmoticTemporalModel

    width = AutoConfig.from_pretrained(model_dir).hidden_size
    torch.manual_seed(0)
    EmoticTemporalModel(EmoticTemporalConfig(feature_size=width, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, window_size=8,
                                             window_stride=3)).save_pretrained(tmp_path / "head")
    options = ["--temporal_model", str(tmp_path / "head"), "--faces", "largest"]
    assert emotic_cli("predict", model_dir, stream_file, "--output_dir", tmp_path / "file", *options,
                      "--quiet").returncode == 0
    with open(stream_file, "rb") as handle:
        piped = subprocess.run(predict_command(model_dir, "-", tmp_path / "pipe", "--no_drop", *options),
                               stdin=handle, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr[-3000:]
    expected = read_rows(tmp_path / "file" / "frames" / "two.csv")
    rows = read_rows(tmp_path / "pipe" / "frames" / "stdin.csv")
    assert len(rows) == len(expected) == 48
    columns = list(expected[0])
    labels = columns[columns.index("label") + 1:]  # the head's probabilities
    assert labels and list(rows[0]) == columns
    for row, want in zip(rows, expected):
        assert row["frame"] == want["frame"] and row["status"] == want["status"]
        assert np.allclose([float(row[name]) for name in labels], [float(want[name]) for name in labels], atol=3e-6)

    EmoticTemporalModel(EmoticTemporalConfig(
        feature_size=width, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        window_size=8, window_stride=3, modalities=["vision", "audio"], audio_size=32,
        audio_settings={"audio_model": "wav2vec2"})).save_pretrained(tmp_path / "hears")
    with open(stream_file, "rb") as handle:
        hears = subprocess.run(predict_command(model_dir, "-", tmp_path / "hears-out", "--temporal_model",
                                               str(tmp_path / "hears"), "--audio_model",
                                               str(speech_encoders / "wav2vec2")),
                               stdin=handle, capture_output=True, text=True, timeout=300)
    assert hears.returncode == 2 and "-: the temporal head" in hears.stderr and "not live streams" in hears.stderr
    assert "Traceback" not in hears.stderr and not (tmp_path / "hears-out" / "frames").exists()


def test_an_rtsp_camera_gives_the_rows_of_its_stream_saved_as_a_file(model_dir, stream_file, tmp_path):
    """An IP camera: H.264 over RTSP (RTP over UDP, the server refusing RTP over TCP, which predict asks for first)
    from a loopback server (tests/live_server.py --rtsp) at real-time pace. The camera never ends its stream: once the
    last frame's rows are in, Ctrl-C; the rows equal those of the same packets saved as a file (--no_drop: a busy test
    machine must not make it drop frames)."""
    (tmp_path / "saved").mkdir()
    server = subprocess.Popen([sys.executable, str(HERE / "live_server.py"), str(stream_file), "4.8", "--rtsp",
                               str(tmp_path / "saved" / "two.ts")], stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port.isdigit(), f"the RTSP server did not start (exit status {server.poll()})"
        process = subprocess.Popen(predict_command(model_dir, f"rtsp://127.0.0.1:{port}/two", tmp_path / "out",
                                                   "--no_drop"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:  # the rows are flushed as they come: wait for the last frame's
            partial = list((tmp_path / "out" / "frames").glob("two.csv.*.partial"))
            if partial and ",47," in partial[0].read_text():
                break
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        server.kill()
        server.wait()
    assert process.returncode == 0, err[-3000:]
    assert emotic_cli("predict", model_dir, tmp_path / "saved" / "two.ts", "--output_dir", tmp_path / "file",
                      "--detect_every", "5", "--quiet").returncode == 0  # as a live source by default
    expected = without_location(read_rows(tmp_path / "file" / "frames" / "two.csv"))
    rows = read_rows(tmp_path / "out" / "frames" / "two.csv")
    assert len({row["track"] for row in expected}) == 2 and without_location(rows) == expected
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"]["two"]
    assert counts["stopped"] == "SIGINT" and counts["frames"] == 48 and counts["dropped"] == 0


def test_a_stream_cut_and_back_is_reconnected_with_the_gap_as_missing_frames_and_the_same_ids(tmp_path):
    """A network fault: the stream is cut at 3 s and refuses connections for 0.6 s, then goes on (a client joining
    where it is now, decoding from its next key frame). With --reconnect, predict opens it again, writes the frames
    of the gap as rows with status `missing` (frame numbers and times stay the stream's), and both people keep their
    ids across the gap (--max_gap 5); the summary counts the reconnection and the missing frames."""
    import av
    from people import compose_people, two_people_layout
    from PIL import Image

    path = tmp_path / "two.ts"
    with av.open(str(path), mode="w") as container:  # key frames every half second: a joining client resyncs soon
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 640, 360, "yuv420p", 5
        for frame in compose_people(two_people_layout(frames=90, absent=(0, 0))):
            container.mux(stream.encode(av.VideoFrame.from_image(Image.fromarray(frame))))
        container.mux(stream.encode())
    model_dir = tmp_path / "model"
    from conftest import save_tiny_classifier

    save_tiny_classifier(model_dir, seed=0)
    with served(path, 9.0, "--cut", "3.0", "0.6") as url:
        result = subprocess.run(predict_command(model_dir, url, tmp_path / "out", "--reconnect", "3", "--max_gap",
                                                "5"), capture_output=True, text=True, timeout=300,
                                stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "out" / "frames" / "two.csv")
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"]["two"]
    frames = sorted({int(row["frame"]) for row in rows})
    missing = [int(row["frame"]) for row in rows if row["status"] == "missing"]
    assert counts["reconnections"] >= 1 and counts["missing"] == len(missing) > 0
    assert frames == list(range(len(frames))) and max(frames) > max(missing)  # numbered on, frames after the gap
    assert min(missing) > 10 and {row["track"] for row in rows if row["track"]} == {"1", "2"}  # the same two ids
    assert f"{counts['missing']} live frames missing while a stream was reconnected" in result.stdout


def test_a_stream_whose_frame_size_changes_is_read_whole_and_one_without_video_is_refused(two_people, tmp_path,
                                                                                         model_dir):
    """Two encodings joined end to end (640x360, then the same scene at 320x180, as an adaptive stream switches
    quality): every frame has its rows, each box in its own frame's pixels, the two people keep their ids, and the
    change is said and counted, as for the same file read as a file. A stream with sound and no picture: one line,
    nothing written for it."""
    import av
    from PIL import Image

    from emotic.training.synthetic import write_video

    frames, _ = two_people
    images = [Image.fromarray(frame) for frame in frames]
    write_video(tmp_path / "large.ts", images[:24], fps=10)
    write_video(tmp_path / "small.ts", [image.resize((320, 180)) for image in images[24:]], fps=10)
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "large.ts").read_bytes() + (tmp_path / "small.ts").read_bytes())
    with open(joined, "rb") as handle:
        result = subprocess.run(predict_command(model_dir, "-", tmp_path / "out", "--no_drop"), stdin=handle,
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the frame size changed 1 time (640x360 from frame 0, 320x180 from frame 24)" in result.stderr
    rows = read_rows(tmp_path / "out" / "frames" / "stdin.csv")
    assert sorted({int(row["frame"]) for row in rows}) == list(range(48))
    assert {row["track"] for row in rows} == {"1", "2"}  # faces detected afresh where the size changed (frame 24)
    right = [max(float(row["x1"]) for row in rows if int(row["frame"]) == frame and row["x1"]) for frame in (19, 30)]
    assert right[0] > 320 >= right[1]  # the right-hand face (back at frame 30) in each frame's own pixels
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"]["stdin"]
    assert counts["frame_sizes"] == ["640x360 from frame 0", "320x180 from frame 24"] and counts["frames"] == 48
    as_file = emotic_cli("predict", model_dir, joined, "--output_dir", tmp_path / "file", "--detect_every", "5",
                         "--quiet")  # the same file, detecting as often as a live source does by default
    assert as_file.returncode == 0 and "joined: the frame size changed 1 time (640x360 from frame 0" in as_file.stderr
    assert without_location(read_rows(tmp_path / "file" / "frames" / "joined.csv")) == without_location(rows)

    with av.open(str(tmp_path / "sound.ts"), "w") as container:  # two seconds of a tone, no video stream
        audio = container.add_stream("mp2", rate=44100)
        tone = (8000 * np.sin(np.linspace(0, 2 * np.pi * 880, 88200))).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 44100
        for packet in [*audio.encode(frame), *audio.encode()]:
            container.mux(packet)
    with open(tmp_path / "sound.ts", "rb") as handle:
        sound = subprocess.run(predict_command(model_dir, "-", tmp_path / "sound"), stdin=handle, capture_output=True,
                               text=True, timeout=300)
    assert sound.returncode == 1 and "-: contains no video frames (no video stream)" in sound.stderr
    assert "Traceback" not in sound.stderr and not (tmp_path / "sound" / "frames" / "stdin.csv").exists()


def test_live_sources_that_cannot_be_read_are_refused_in_one_line(model_dir, stream_file, tmp_path):
    """A URL that refuses connection, one that serves a web page, an unknown capture device, an unknown input
    format: each a one-line reason (the source skipped, exit status 1, or a usage error), never a traceback; and a
    stream's earlier recording in the output folder is never replaced without --overwrite."""
    from conftest import free_port

    refused = emotic_cli("predict", model_dir, f"http://127.0.0.1:{free_port()}/live.ts", "--output_dir",
                         tmp_path / "a", "--quiet")
    assert refused.returncode == 1 and "live.ts: cannot be opened as a live video" in refused.stderr
    with served(stream_file, 1.0, "--html") as url:
        page = emotic_cli("predict", model_dir, url, "--output_dir", tmp_path / "b", "--quiet")
    assert page.returncode == 1 and "cannot be opened as a live video" in page.stderr
    device = emotic_cli("predict", model_dir, "/dev/video97", "--output_dir", tmp_path / "c", "--quiet")
    assert device.returncode == 1 and "/dev/video97: cannot be opened as a live video" in device.stderr
    unknown = emotic_cli("predict", model_dir, "-", "--source_format", "nonesuch", "--output_dir", tmp_path / "d",
                         "--quiet")
    assert unknown.returncode == 1 and "no container format 'nonesuch'" in unknown.stderr
    for result in (refused, page, device, unknown):
        assert "Traceback" not in result.stderr, result.stderr

    (tmp_path / "e" / "frames").mkdir(parents=True)
    with open(stream_file, "rb") as handle:
        first = subprocess.run(predict_command(model_dir, "-", tmp_path / "e", "--faces", "largest"), stdin=handle,
                               capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    recorded = (tmp_path / "e" / "frames" / "stdin.csv").read_bytes()
    again = subprocess.run(predict_command(model_dir, "-", tmp_path / "e", "--faces", "largest"),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "holds an earlier recording of this stream" in again.stderr
    assert (tmp_path / "e" / "frames" / "stdin.csv").read_bytes() == recorded
