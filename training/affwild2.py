"""Aff-Wild2's annotations, the ABAW challenges' format: per-video files of the expression (EXPR), valence-arousal
(VA) and action-unit (AU) tracks beside `cropped_aligned/<video>/<00001>.jpg`, and ABAW7's multi-task files.

Each reader lists files only (image paths, labels, video and frame names) into a `datasets.Dataset`; images are
decoded lazily, batch by batch, by `emotic.training.transforms.ViewTransform` through the image processor. Every
reader adds `index`, the row, which seeds the row's augmentation: a run augments alike wherever its data lies.
Listing stays cheap for Aff-Wild2's 2.7M frames: one annotation read and one directory scan per video. Where each
track's annotations lie is the registry's (`emotic.tracks`).
"""

from __future__ import annotations  # `datasets` is imported where a reader runs: inference needs none of it

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotic.modeling.heads_emotic import ABAW_ACTION_UNITS, ABAW_EXPRESSION_LABELS, MULTITASK, VALENCE_AROUSAL
from emotic.tracks import TRACKS
from emotic.training.read_report import ReadReport

if TYPE_CHECKING:
    from datasets import Dataset

ANNOTATION_HEADER = ",".join(ABAW_EXPRESSION_LABELS)


def read_expression_annotation(path: Path) -> list[int]:
    """One Aff-Wild2 EXPR annotation file: the header line, then one integer in -1..7 per frame."""
    with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark (Windows editors) is not part of the header
        lines = handle.read().splitlines()
    if not lines or lines[0].strip().replace(" ", "") != ANNOTATION_HEADER:
        found = lines[0].strip() if lines else "an empty file"
        raise ValueError(f"{path}, line 1: expected the header {ANNOTATION_HEADER!r}, found {found!r}")
    labels = []
    for number, line in enumerate(lines[1:], start=2):
        text = line.strip()
        if not text and number == len(lines):  # tolerate one trailing blank line
            continue
        try:
            label = int(text)
        except ValueError:
            raise ValueError(f"{path}, line {number}: {text!r} is not an integer; expected -1..7") from None
        if not -1 <= label < len(ABAW_EXPRESSION_LABELS):
            raise ValueError(f"{path}, line {number}: label {label} is out of range; expected -1..7")
        labels.append(label)
    return labels


def read_valence_arousal_annotation(path: Path) -> list[list[float]]:
    """One Aff-Wild2 VA annotation file: the header `valence,arousal`, then `valence,arousal` per frame, floats in
    [-1, 1]; -5 (either value) marks a frame that was not annotated, returned as NaN."""
    rows = []
    for number, values in _annotation_rows(path, VALENCE_AROUSAL, "two floats in [-1, 1] (or -5: not annotated)"):
        try:
            valence, arousal = (float(value) for value in values)
        except ValueError:
            raise ValueError(f"{path}, line {number}: {','.join(values)!r} are not two numbers; expected "
                             f"valence,arousal in [-1, 1] (or -5: not annotated)") from None
        if not all(-1 <= value <= 1 or value == -5 for value in (valence, arousal)):
            raise ValueError(f"{path}, line {number}: valence {valence:g}, arousal {arousal:g} is out of range; "
                             f"expected values in [-1, 1], or -5 for a frame that was not annotated")
        rows.append([float("nan")] * 2 if -5 in (valence, arousal) else [valence, arousal])
    return rows


def read_action_unit_annotation(path: Path) -> list[list[float]]:
    """One Aff-Wild2 AU annotation file: the header `AU1,...,AU26`, then 12 comma-separated 0/1 per frame; a frame
    with a -1 (not annotated) is returned as NaN throughout (the ABAW loaders keep a frame only if all are >= 0)."""
    rows = []
    for number, values in _annotation_rows(path, ABAW_ACTION_UNITS, "12 comma-separated 0/1 (or -1)"):
        if not all(value in ("0", "1", "-1") for value in values):
            raise ValueError(f"{path}, line {number}: {','.join(values)!r}: expected 0 or 1 for each action unit "
                             f"(-1: not annotated)")
        units = [float(value) for value in values]
        rows.append([float("nan")] * len(units) if min(units) < 0 else units)
    return rows


def _annotation_rows(path: Path, columns: list[str], expected: str):
    """(line number, values) of a comma-separated annotation file with the header `columns`; a wrong header or a
    line with another number of values is a `ValueError` naming the file and line."""
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    header = ",".join(columns)
    if not lines or lines[0].strip().replace(" ", "") != header:
        found = lines[0].strip() if lines else "an empty file"
        raise ValueError(f"{path}, line 1: expected the header {header!r}, found {found!r}")
    for number, line in enumerate(lines[1:], start=2):
        text = line.strip().replace(" ", "")
        if not text and number == len(lines):  # tolerate one trailing blank line
            continue
        values = text.split(",")
        if len(values) != len(columns):
            raise ValueError(f"{path}, line {number}: {len(values)} values ({text!r}); expected {expected}, one per "
                             f"column of {header!r}")
        yield number, values


# Each ABAW track's per-video annotation reader (`emotic.tracks`; the multi-task track's file is read whole, by
# `read_multitask_annotations`)
ANNOTATION_READERS = {"expr": read_expression_annotation, "va": read_valence_arousal_annotation,
                      "au": read_action_unit_annotation}


def is_annotated(label) -> bool:
    """Whether a frame's label says it was annotated: an expression >= 0, values without NaN."""
    return label >= 0 if isinstance(label, int) else not any(value != value for value in label)


def affwild2_annotations(root: str | os.PathLike, task: str, split: str) -> Path:
    """Where the annotations of `task` and `split` lie under an Aff-Wild2 root (`Track.annotation_folders`): the
    folder `<challenge folder>/<split>` (both spellings of the EXPR folder, or `annotations/<split>` for EXPR); for
    the multi-task track, ABAW7's file of the split (`training_set_annotations.txt`,
    `validation_set_annotations.txt`)."""
    track = TRACKS[task]
    if track.annotation_files:
        path = Path(root) / track.annotation_files.get(split, split)
        if not path.is_file():
            raise ValueError(f"{root}: no multi-task annotation file for {split}: expected {path}")
        return path
    folders = track.annotation_folders
    for folder in folders:
        if (Path(root) / folder / split).is_dir():
            return Path(root) / folder / split
    raise ValueError(f"{root}: no {task.upper()} annotation folder for {split}: expected one of "
                     f"{[f'{folder}/{split}' for folder in folders]}")


def iter_affwild2_videos(annotations_dir: str | os.PathLike, frames_dir: str | os.PathLike, task: str = "expr"):
    """(video, frame folder, labels, names of the frame files present) for each `annotations_dir/<video>.txt`, with
    one directory scan per video. A missing folder, an empty annotation folder or a bad annotation file is a
    `ValueError` naming it. Two-subject videos are annotated as `<video>_left` / `<video>_right`, each with its own
    frame folder: they are read as two videos."""
    annotations_dir, frames_dir = Path(annotations_dir), Path(frames_dir)
    if not annotations_dir.is_dir():
        raise ValueError(f"annotation folder {annotations_dir} does not exist")
    annotations = sorted(annotations_dir.glob("*.txt"))
    if not annotations:
        raise ValueError(f"annotation folder {annotations_dir} has no <video>.txt files")
    for annotation in annotations:
        video_dir = frames_dir / annotation.stem
        if not video_dir.is_dir():
            raise ValueError(f"{annotation}: its frame folder {video_dir} does not exist")
        labels = ANNOTATION_READERS[task](annotation)
        yield annotation.stem, video_dir, labels, {entry.name for entry in os.scandir(video_dir)}


def read_affwild2(
    annotations_dir: str | os.PathLike,
    frames_dir: str | os.PathLike,
    frame_stride: int = 1,
    max_frames_per_class: int | None = None,
    seed: int = 0,
    task: str = "expr",
) -> tuple[Dataset, ReadReport]:
    """Aff-Wild2: `annotations_dir/<video>.txt` + `frames_dir/<video>/<00001>.jpg` (1-based, 5 digits), for the
    expression (`task="expr"`, `label` a class index), valence-arousal (`"va"`, `label` [valence, arousal]) or
    action-unit track (`"au"`, `label` 12 0/1 values).

    `frame_stride` keeps every n-th frame and `max_frames_per_class` caps each class (a seeded random subset, EXPR
    only): the paper's "reduced training data". Frames not annotated (-1, or -5 for VA) and annotated frames
    without an image are skipped and counted. A wrong header, a bad line or a missing video folder is a
    `ValueError` naming the file and line.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride={frame_stride}; expected an integer >= 1")
    if task not in ANNOTATION_READERS:
        raise ValueError(f"task={task!r}; allowed: {sorted(ANNOTATION_READERS)}")
    if max_frames_per_class is not None and not TRACKS[task].single_label:
        raise ValueError("max_frames_per_class caps expression classes: it applies to task='expr' only")
    report = ReadReport()
    paths, labels, videos, frames = [], [], [], []
    for video, video_dir, video_labels, present in iter_affwild2_videos(annotations_dir, frames_dir, task):
        report.videos += 1
        for index, label in enumerate(video_labels):
            if not is_annotated(label):
                report.ignored_unlabelled += 1
                continue
            name = f"{index + 1:05d}.jpg"
            if name not in present:
                report.missing_images += 1
                continue
            if index % frame_stride:
                report.dropped_by_stride += 1
                continue
            paths.append(str(video_dir / name))
            labels.append(label)
            videos.append(video)
            frames.append(name)
    keep = _cap_per_class(labels, max_frames_per_class, seed)
    report.dropped_by_cap = len(labels) - len(keep)
    if not keep:
        raise ValueError(f"{annotations_dir}: no usable frame (an annotated frame with its image in {frames_dir}): "
                         f"{report.videos} videos read, {report.ignored_unlabelled} frames not annotated, "
                         f"{report.missing_images} annotated frames without an image, {report.dropped_by_stride} "
                         f"dropped by the frame stride")
    columns = {"image": [paths[i] for i in keep], "label": [labels[i] for i in keep],
               "video": [videos[i] for i in keep], "frame": [frames[i] for i in keep], "index": list(range(len(keep)))}
    report.frames = len(keep)
    report.class_counts = TRACKS[task].class_counts(columns["label"])  # per class, or per present action unit
    from datasets import Dataset

    return Dataset.from_dict(columns), report


MULTITASK_COLUMNS = ["image", *TRACKS[MULTITASK].label_columns]  # image,valence,arousal,expression,AU1,...,AU26


def read_multitask_annotations(path: str | os.PathLike, images_dir: str | os.PathLike) -> tuple[Dataset, ReadReport]:
    """ABAW7's multi-task annotations (s-Aff-Wild2: `training_set_annotations.txt`), one CSV of rows
    `image,valence,arousal,expression,AU1,...,AU26` with images relative to `images_dir`: columns `image`,
    `valence_arousal` (NaN where -5), `expression` (-1 where not annotated) and `action_units` (NaN throughout where
    any is -1), so that each task's loss leaves out what was not annotated, and `label`, the three side by side
    (15 values: a multi-task head's labels); `video` and `frame` split the image's path, `line` is the row's line.
    Rows without an image are skipped and counted; an image listed again with the same values is read once and the
    repeat counted (`ReadReport.duplicates`), with other values refused; a missing column or a bad value is a
    `ValueError` naming the file and line."""
    import csv

    path, images_dir = Path(path), Path(images_dir)
    if not path.is_file():
        raise ValueError(f"multi-task annotation file {path} does not exist")
    columns = {"image": [], "valence_arousal": [], "expression": [], "action_units": [], "video": [], "frame": [],
               "line": []}
    listed = {}  # image -> (line, its values): an image is one frame, annotated once
    report = ReadReport()
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in MULTITASK_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{path}, line 1: the header lacks the column{'s' * (len(missing) > 1)} "
                             f"{', '.join(missing)}; expected {','.join(MULTITASK_COLUMNS)}")
        at = {name: header.index(name) for name in MULTITASK_COLUMNS}
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {number}: {len(row)} values; expected {len(header)}, one per column "
                                 f"of the header")
            try:
                valence_arousal = [float(row[at[name]]) for name in VALENCE_AROUSAL]
                expression = int(row[at["expression"]])
                units = [int(row[at[name]]) for name in ABAW_ACTION_UNITS]
            except ValueError:
                raise ValueError(f"{path}, line {number}: expected numbers for valence, arousal, expression and the "
                                 f"12 action units, found {row!r}") from None
            if -5 in valence_arousal:
                valence_arousal = [float("nan")] * 2
            elif not all(-1 <= value <= 1 for value in valence_arousal):
                raise ValueError(f"{path}, line {number}: valence/arousal {valence_arousal} out of range; expected "
                                 f"[-1, 1] or -5 (not annotated)")
            if not -1 <= expression < len(ABAW_EXPRESSION_LABELS):
                raise ValueError(f"{path}, line {number}: expression {expression} is out of range; expected -1..7")
            if not all(unit in (-1, 0, 1) for unit in units):
                raise ValueError(f"{path}, line {number}: action units {units}: expected 0, 1 or -1 each")
            image = images_dir / row[at["image"]].strip()
            values = (valence_arousal, expression, units)
            if str(image) in listed:
                first, earlier = listed[str(image)]
                if str(earlier) != str(values):  # NaN != NaN: compared as written
                    raise ValueError(f"{path}, line {number}: {row[at['image']].strip()} is listed again with other "
                                     f"values than on line {first}; an image is one frame, annotated once")
                report.duplicates += 1
                continue
            listed[str(image)] = (number, values)
            if not image.is_file():
                report.missing_images += 1
                continue
            if expression < 0 and min(units) < 0 and valence_arousal[0] != valence_arousal[0]:
                report.ignored_unlabelled += 1
                continue
            columns["image"].append(str(image))
            columns["valence_arousal"].append(valence_arousal)
            columns["expression"].append(expression)
            columns["action_units"].append([float(u) for u in units] if min(units) >= 0 else [float("nan")] * 12)
            relative = Path(row[at["image"]].strip())
            columns["video"].append(relative.parent.as_posix())
            columns["frame"].append(relative.name)
            columns["line"].append(number)
    columns["label"] = [[*va, float(e), *au] for va, e, au in
                        zip(columns["valence_arousal"], columns["expression"], columns["action_units"])]
    columns["index"] = list(range(len(columns["image"])))
    report.frames = len(columns["image"])
    report.videos = len(set(columns["video"]))
    report.class_counts = dict(sorted(Counter(e for e in columns["expression"] if e >= 0).items()))
    if not report.frames:
        raise ValueError(f"{path}: no usable row (one with its image in {images_dir} and at least one annotated "
                         f"task): {report.missing_images} rows without an image, {report.ignored_unlabelled} with "
                         f"nothing annotated")
    from datasets import Dataset

    return Dataset.from_dict(columns), report


def _cap_per_class(labels: list[int], cap: int | None, seed: int) -> list[int]:
    if cap is None:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    by_class = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    keep = []
    for indices in by_class.values():
        keep += sorted(rng.choice(indices, size=min(cap, len(indices)), replace=False).tolist())
    return sorted(keep)


def annotations_by_video(root: str | os.PathLike, task: str, split: str) -> dict[str, np.ndarray]:
    """Per video of `split`, its labels by frame index (0 = the frame `00001.jpg`): expression indices (-1: not
    annotated) for `expr`; values per frame with NaN where not annotated for `va` and `au`; for `multitask`, ABAW7's
    15 columns per frame of its file (every other frame NaN throughout: not listed). What a video's frame
    features are matched against."""
    path, track = affwild2_annotations(root, task, split), TRACKS[task]
    if track.annotation_files:  # the multi-task track's one file of sampled frames
        dataset, _ = read_multitask_annotations(path, Path(root) / "cropped_aligned")
        rows = {}
        for video, frame, label, line in zip(dataset["video"], dataset["frame"], dataset["label"], dataset["line"]):
            stem = Path(frame).stem
            if not stem.isdigit() or int(stem) < 1:
                raise ValueError(f"{path}, line {line}: {video}/{frame}: expected the frame's number as its name "
                                 f"(00001.jpg for a video's first frame), which places its labels in the video")
            rows.setdefault(video, {})[int(stem) - 1] = label
        by_video = {}
        for video, frames in rows.items():
            values = np.full((max(frames) + 1, len(track.label_columns)), np.nan)
            for index, label in frames.items():
                values[index] = label
            by_video[video] = values
        return by_video
    if not path.is_dir() or not any(path.glob("*.txt")):
        raise ValueError(f"annotation folder {path} has no <video>.txt files")
    return {annotation.stem: np.asarray(ANNOTATION_READERS[task](annotation),
                                        dtype=np.int64 if track.single_label else np.float64)
            for annotation in sorted(path.glob("*.txt"))}


def annotation_index(location: str, frame: int) -> int:
    """The annotation line (0-based) of a frame that `emotic features`/`predict` wrote as `location` (`video/00042.jpg`:
    the frame folder's file, or the decoded video frame's 1-based number) and `frame` (its position): the number in
    the file name, less one; the position where the name has none."""
    stem = Path(location).stem
    return int(stem) - 1 if stem.isdigit() else frame
