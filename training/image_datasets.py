"""Training images that are not Aff-Wild2 videos: a folder of class sub-folders, any `datasets` dataset (a Hub id
or a local folder `datasets.load_dataset` reads; expression labels matched by name, or the value columns of the other
tracks), and unlabelled face folders for MAE pre-training.

Each reader lists files or rows into a `datasets.Dataset` whose images are decoded lazily, batch by batch, by
`emotic.training.transforms.ViewTransform`, with `index`, the row, which seeds the row's augmentation.
"""

from __future__ import annotations  # `datasets` is imported where a reader runs: inference needs none of it

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS, VALENCE_AROUSAL
from emotic.processing.image_files import IMAGE_EXTENSIONS
from emotic.tracks import TRACKS
from emotic.training.read_report import ReadReport

if TYPE_CHECKING:
    from datasets import Dataset


def read_image_folder(root: str | os.PathLike, label2id: dict, label_map: dict | None = None,
                      drop_unmapped: bool = False) -> tuple[Dataset, ReadReport]:
    """`root/<class name>/*.jpg` (RAF-DB/AffectNet style, FER+'s folders). Class names map onto the model's labels as
    a `datasets` dataset's do (`emotic.training.labels.map_labels`): by `label_map` first (`--label_map`, a class to
    null drops it), then by name (case-insensitively, common spellings such as `happy` included); a folder naming no
    label is an error that lists the labels, unless `drop_unmapped`. Dropped classes' images are counted in
    `ReadReport.dropped_labels`, class folders without an image in `ReadReport.empty_classes`."""
    from emotic.training.labels import map_labels

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    try:
        lookup = map_labels({d.name: d.name for d in class_dirs}, label2id, label_map, drop_unmapped)
    except ValueError as error:
        raise ValueError(f"{root}: class folders: {error}") from None
    paths, labels, dropped, empty = [], [], Counter(), []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty.append(class_dir.name)
        if lookup[class_dir.name] is None:
            dropped[class_dir.name] += len(files)
            continue
        paths += [str(p) for p in files]
        labels += [lookup[class_dir.name]] * len(files)
    if not paths:
        raise ValueError(f"image folder {root} has no images in class sub-folders"
                         + (f" it keeps (dropped: {dict(dropped)})" if dropped else ""))
    report = ReadReport(frames=len(paths), class_counts=dict(sorted(Counter(labels).items())),
                        dropped_labels=dict(sorted(dropped.items())), empty_classes=empty)
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


# The label columns a `datasets` dataset holds for a value track are the track's (`Track.label_columns`); each
# column's "not annotated" marker and allowed values: valence and arousal in [-1, 1] (-5), action units 0/1 (-1), the
# expression an index (-1).
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
    columns = TRACKS[task].label_columns
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
