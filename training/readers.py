"""Datasets: Aff-Wild2 (EXPR, VA and AU annotations), a folder of class sub-folders, and unlabelled face folders.

Each reader lists files only (image paths, labels, video and frame names) into a `datasets.Dataset`; images are
decoded lazily, batch by batch, by `emotic.training.transforms.ViewTransform` through the image processor. Every
reader adds `index`, the row, which seeds the row's augmentation: a run augments alike wherever its data lies.
Listing stays cheap for Aff-Wild2's 2.7M frames: one annotation read and one directory scan per video.
"""

from __future__ import annotations  # `datasets` is imported where a reader runs: inference needs none of it

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotic.modeling.configuration_emotic import ABAW_ACTION_UNITS, ABAW_EXPRESSION_LABELS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ANNOTATION_HEADER = ",".join(ABAW_EXPRESSION_LABELS)
VALENCE_AROUSAL = ["valence", "arousal"]
# Where each track's annotations live under an Aff-Wild2 root, as `<folder>/{Train_Set,Validation_Set}`: the
# challenge folders (ABAW5 names the EXPR one `EXPR_Classification_Challenge`), and `annotations/` for the EXPR
# annotations `emotic synth` writes.
CHALLENGE_FOLDERS = {
    "expr": ("annotations", "EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"),
    "va": ("VA_Estimation_Challenge",),
    "au": ("AU_Detection_Challenge",),
}
# ABAW7's multi-task challenge (s-Aff-Wild2): one file per split beside `cropped_aligned/`, images relative to it
MULTITASK_FILES = {"Train_Set": "training_set_annotations.txt", "Validation_Set": "validation_set_annotations.txt"}


@dataclass
class ReadReport:
    """What a reader kept and what it skipped, with reasons: printed by the training scripts."""

    frames: int = 0
    videos: int = 0
    ignored_unlabelled: int = 0  # frames not annotated: -1 (EXPR, AU), -5 (VA)
    missing_images: int = 0  # annotated frames without a frame image (no face detected by the dataset makers)
    dropped_by_stride: int = 0
    dropped_by_cap: int = 0
    dropped_labels: dict = field(default_factory=dict)  # dataset class name -> images dropped (no model label)
    class_counts: dict = field(default_factory=dict)

    def format(self) -> str:
        return (f"{self.frames} frames from {self.videos} videos kept; skipped {self.ignored_unlabelled} frames "
                f"not annotated, {self.missing_images} annotated frames without an image, {self.dropped_by_stride} "
                f"by frame stride, {self.dropped_by_cap} by the per-class cap"
                + (f", {sum(self.dropped_labels.values())} of classes the model has no label for "
                   f"{self.dropped_labels}" if self.dropped_labels else "") + f"; per class: {self.class_counts}")


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


ANNOTATION_READERS = {"expr": read_expression_annotation, "va": read_valence_arousal_annotation,
                      "au": read_action_unit_annotation}


def is_annotated(label) -> bool:
    """Whether a frame's label says it was annotated: an expression >= 0, values without NaN."""
    return label >= 0 if isinstance(label, int) else not any(value != value for value in label)


def affwild2_annotations(root: str | os.PathLike, task: str, split: str) -> Path:
    """The annotation folder of `task` (`expr`, `va` or `au`) and `split` under an Aff-Wild2 root:
    `<challenge folder>/<split>` (both spellings of the EXPR folder), or `annotations/<split>` for EXPR; for
    `multitask`, ABAW7's file of the split (`training_set_annotations.txt`, `validation_set_annotations.txt`)."""
    if task == "multitask":
        path = Path(root) / MULTITASK_FILES.get(split, split)
        if not path.is_file():
            raise ValueError(f"{root}: no multi-task annotation file for {split}: expected {path}")
        return path
    folders = CHALLENGE_FOLDERS[task]
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
    if max_frames_per_class is not None and task != "expr":
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
    if task == "expr":
        report.class_counts = dict(sorted(Counter(columns["label"]).items()))
    elif task == "au":  # frames in which each action unit is present
        report.class_counts = dict(zip(ABAW_ACTION_UNITS, np.sum(columns["label"], axis=0).astype(int).tolist()))
    from datasets import Dataset

    return Dataset.from_dict(columns), report


MULTITASK_COLUMNS = ["image", *VALENCE_AROUSAL, "expression", *ABAW_ACTION_UNITS]


def read_multitask_annotations(path: str | os.PathLike, images_dir: str | os.PathLike) -> tuple[Dataset, ReadReport]:
    """ABAW7's multi-task annotations (s-Aff-Wild2: `training_set_annotations.txt`), one CSV of rows
    `image,valence,arousal,expression,AU1,...,AU26` with images relative to `images_dir`: columns `image`,
    `valence_arousal` (NaN where -5), `expression` (-1 where not annotated) and `action_units` (NaN throughout where
    any is -1), so that each task's loss leaves out what was not annotated, and `label`, the three side by side
    (15 values: a multi-task head's labels); `video` and `frame` split the image's path. Rows without an image are
    skipped and counted; a missing column or a bad value is a `ValueError` naming the file and line."""
    import csv

    path, images_dir = Path(path), Path(images_dir)
    if not path.is_file():
        raise ValueError(f"multi-task annotation file {path} does not exist")
    columns = {"image": [], "valence_arousal": [], "expression": [], "action_units": [], "video": [], "frame": []}
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


def read_image_folder(root: str | os.PathLike, label2id: dict) -> tuple[Dataset, ReadReport]:
    """`root/<class name>/*.jpg` (RAF-DB/AffectNet style). Class names map onto the model's labels by name
    (case-insensitively, common spellings such as `happy` included); a folder naming no label is an error that
    lists the labels."""
    from emotic.training.labels import map_labels

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    try:
        lookup = map_labels({d.name: d.name for d in class_dirs}, label2id)
    except ValueError as error:
        raise ValueError(f"{root}: class folders: {error}") from None
    paths, labels = [], []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += [str(p) for p in files]
        labels += [lookup[class_dir.name]] * len(files)
    if not paths:
        raise ValueError(f"image folder {root} has no images in class sub-folders")
    report = ReadReport(frames=len(paths), class_counts=dict(sorted(Counter(labels).items())))
    from datasets import Dataset

    return Dataset.from_dict({"image": paths, "label": labels, "index": list(range(len(paths)))}), report


def dataset_label(name: str) -> str:
    """How records name a `datasets` source: a Hub id as given, a local folder by its name (no paths of this
    machine)."""
    return Path(name).name if Path(name).exists() else name


def _load_split(name: str, split: str, config_name: str | None, columns: dict):
    """A split of a `datasets` dataset (a Hub id, or a local folder or script `datasets.load_dataset` reads), each
    of `columns` ({column: its option}) checked to be there."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(name, config_name, split=split)
    except ValueError as error:
        raise ValueError(f"--dataset_name {name}, split {split!r}: {error}") from None
    except OSError as error:  # no such folder, or a Hub id that cannot be reached (offline)
        raise ValueError(f"{name}: neither a local dataset nor one that can be loaded from the Hub ({error})") from None
    for column, option in columns.items():
        if column not in dataset.column_names:
            raise ValueError(f"{name} ({split}) has no column {column!r} ({option}); its columns are "
                             f"{dataset.column_names}")
    return dataset


def _images_only(dataset, image_column: str):
    """The image column alone, as `image`, left undecoded: the transform decodes it batch by batch, so that an
    undecodable image is skipped and counted, not fatal."""
    from datasets import Image as DatasetImage

    dataset = dataset.select_columns([image_column])
    if image_column != "image":
        dataset = dataset.rename_column(image_column, "image")
    return dataset.cast_column("image", DatasetImage(decode=False))


def read_dataset(name: str, split: str, label2id: dict, config_name: str | None = None, image_column: str = "image",
                 label_column: str = "label", label_set: str | None = None, label_map: dict | None = None,
                 drop_unmapped: bool = False) -> tuple[Dataset, ReadReport]:
    """A split of a `datasets` dataset with its labels matched to the model's by name (`emotic.training.labels`):
    columns `image` (decoded lazily, batch by batch), `label` (the model's ids) and `index` (the row, which seeds
    augmentation). Images of classes dropped on purpose (`--label_map` to null, or `drop_unmapped`) are counted in
    `ReadReport.dropped_labels`."""
    from emotic.training.labels import label_names, map_labels

    dataset = _load_split(name, split, config_name, {image_column: "--image_column", label_column: "--label_column"})
    values = list(dataset.select_columns([label_column]).with_format(None)[label_column])
    names = label_names(dataset.features[label_column], values, label_set)
    unknown = sorted({value for value in values if value not in names}, key=str)
    if unknown:
        raise ValueError(f"{name} ({split}): labels {unknown[:10]} are not in the label set {sorted(names)}")
    mapping = map_labels(names, label2id, label_map, drop_unmapped)
    keep = [row for row, value in enumerate(values) if mapping[value] is not None]
    if not keep:
        raise ValueError(f"{name} ({split}): no image has a label the model knows")
    dropped = Counter(str(names[value]) for value in values if mapping[value] is None)
    labels = [mapping[values[row]] for row in keep]
    dataset = _images_only(dataset, image_column)
    if len(keep) < len(values):
        dataset = dataset.select(keep)
    dataset = dataset.add_column("label", labels).add_column("index", list(range(len(labels))))
    report = ReadReport(frames=len(labels), class_counts=dict(sorted(Counter(labels).items())),
                        dropped_labels=dict(sorted(dropped.items())))
    return dataset, report


# The label columns a `datasets` dataset holds for each value track, and each column's "not annotated" marker and
# allowed values: valence and arousal in [-1, 1] (-5), action units 0/1 (-1), the expression an index (-1).
VALUE_COLUMNS = {"va": VALENCE_AROUSAL, "au": ABAW_ACTION_UNITS,
                 "multitask": [*VALENCE_AROUSAL, "expression", *ABAW_ACTION_UNITS]}


def _check_value(column: str, value) -> float:
    """One annotated value as a float, NaN where it says "not annotated"; a `ValueError` (without the row) when
    it is neither allowed nor the marker."""
    if value is None or (isinstance(value, float) and value != value):
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{value!r} is not a number")
    value = float(value)
    if column in VALENCE_AROUSAL:
        if value == -5:
            return float("nan")
        if not -1 <= value <= 1:
            raise ValueError(f"{column} {value:g} is out of range; expected [-1, 1], or -5 (not annotated)")
    elif column == "expression":
        if value not in range(-1, len(ABAW_EXPRESSION_LABELS)):
            raise ValueError(f"expression {value:g}: expected a class index 0..7, or -1 (not annotated)")
    elif value == -1:
        return float("nan")
    elif value not in (0, 1):
        raise ValueError(f"{column} {value:g}: expected 0 or 1, or -1 (not annotated)")
    return value


def read_value_dataset(name: str, split: str, task: str, config_name: str | None = None, image_column: str = "image",
                       label_column: str = "label") -> tuple[Dataset, ReadReport]:
    """A split of a `datasets` dataset for the action-unit (`task="au"`), valence-arousal (`"va"`) or multi-task
    track, its labels in either form: one column per value named as the track's (`valence`, `arousal`;
    `AU1` ... `AU26`; ABAW7's `valence, arousal, expression, AU1 ...` for multi-task), or one sequence column
    (`label_column`) of those values in that order. Aff-Wild2's markers (-5, -1) and missing values are "not
    annotated" (NaN; -1 for the expression) and left out of the loss; a row with nothing annotated is skipped and
    counted; another value is a `ValueError` naming the dataset, the row and the column. Columns `image` (decoded
    lazily), `label` and `index`."""
    columns = VALUE_COLUMNS[task]
    dataset = _load_split(name, split, config_name, {image_column: "--image_column"})
    table = dataset.with_format(None)
    if all(column in dataset.column_names for column in columns):
        rows = zip(*(table[column] for column in columns))
        source = f"columns {', '.join(columns)}"
    elif label_column in dataset.column_names:
        rows, source = table[label_column], f"column {label_column!r}"
    else:
        raise ValueError(f"{name} ({split}) has neither a column per value ({', '.join(columns)}) nor a sequence "
                         f"column {label_column!r} (--label_column) of {len(columns)} values; its columns are "
                         f"{dataset.column_names}")
    labels, keep, report = [], [], ReadReport()
    for row, values in enumerate(rows):
        if not isinstance(values, (list, tuple)) or len(values) != len(columns):
            raise ValueError(f"{name} ({split}), row {row}: {source} holds {values!r}; expected {len(columns)} values "
                             f"({', '.join(columns)})")
        try:
            label = [_check_value(column, value) for column, value in zip(columns, values)]
        except ValueError as error:
            raise ValueError(f"{name} ({split}), row {row}: {error}") from None
        if "expression" in columns:
            at = columns.index("expression")
            label[at] = -1.0 if label[at] != label[at] else label[at]
        annotated = [value == value and not (column == "expression" and value < 0)
                     for column, value in zip(columns, label)]
        if not any(annotated):
            report.ignored_unlabelled += 1
            continue
        labels.append(label)
        keep.append(row)
    if not keep:
        raise ValueError(f"{name} ({split}): no row has an annotated value ({report.ignored_unlabelled} rows without)")
    dataset = _images_only(dataset, image_column)
    if len(keep) < len(dataset):
        dataset = dataset.select(keep)
    dataset = dataset.add_column("label", labels).add_column("index", list(range(len(labels))))
    report.frames = len(labels)
    return dataset, report


def read_unlabelled_dataset(name: str, split: str = "train", config_name: str | None = None,
                            image_column: str = "image") -> Dataset:
    """The images of a `datasets` dataset split, for MAE pre-training: columns `image` (decoded by the transform,
    batch by batch) and `index`."""
    dataset = _images_only(_load_split(name, split, config_name, {image_column: "--image_column"}), image_column)
    return dataset.add_column("index", list(range(len(dataset))))


def read_unlabelled_faces(roots) -> Dataset:
    """Every image under the given folders (recursively), for MAE pre-training."""
    paths = []
    for root in [roots] if isinstance(roots, (str, os.PathLike)) else roots:
        if not Path(root).is_dir():
            raise ValueError(f"face folder {root} does not exist")
        for directory, _, files in os.walk(root):
            paths += [os.path.join(directory, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise ValueError(f"no images found under {roots}")
    from datasets import Dataset

    return Dataset.from_dict({"image": sorted(paths), "index": list(range(len(paths)))})


def positive_weights(labels) -> list[float]:
    """Per action unit, negatives over positives in the training frames (BCE `pos_weight`: a rare unit's positives
    weigh as much as its negatives); a unit never present gets the largest weight of the others."""
    labels = np.asarray(labels, dtype=np.float64)
    positives, negatives = (labels == 1).sum(0), (labels == 0).sum(0)
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 0.0)
    weights[positives == 0] = weights.max() if (positives > 0).any() else 1.0
    return [round(max(float(w), 1e-3), 6) for w in weights]


def inverse_frequency_weights(labels, num_classes: int) -> list[float]:
    """Class weights `N / (C * n_c)` from the training split (absent classes get the largest present weight)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    weights[counts == 0] = weights.max() if (counts > 0).any() else 1.0
    return [round(float(w), 6) for w in weights]


def annotations_by_video(root: str | os.PathLike, task: str, split: str) -> dict[str, np.ndarray]:
    """Per video of `split`, its labels by frame index (0 = the frame `00001.jpg`): expression indices (-1: not
    annotated) for `expr`; values per frame with NaN where not annotated for `va` and `au`; for `multitask`, ABAW7's
    15 columns per frame of its file (every other frame NaN throughout: not listed). What a video's frame
    features are matched against."""
    path = affwild2_annotations(root, task, split)
    if task == "multitask":
        dataset, _ = read_multitask_annotations(path, Path(root) / "cropped_aligned")
        rows = {}
        for video, frame, label in zip(dataset["video"], dataset["frame"], dataset["label"]):
            rows.setdefault(video, {})[int(Path(frame).stem) - 1] = label
        by_video = {}
        for video, frames in rows.items():
            values = np.full((max(frames) + 1, 15), np.nan)
            for index, label in frames.items():
                values[index] = label
            by_video[video] = values
        return by_video
    if not path.is_dir() or not any(path.glob("*.txt")):
        raise ValueError(f"annotation folder {path} has no <video>.txt files")
    return {annotation.stem: np.asarray(ANNOTATION_READERS[task](annotation),
                                        dtype=np.int64 if task == "expr" else np.float64)
            for annotation in sorted(path.glob("*.txt"))}


def annotation_index(location: str, frame: int) -> int:
    """The annotation line (0-based) of a frame that `emotic features`/`predict` wrote as `location` (`video/00042.jpg`:
    the frame folder's file, or the decoded video frame's 1-based number) and `frame` (its position): the number in
    the file name, less one; the position where the name has none."""
    stem = Path(location).stem
    return int(stem) - 1 if stem.isdigit() else frame


def read_video_features(path: str | os.PathLike) -> dict:
    """One video's features as `emotic features` writes them (`features/<video>.parquet`): `locations`, `frames`
    (positions), `statuses` and `features` (`(frames, width)` float32). A file that is not such a table is a
    `ValueError` naming it."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises its own errors for files that are not Parquet
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    missing = {"image_location", "frame", "status", "features"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: lacks the column(s) {sorted(missing)}; expected the files `emotic features` "
                         f"writes (video, frame, image_location, status, features)")
    values = table.column("features").combine_chunks()
    width = getattr(values.type, "list_size", None)
    if width is None or table.num_rows == 0:
        raise ValueError(f"{path}: {table.num_rows} rows of {values.type}; expected one row per frame with a "
                         f"fixed-size list of features")
    features = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(table.num_rows, width)
    return {"locations": table.column("image_location").to_pylist(), "frames": table.column("frame").to_pylist(),
            "statuses": table.column("status").to_pylist(), "features": features}
