"""What the loop's results become on disk: the per-frame CSV (`frames/<video>.csv`), the ABAW submission of the
head's track (per tracked person where faces are tracked), the compound-expression submission, the tracks' records
and timelines. The features file's writer is `emotic.training.frame_features.FeaturesWriter`, beside its reader.
Each track's columns are the registry's (`emotic.tracks.OUTPUTS`)."""

import csv
import json
from pathlib import Path

from emotic.inference.compound import write_compound_submission
from emotic.inference.results import FrameResult
from emotic.tracks import OUTPUTS

# the columns of a tracked face (`--faces all`): its track id, box (the landmarks' bounding box, pixels), detector
# score (empty between detections), quality record and reliability flag (`emotic.inference.tracking.Quality`)
TRACK_COLUMNS = ["track", "x0", "y0", "x1", "y1", "score", "face_size", "yaw", "pitch", "sharpness", "reliable"]


def frame_header(labels, parts, tracked: bool = False) -> list[str]:
    """The columns of a per-frame CSV (`frames/<video>.csv`): location, frame (0-based index in the video) and time
    (seconds: the index over the frame rate; empty where the rate is not known), with `tracked` faces
    `TRACK_COLUMNS`, the status, the geometry the auxiliary view was built from (`FrameResult.geometry`), then per
    part of the head (`head_parts`) its outputs' columns: for expressions the raw and smoothed label and the smoothed
    probabilities; for action units the units present (`AU6+AU12`) raw and smoothed and each unit's smoothed
    probability; for valence-arousal the raw and the smoothed values. A multi-task head has its parts' columns side
    by side."""
    columns = ["image_location", "frame", "time", *(TRACK_COLUMNS if tracked else ()), "status", "geometry"]
    for kind, span, _ in parts:
        columns += OUTPUTS[kind].csv_columns(labels[span])
    return columns


def face_columns(face) -> list:
    """A tracked face's values in `TRACK_COLUMNS` (empty ones for no face)."""
    if face is None:
        return [""] * len(TRACK_COLUMNS)
    quality = face.quality
    return [face.track, *(f"{v:.1f}" for v in face.box), "" if face.score is None else f"{face.score:.3f}",
            f"{quality.face_size:.1f}", f"{quality.yaw:.1f}", f"{quality.pitch:.1f}", f"{quality.sharpness:.1f}",
            int(quality.reliable)]


class FrameCsv:
    """The per-frame CSV of one video, a row per result (`frame_header`'s columns) as results arrive; action units
    are present where a probability reaches its threshold (`thresholds`, 0.5 each unless given). A result without
    outputs (a tracked frame where nobody is found) has its head columns empty."""

    def __init__(self, handle, labels, parts, thresholds=None, tracked: bool = False):
        self.labels, self.parts, self.thresholds, self.tracked = labels, parts, thresholds, tracked
        self.writer = csv.writer(handle)
        self.header = frame_header(labels, parts, tracked)
        self.writer.writerow(self.header)

    def row(self, result: FrameResult) -> list:
        row = [result.location, "" if result.frame is None else result.frame,
               "" if result.time is None else f"{result.time:.3f}"]
        if self.tracked:
            row += face_columns(result.face)
        row += [result.status, result.geometry or ""]
        if result.raw is None:
            return row + [""] * (len(self.header) - len(row))
        for kind, span, _ in self.parts:
            row += OUTPUTS[kind].csv_values(result.raw[span], result.smoothed[span], self.labels[span],
                                            self.thresholds)
        return row

    def write(self, result: FrameResult) -> list:
        """Write `result`'s row; the row (`header`'s values, as written)."""
        row = self.row(result)
        self.writer.writerow(row)
        return row


def write_frame_csv(path: Path, results, labels, parts, thresholds=None, tracked: bool = False) -> None:
    """`results` as a per-frame CSV at `path` (`FrameCsv`)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        table = FrameCsv(handle, labels, parts, thresholds, tracked)
        for result in results:
            table.write(result)


# -- tracks -----------------------------------------------------------------------------------------------------------

def track_records(seen: dict, video: str, subjects=()) -> list[dict]:
    """The tracks of a video for its summary and submission: per track its id, `name` (the submission's
    `<video>_<name>`: with `subjects`, the given names for the tracks seen in the most frames, by the horizontal
    position of their first box, left to right; any other track its id, or `track<id>` where a given name is that
    id: names are unique whatever the user names), first and last frame, frames seen and first box."""
    records = [{"track": track, "name": None, **info} for track, info in sorted(seen.items())]
    named = sorted(records, key=lambda r: -r["frames"])[:len(subjects)]
    for name, record in zip(subjects, sorted(named, key=lambda r: r["first_box"][0] + r["first_box"][2])):
        record["name"] = name
    taken = {record["name"] for record in records if record["name"] is not None}
    for record in records:
        if record["name"] is None:
            name = str(record["track"])
            while name in taken:
                name = f"track{name}"
            record["name"] = name
            taken.add(name)
        record["submission_name"] = f"{video}_{record['name']}"
    return records


def write_tracks_record(csv_path: Path, record: dict) -> None:
    """`frames/<video>.json` beside a tracked video's CSV: its counts and tracks (read back by a restarted run and
    by the submission writer)."""
    csv_path.with_suffix(".json").write_text(json.dumps(record, indent=2))


# -- submissions ------------------------------------------------------------------------------------------------------

def submission_header(labels, parts) -> list[str]:
    """The header of the track's ABAW submission: `image_location,Neutral,...,Other` (expressions),
    `image_location,AU1,...,AU26`, `image_location,valence,arousal`; a multi-task head's (ABAW7)
    `image,valence,arousal,expression,AU1,...,AU26`."""
    if len(parts) == 1:
        return ["image_location", *labels]
    return ["image", *(name for kind, span, _ in parts for name in OUTPUTS[kind].label_columns(labels[span]))]


def submission_values(row: dict, labels, parts, thresholds=None) -> list:
    """One frame's values in a submission, from its per-frame CSV row: the smoothed expression label, 0/1 per action
    unit (at `thresholds` or 0.5), valence and arousal clipped to [-1, 1]; a multi-task head's side by side."""
    return [value for kind, span, _ in parts for value in OUTPUTS[kind].submission_values(row, labels[span],
                                                                                          thresholds)]


def write_submission(csv_paths, labels, path: Path, parts, thresholds=None) -> int:
    """The ABAW submission file of the head's track (`head_parts`) from the per-video CSVs (those that exist),
    streamed: `submission_header`, then per frame its location and `submission_values`. A video of tracked faces has
    rows per track, `<video>_<name>/<frame>` for every frame of the video (`tracked_rows`). The number of lines."""
    lines = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")  # quotes a location holding a comma ("interview, take 2")
        writer.writerow(submission_header(labels, parts))
        for csv_path in csv_paths:
            if not csv_path.is_file():
                continue
            for location, row in submission_rows(csv_path):
                writer.writerow([location, *submission_values(row, labels, parts, thresholds)])
                lines += 1
    return lines


def tracked_rows(csv_path: Path, track: dict):
    """`(location, row)` of one track for every frame of its video, in order, from the tracked CSV: the location's
    video part renamed `<video>_<name>` (as Aff-Wild2 names a video's subjects), the track's own CSV row where it is
    seen, elsewhere that of its nearest earlier frame (before its first, its first). Streams the CSV."""
    key = str(track["track"])

    def frames():  # (location, the track's row or None) per frame: the CSV's rows are in frame order
        current = location = mine = None
        with open(csv_path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["frame"] != current:
                    if current is not None:
                        yield location, mine
                    current, location, mine = row["frame"], row["image_location"], None
                if row["track"] == key:
                    mine = row
        if current is not None:
            yield location, mine

    def renamed(location):
        return f"{track['submission_name']}/{location.rpartition('/')[2]}"

    waiting, last = [], None  # the frames before the track's first
    for location, row in frames():
        if row is None and last is None:
            waiting.append(location)
            continue
        if row is not None:
            for early in waiting:
                yield renamed(early), row
            waiting, last = [], row
        yield renamed(location), last


def submission_rows(csv_path: Path):
    """`(location, row)` per line of a video's submission from its per-frame CSV: each frame's row, or for tracked
    faces each track's rows in turn (`tracked_rows`)."""
    record = csv_path.with_suffix(".json")
    if record.is_file():
        for track in json.loads(record.read_text(encoding="utf-8"))["tracks"]:
            yield from tracked_rows(csv_path, track)
        return
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            yield row["image_location"], row


def write_compound(csv_paths, labels, path: Path) -> int:
    """The compound-expression submission (`emotic.inference.compound`) of the per-frame CSVs' smoothed expression
    probabilities, per frame or per tracked person as the main submission."""
    return write_compound_submission(csv_paths, labels, path, submission_rows)


# -- timelines --------------------------------------------------------------------------------------------------------

def draw_timelines(summary: dict, frames_dir: Path, folder: Path, labels) -> None:
    """`timelines/<video>.png` for each tracked video with people in it (`report.plot_tracks`), unless already drawn
    from its CSV as it is now."""
    from emotic.inference.report import plot_tracks

    for name, counts in summary["videos"].items():
        csv_path, path = frames_dir / f"{name}.csv", folder / f"{name}.png"
        if not counts.get("tracks") or (path.is_file() and path.stat().st_mtime >= csv_path.stat().st_mtime):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        plot_tracks(path, csv_path, labels, counts["tracks"])
