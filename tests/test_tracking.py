"""Every person in a video, tracked: the tracker on real faces composed into videos (size switches, an absence, a
crowd, a face at the border), head pose and reliability, smoothing within tracks, and `emotic predict --faces all`:
its CSV, per-person submissions, summary, restart after SIGKILL and bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import emotic_cli
from people import compose_people, real_people

from emotic import ABAW_EXPRESSION_LABELS

HAPPINESS, SADNESS = ABAW_EXPRESSION_LABELS.index("Happiness"), ABAW_EXPRESSION_LABELS.index("Sadness")
LEFT = 320  # the two people of `two_people_layout` stay on their own half of the frame


def side(box):
    return "left" if (box[0] + box[2]) / 2 < LEFT else "right"


@pytest.mark.parametrize("detect_every", [1, 5])
def test_each_person_keeps_one_id_through_size_switches_and_a_one_second_absence(two_people, detect_every):
    from emotic.inference.tracking import FaceTracker

    frames, _ = two_people
    tracker = FaceTracker(fps=10, detect_every=detect_every)
    ids, seen = {"left": set(), "right": set()}, {"left": 0, "right": 0}
    for index, frame in enumerate(frames):
        faces = tracker.update(frame)
        for face in faces:
            ids[side(face.box)].add(face.track)
            seen[side(face.box)] += 1
        if 20 <= index < 30:
            assert all(side(face.box) == "left" for face in faces), (index, faces)
    assert ids == {"left": {1}, "right": {2}}  # ids in order of first appearance, left to right
    assert seen["left"] >= 0.95 * 48 and seen["right"] >= 0.95 * 38, seen
    assert tracker.seen[2]["first_frame"] == 0 and tracker.seen[2]["last_frame"] == 47


@pytest.mark.parametrize("detect_every", [1, 5])
def test_a_cut_to_another_person_at_the_same_place_starts_a_new_id_and_a_cut_back_returns_the_old_one(detect_every):
    """As after the cuts of an edited interview: the astronaut, then Grace Hopper where the astronaut was, then the
    astronaut again (1.2 s after she left), each for 30 frames at 25 fps, with light noise (+-12 levels). Once the
    second person took over the first one's track (a face overlapping a track continued it)."""
    from emotic.inference.tracking import FaceTracker

    layout = [[(0, 320, 180, 200)]] * 30 + [[(1, 320, 180, 200)]] * 30 + [[(0, 320, 180, 200)]] * 30
    rng = np.random.default_rng(0)
    tracker = FaceTracker(fps=25, detect_every=detect_every)
    ids = []
    for frame in compose_people(layout):
        noisy = np.clip(frame.astype(int) + rng.integers(-12, 13, frame.shape), 0, 255).astype(np.uint8)
        ids.append([face.track for face in tracker.update(noisy)])
    shown = [{track for frame in ids[start:start + 30] for track in frame} for start in (0, 30, 60)]
    assert shown == [{1}, {2}, {1}], ids
    # a face is missed at most until the next detection after a cut
    assert sum(not frame for frame in ids) <= 2 * (detect_every - 1), ids


def test_people_crossing_keep_their_ids_and_a_long_absence_gets_a_new_one():
    """The astronaut walks across in front of Grace Hopper (hiding her for over a second); then Grace leaves for
    longer than --max_gap (2 s) and comes back as a new track."""
    from emotic.inference.tracking import FaceTracker

    layout = [[(1, 420, 180, 200), (0, 100 + 15 * index, 180, 200)] for index in range(36)]  # astronaut in front
    layout += [[(0, 100, 180, 160)]] * 25 + [[(0, 100, 180, 160), (1, 420, 180, 200)]] * 3  # Grace gone 2.5 s
    tracker = FaceTracker(fps=10, max_gap=2.0)
    tracks = [{(face.track, frame_person(face, placed)) for face in tracker.update(frame)}
              for frame, placed in zip(compose_people(layout), layout)]
    astronaut = {track for frame in tracks[:61] for track, who in frame if who == 0}
    grace = {track for frame in tracks[:36] for track, who in frame if who == 1}
    assert astronaut == {1} and grace == {2}, tracks[:36]
    assert sum(1 for frame in tracks[:61] for _, who in frame if who == 0) >= 0.95 * 61
    assert any(who == 1 for _, who in tracks[35])  # seen again after the crossing
    assert {track for track, who in tracks[-1] if who == 1} == {3}  # longer than max_gap: a new person


def frame_person(face, placed):
    """Which placed person a face's box centre is nearest to."""
    centre = (face.box[0] + face.box[2]) / 2
    return min(placed, key=lambda p: abs(p[1] - centre))[0]


def test_head_pose_recovers_known_rotations_and_real_frontal_faces_are_near_zero():
    from emotic.inference.tracking import _HEAD_INDICES, _HEAD_POINTS, head_pose
    from emotic.processing.face_geometry import FaceLandmarker

    for yaw, pitch in [(0, 0), (30, 0), (-40, 0), (0, 20), (0, -25), (25, 15)]:
        a, b = np.radians(yaw), np.radians(pitch)
        rotation = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]]) @ \
            np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        projected = (_HEAD_POINTS @ rotation.T)[:, :2] * 0.3 * [1, -1] + [300, 200]  # image pixels, y down
        landmarks = np.zeros((68, 2))
        landmarks[_HEAD_INDICES] = projected
        assert head_pose(landmarks) == pytest.approx((yaw, pitch), abs=1.0)
    for person in real_people():
        (landmarks, _, _), = FaceLandmarker.shared().detect(np.asarray(person))[0]
        yaw, pitch = head_pose(landmarks)
        assert abs(yaw) < 15 and abs(pitch) < 25, (yaw, pitch)


def test_small_turned_and_blurred_faces_are_not_reliable():
    from PIL import ImageFilter

    from emotic.inference import tracking
    from emotic.processing.face_geometry import FaceLandmarker

    person = real_people()[1]
    (landmarks, _, _), = FaceLandmarker.shared().detect(np.asarray(person))[0]
    sharp = tracking.Quality.of(np.asarray(person), landmarks)
    assert sharp.reliable and sharp.face_size > 150
    blurred = tracking.Quality.of(np.asarray(person.filter(ImageFilter.GaussianBlur(5))), landmarks)
    assert blurred.sharpness < tracking.MIN_SHARPNESS < sharp.sharpness and not blurred.reliable
    small = person.resize((person.width // 5, person.height // 5))
    assert not tracking.Quality.of(np.asarray(small), landmarks / 5).reliable  # under MIN_FACE_SIZE pixels
    turned = landmarks.copy()
    turned[30, 0] += 0.6 * (landmarks[45, 0] - landmarks[36, 0])  # the nose far to one side: a face in profile
    assert not tracking.Quality.of(np.asarray(person), turned).reliable


def test_smoothing_stays_within_each_track():
    """Two people in the same frames, one always Happiness, the other always Sadness: smoothed over a window of 15
    rows, each keeps their own label; and each track's smoothing equals smoothing that track alone."""
    from emotic.inference.smoothing import TrackSmoother, smooth_probabilities

    rng = np.random.default_rng(0)
    rows, pushed = {1: [], 2: []}, []
    smoother = TrackSmoother(15, "mean")
    for frame in range(60):
        present = [1, 2] if not 25 <= frame < 30 else [1]  # person 2 gone for 5 frames (under half a window)
        for track in present:
            row = rng.dirichlet(np.ones(8) * 0.3)
            row[HAPPINESS if track == 1 else SADNESS] += 1.5
            row /= row.sum()
            rows[track].append(row)
            pushed += smoother.push(frame, track, row, (frame, track))
        if frame == 40:
            pushed += smoother.push(frame, None, None, (frame, None))  # a row without a face passes through
    pushed += smoother.finish()
    assert [item for item, _ in pushed][:3] == [(0, 1), (0, 2), (1, 1)]  # arrival order
    for track, label in ((1, HAPPINESS), (2, SADNESS)):
        smoothed = np.array([values for (_, t), values in pushed if t == track])
        assert (smoothed.argmax(1) == label).all()
        np.testing.assert_allclose(smoothed, smooth_probabilities(np.array(rows[track]), 15, "mean"))
    assert [values for (_, t), values in pushed if t is None] == [None]


def test_smoothing_and_tracking_hold_flat_memory_over_a_long_stream():
    """An hour-long stream's worth of people coming and going: the tracker holds only recent tracks and the
    smoother about a window of rows, whatever the length."""
    from emotic.inference.smoothing import TrackSmoother
    from emotic.inference.tracking import FaceTracker

    class Scripted:  # people entering one after another, each for 100 frames, each with their own descriptor
        def __init__(self):
            self.frame = -1

        def detect(self, rgb, limit):
            self.frame += 1
            x = 50 + (self.frame % 100)
            landmarks = np.array([[x + 60 * (i % 9) / 8, 40 + 70 * (i // 9) / 7] for i in range(68)], float)
            return [(landmarks, 1.0, (x, 40, x + 60, 110))], 1

        def describe(self, rgb, landmarks):
            return np.eye(128)[self.frame // 100 % 128]

    scripted = Scripted()
    tracker = FaceTracker(fps=30, max_gap=2.0, landmarker=scripted, descriptor=scripted.describe)
    smoother, largest = TrackSmoother(15, "mean"), 0
    frame_image = np.zeros((160, 240, 3), np.uint8)
    for frame in range(6000):
        for face in tracker.update(frame_image):
            smoother.push(frame, face.track, np.ones(8) / 8, frame)
        largest = max(largest, len(tracker.tracks), len(smoother.queue))
    assert tracker.next_id == 61  # a new person every 100 frames
    assert len(tracker.tracks) <= 3 and largest <= 16  # retired after max_gap; a window of rows


# -- emotic predict --faces all ----------------------------------------------------------------------------------------

def by_colour(self, pixel_values, pixel_values_aux):
    """A stand-in head that tells the two people apart by colour (the astronaut's face view is far greener after
    normalisation: 0.33 against -0.24): Happiness for the astronaut, Sadness for Grace, from each face's own view."""
    import torch

    grace = pixel_values[:, 1].mean((1, 2)) < 0.05
    probabilities = torch.full((len(pixel_values), 8), 0.02)
    probabilities[~grace, HAPPINESS] = probabilities[grace, SADNESS] = 0.86
    return probabilities


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_predict_faces_all_writes_rows_per_person_smoothed_apart_and_submissions_per_person(
        model_dir, two_people, tmp_path, monkeypatch):
    from emotic.inference import predict, runtime, writers

    _, video = two_people
    monkeypatch.setattr(runtime.FrameModel, "compute", by_colour)
    output = tmp_path / "out"
    assert predict.main([str(model_dir), str(video), "--output_dir", str(output), "--smoothing_window", "15",
                         "--subjects", "left,right", "--compound_submission", "--quiet"]) == 0
    rows = read_rows(output / "frames" / "two.csv")
    assert list(rows[0]) == ["image_location", "frame", "time", *writers.TRACK_COLUMNS, "status", "geometry",
                             "raw_label", "label", *ABAW_EXPRESSION_LABELS]
    assert {row["geometry"] for row in rows if row["track"]} == {"detector"}  # the tracked face's own landmarks
    assert len({row["frame"] for row in rows}) == 48 and rows[-1]["time"] == "4.700"
    for track, label in (("1", HAPPINESS), ("2", SADNESS)):  # the astronaut (left) and Grace (right)
        mine = [row for row in rows if row["track"] == track]
        assert all(side([float(row[k]) for k in ("x0", "y0", "x1", "y1")]) == ("left" if track == "1" else "right")
                   for row in mine)
        assert {int(row["label"]) for row in mine} == {label}  # smoothed over 15 frames, never with the other
        assert all(row["reliable"] == "1" and float(row["face_size"]) > 48 for row in mine)
    summary = json.loads((output / "summary.json").read_text())
    tracks = summary["videos"]["two"]["tracks"]
    assert [(t["track"], t["name"], t["first_frame"], t["last_frame"]) for t in tracks] == \
        [(1, "left", 0, 47), (2, "right", 0, 47)]
    assert tracks[1]["frames"] <= 38 and summary["totals"]["faces"] == len(rows)
    assert summary["totals"]["geometries"] == {"detector": len(rows)}
    submission = (output / "submission.txt").read_text().splitlines()
    assert submission[0] == "image_location," + ",".join(ABAW_EXPRESSION_LABELS)
    left = [line for line in submission if line.startswith("two_left/")]
    right = [line for line in submission if line.startswith("two_right/")]
    assert len(left) == len(right) == 48 and len(submission) == 97  # every frame, for each person
    assert {line.split(",")[1] for line in left} == {str(HAPPINESS)}
    assert {line.split(",")[1] for line in right} == {str(SADNESS)}  # her absence carries her last label
    assert right[25] == f"two_right/00026.jpg,{SADNESS}"
    compound = (output / "submission_compound.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in compound[1:]] == [line.split(",")[0] for line in submission[1:]]
    assert (output / "timelines" / "two.png").is_file()


def test_a_killed_tracked_run_resumes_and_matches_a_run_that_was_never_stopped(model_dir, two_people, tmp_path):
    from emotic.training.synthetic import write_video
    from PIL import Image

    frames, video = two_people
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a_first.mp4").write_bytes(video.read_bytes())
    write_video(folder / "b_long.mp4", [Image.fromarray(frame) for frame in frames * 3], fps=10)
    command = ["predict", str(model_dir), str(folder), "--quiet", "--output_dir"]
    killed = subprocess.Popen([sys.executable, "-m", "emotic.cli", *command, str(tmp_path / "resumed")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = tmp_path / "resumed" / "frames" / "a_first.csv"
    deadline = time.monotonic() + 240
    while not first.is_file() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.is_file() and killed.poll() is None, "the first video should finish before the second"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "resumed" / "frames" / "b_long.csv").exists()
    for name in ("resumed", "whole"):
        done = emotic_cli(*command, tmp_path / name)
        assert done.returncode == 0, done.stderr
    for file in ("frames/a_first.csv", "frames/b_long.csv", "submission.txt", "frames/b_long.json"):
        assert (tmp_path / "resumed" / file).read_text() == (tmp_path / "whole" / file).read_text(), file
    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert resumed["totals"]["already_done"] == 1
    assert resumed["videos"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["videos"]


def test_bad_input_no_face_a_crowd_a_face_at_the_border_and_a_corrupt_frame(model_dir, tmp_path, capsys):
    """Frame folders with `--faces all`: a video with nobody in it (a row per frame, no track), 30 faces in a frame
    (the largest --max_faces kept, the rest counted), faces half out of the picture (tracked, boxes past the edge)
    and an undecodable frame in the middle (its row says so; the people keep their ids across it)."""
    from PIL import Image

    from emotic.inference import predict

    def folder(name, frames):
        (tmp_path / name).mkdir()
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp_path / name / f"{index + 1:05d}.png")
        return tmp_path / name

    folder("nobody", compose_people([[]] * 4))
    crowd = [[(i % 2, 55 + 106 * (i % 6), 54 + 108 * (i // 6), 106) for i in range(30)]]
    folder("crowd", compose_people(crowd * 2, size=(640, 540)))
    folder("border", compose_people([[(0, 30, 180, 200), (1, 600, 180, 200)]] * 3))
    corrupt = folder("corrupt", compose_people([[(0, 170, 180, 160), (1, 470, 180, 160)]] * 5))
    (corrupt / "00003.png").write_bytes(b"not a png at all")
    output = tmp_path / "out"
    code = predict.main([str(model_dir), *(str(tmp_path / name) for name in ("nobody", "crowd", "border",
                                                                             "corrupt")),
                         "--faces", "all", "--max_faces", "8", "--fps", "10", "--output_dir", str(output), "--quiet"])
    said = capsys.readouterr().out
    assert code == 0
    summary = json.loads((output / "summary.json").read_text())["videos"]
    nobody = read_rows(output / "frames" / "nobody.csv")
    assert [row["status"] for row in nobody] == ["no_face"] * 4 and {row["track"] for row in nobody} == {""}
    assert summary["nobody"]["tracks"] == [] and summary["nobody"]["no_face"] == 4
    crowd_rows = read_rows(output / "frames" / "crowd.csv")
    assert [sum(row["frame"] == str(frame) for row in crowd_rows) for frame in (0, 1)] == [8, 8]
    assert summary["crowd"]["dropped_faces"] > 0 and f"{summary['crowd']['dropped_faces']} beyond --max_faces 8" \
        in said
    border = read_rows(output / "frames" / "border.csv")
    assert {row["track"] for row in border} == {"1", "2"} and min(float(row["x0"]) for row in border) < 0
    assert max(float(row["x1"]) for row in border) > 640 - 1
    rows = read_rows(output / "frames" / "corrupt.csv")
    assert [row["status"] for row in rows if row["frame"] == "2"] == ["unreadable"]
    assert {row["track"] for row in rows if row["frame"] != "2"} == {"1", "2"}  # the same two ids after it
    assert summary["corrupt"]["unreadable"] == 1 and summary["corrupt"]["frames"] == 5
    lines = (output / "submission.txt").read_text().splitlines()
    assert not any(line.startswith("nobody") for line in lines)  # nobody to submit for
    assert sum(line.startswith("corrupt_1/") for line in lines) == 5  # the corrupt frame carries the last values
    assert "1 unreadable" in said


def test_evaluate_scores_all_frames_and_the_reliable_ones_apart(model_dir, tmp_path, monkeypatch):
    """Ten frames of the two real people: six sharp ones labelled as the stand-in head reads them, four blurred ones
    labelled otherwise (the detector may miss them: they then carry a neighbour's prediction). On all frames the
    score pays for the blurred ones; on reliable frames it is perfect."""
    from PIL import ImageFilter

    from emotic.inference import evaluate, runtime

    monkeypatch.setattr(runtime.FrameModel, "compute", by_colour)
    root = tmp_path / "affwild2"
    (root / "EXPR_Recognition_Challenge" / "Validation_Set").mkdir(parents=True)
    (root / "cropped_aligned" / "real").mkdir(parents=True)
    people, labels = real_people(), []
    for index in range(10):
        person = index % 2
        photo = people[person].resize((200, round(200 * people[person].height / people[person].width)))
        blurred = index >= 6
        if blurred:
            photo = photo.filter(ImageFilter.GaussianBlur(6))
        photo.save(root / "cropped_aligned" / "real" / f"{index + 1:05d}.jpg")
        own = HAPPINESS if person == 0 else SADNESS
        labels.append(SADNESS if blurred and person == 0 else HAPPINESS if blurred else own)
    (root / "EXPR_Recognition_Challenge" / "Validation_Set" / "real.txt").write_text(
        ",".join(ABAW_EXPRESSION_LABELS) + "\n" + "\n".join(map(str, labels)) + "\n")
    report = tmp_path / "report"
    assert evaluate.main([str(model_dir), str(root), "--output_dir", str(report), "--smoothing_windows", "1",
                          "--geometry", "detector", "--quiet"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    reliable = metrics["reliable"]
    assert reliable["computed"] and (reliable["frames"], reliable["of_frames"]) == (6, 10)
    assert reliable["raw"]["accuracy"] == 1.0 and metrics["raw"]["accuracy"] <= 0.8  # blurred: missed or wrong
    assert reliable["raw"]["macro_f1"] > metrics["raw"]["macro_f1"]
    assert "on the 6 of 10 frames with a reliable face: macro-F1 raw" in (report / "report.md").read_text()
    assert evaluate.main([str(model_dir), str(root), "--output_dir", str(tmp_path / "quick"), "--no_reliability",
                          "--smoothing_windows", "1", "--geometry", "detector", "--quiet"]) == 0
    assert not json.loads((tmp_path / "quick" / "metrics.json").read_text())["reliable"]["computed"]


def test_evaluate_scores_raw_videos_per_subject_as_aff_wild2_names_them(model_dir, two_people, tmp_path, monkeypatch,
                                                                         capsys):
    """`<video>_left` / `<video>_right` annotations scored against the people tracked in the raw video: the
    astronaut (left) is always Happiness, Grace (right) Sadness where she is in the picture; a video without a file is
    reported, not scored."""
    from emotic.inference import evaluate, runtime

    monkeypatch.setattr(runtime.FrameModel, "compute", by_colour)
    _, video = two_people
    root = tmp_path / "affwild2"
    annotations = root / "EXPR_Recognition_Challenge" / "Validation_Set"
    annotations.mkdir(parents=True)
    header = ",".join(ABAW_EXPRESSION_LABELS) + "\n"
    (annotations / "two_left.txt").write_text(header + f"{HAPPINESS}\n" * 48)
    right = [-1 if 20 <= index < 30 else SADNESS for index in range(48)]  # not annotated while away
    (annotations / "two_right.txt").write_text(header + "".join(f"{label}\n" for label in right))
    (annotations / "gone_left.txt").write_text(header + f"{HAPPINESS}\n" * 5)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "two.mp4").write_bytes(video.read_bytes())
    report = tmp_path / "report"
    assert evaluate.main([str(model_dir), str(root), "--videos_dir", str(tmp_path / "videos"), "--output_dir",
                          str(report), "--smoothing_windows", "1,5", "--quiet"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["raw"]["accuracy"] == 1.0 and metrics["raw"]["num_frames"] == 48 + 38
    assert metrics["raw"]["per_class_f1"]["Happiness"] == metrics["raw"]["per_class_f1"]["Sadness"] == 1.0
    assert metrics["counts"]["missing_videos"] == ["gone_left"] and metrics["counts"]["videos"] == 2
    assert metrics["reliable"]["computed"] and metrics["reliable"]["raw"]["accuracy"] == 1.0
    assert "1 annotated videos have no video file" in capsys.readouterr().err
