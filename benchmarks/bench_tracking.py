"""Tracking every face: frames per second and id switches of `emotic predict --faces all` on a two-person 640x360
video, detecting faces on every frame against `--detect_every 5` (landmarks follow the faces in between), with each
face detector asked for, in the same run.

    python benchmarks/bench_tracking.py [--frames 300] [--detectors blazeface hog] [--json results.json]
    python benchmarks/bench_tracking.py --smoke     # a few frames: checks the script, measures little

The video: the two real people of the tests (scikit-image's astronaut, matplotlib's Grace Hopper) walking towards
and away from the camera, crossing, one leaving for a second, at 30 fps (tests/people.py). Each setting (and
detector) is timed twice, alternating: the tracker alone on decoded frames (detection, landmarks, descriptors,
quality), and the whole `emotic predict` in this process (decoding, tracking, views, a tiny model: the model's own
cost is `bench_models.py`'s). An id switch is a frame where a person's track id differs from the one they had
before (MOT's definition), with the person known from where they were placed. Compare ratios within one run, never
absolute numbers across machines.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from people import compose_people  # noqa: E402


def layout(frames: int):
    """Per frame, where each person is: they sway, grow and shrink, cross once, and Grace is away for a second."""
    placed = []
    for index in range(frames):
        phase = 2 * np.pi * index / max(frames, 1)
        astronaut = (0, 200 + 220 * (0.5 - 0.5 * np.cos(phase)), 180, 200 + 40 * np.sin(phase))
        grace = (1, 470 - 40 * np.sin(phase), 180 + 20 * np.sin(2 * phase), 220 - 40 * np.sin(phase))
        away = int(0.6 * frames) <= index < int(0.6 * frames) + 30
        placed.append([astronaut] if away else [grace, astronaut])  # the astronaut in front when they cross
    return placed


def id_switches(tracks_per_frame, placed_per_frame) -> int:
    """Frames where a person's id differs from the id they last had."""
    last, switches = {}, 0
    for faces, placed in zip(tracks_per_frame, placed_per_frame):
        for track, centre in faces:
            person = min(placed, key=lambda p: abs(p[1] - centre))[0]
            if person in last and last[person] != track:
                switches += 1
            last[person] = track
    return switches


def time_tracker(frames, placed, detect_every: int, detector: str | None = None) -> tuple[float, int, int]:
    from emotic.inference.tracking import FaceTracker
    from emotic.processing.face_geometry import FaceLandmarker

    tracker = FaceTracker(fps=30, detect_every=detect_every, landmarker=FaceLandmarker.shared(detector))
    start = time.perf_counter()
    seen = [[(face.track, (face.box[0] + face.box[2]) / 2) for face in tracker.update(frame)] for frame in frames]
    seconds = time.perf_counter() - start
    return len(frames) / seconds, id_switches(seen, placed), sum(len(faces) for faces in seen)


def time_predict(model: Path, video: Path, detect_every: int, output: Path, detector: str | None = None) -> float:
    from emotic.inference.predict import main

    start = time.perf_counter()
    code = main([str(model), str(video), "--output_dir", str(output), "--detect_every", str(detect_every),
                 "--quiet", "--overwrite", *(["--detector", detector] if detector else [])])
    if code != 0:
        raise SystemExit(f"emotic predict failed on {video} ({code})")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--detectors", nargs="+", default=None,
                        help="blazeface and/or hog, timed alternately in one run (default: emotic's default)")
    args = parser.parse_args(argv)
    frames_count = 40 if args.smoke else args.frames
    import torch
    from PIL import Image

    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor
    from emotic.processing.face_geometry import face_detector
    from emotic.training.synthetic import write_video

    torch.set_num_threads(1)
    placed = layout(frames_count)
    frames = compose_people(placed)
    detectors = args.detectors or [face_detector()]
    results = {"frames": frames_count, "size": "640x360", "people": 2, "detectors": {}}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        video = folder / "two_people.mp4"
        write_video(video, [Image.fromarray(frame) for frame in frames], fps=30)
        torch.manual_seed(0)
        EmoticForImageClassification(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                  intermediate_size=64, image_size=32, patch_size=8,
                                                  fusion_layer=1)).save_pretrained(folder / "model")
        EmoticImageProcessor(size=32).save_pretrained(folder / "model")
        runs = {(d, k): {"tracker_fps": [], "predict_fps": []} for d in detectors for k in (1, 5)}
        for _ in range(1 if args.smoke else args.repeats):
            for every in (1, 5):  # alternating, so that a slower moment of the machine hits every setting
                for detector in detectors:
                    run = runs[detector, every]
                    speed, switches, faces = time_tracker(frames, placed, every, detector)
                    run["tracker_fps"].append(speed)
                    run.update(id_switches=switches, faces=faces)
                    seconds = time_predict(folder / "model", video, every, folder / f"out{every}", detector)
                    run["predict_fps"].append(frames_count / seconds)
    for detector in detectors:
        settings = {}
        for every in (1, 5):
            run = runs[detector, every]
            settings[f"detect_every_{every}"] = {
                "tracker_frames_per_s": round(statistics.median(run["tracker_fps"]), 2),
                "predict_frames_per_s": round(statistics.median(run["predict_fps"]), 2),
                "id_switches": run["id_switches"], "faces_found": run["faces"]}
        one, five = settings["detect_every_1"], settings["detect_every_5"]
        settings["speedup_tracker"] = round(five["tracker_frames_per_s"] / one["tracker_frames_per_s"], 2)
        settings["speedup_predict"] = round(five["predict_frames_per_s"] / one["predict_frames_per_s"], 2)
        results["detectors"][detector] = settings
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
