"""Matching a dataset's expression labels to the model's, by name: never by position.

Expression datasets number the same classes differently (FER2013: 0 = Angry; AffectNet: 0 = Neutral; RAF-DB: 1 =
Surprise) and name them differently ("happy", "Happiness", "HA"). A dataset's labels are mapped onto the model's
`label2id` through their names: the names a `datasets.ClassLabel` carries, folder names, string labels, or, for
bare integers, a named label set (`LABEL_SETS`) or the caller's own map. A class the model has no label for is
refused by name, or dropped and counted when the caller asks for that.
"""

import json
from pathlib import Path
from typing import Literal, get_args

# Known label sets: index -> name, in each dataset's own order.
LabelSet = Literal["abaw", "fer2013", "affectnet7", "affectnet8", "rafdb", "ckplus"]
LABEL_SETS = {
    "abaw": ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"],  # Aff-Wild2 EXPR
    "fer2013": ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"],
    "affectnet7": ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger"],
    "affectnet8": ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"],
    # RAF-DB basic emotions are numbered from 1 in its list file: label 1 is Surprise
    "rafdb": {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happiness", 5: "Sadness", 6: "Anger", 7: "Neutral"},
    "ckplus": ["Neutral", "Anger", "Contempt", "Disgust", "Fear", "Happy", "Sadness", "Surprise"],
}
assert tuple(LABEL_SETS) == get_args(LabelSet)

# Other spellings of the ABAW expression names, lower case (datasets, folder names, two-letter codes).
SYNONYMS = {
    "neutral": "Neutral", "ne": "Neutral", "neu": "Neutral",
    "anger": "Anger", "angry": "Anger", "an": "Anger", "ang": "Anger",
    "disgust": "Disgust", "disgusted": "Disgust", "di": "Disgust", "dis": "Disgust",
    "fear": "Fear", "fearful": "Fear", "afraid": "Fear", "fe": "Fear",
    "happiness": "Happiness", "happy": "Happiness", "joy": "Happiness", "ha": "Happiness", "hap": "Happiness",
    "sadness": "Sadness", "sad": "Sadness", "sa": "Sadness",
    "surprise": "Surprise", "surprised": "Surprise", "su": "Surprise", "sur": "Surprise",
    "other": "Other",
}


def label_names(feature, values, label_set: str | None = None) -> dict:
    """The dataset's own labels, as {value in the column: name}: from a `ClassLabel` feature's names, from a named
    label set for bare integers, or the values themselves when they are strings."""
    if label_set is not None:
        if label_set not in LABEL_SETS:
            raise ValueError(f"--label_set {label_set!r}; allowed: {sorted(LABEL_SETS)}")
        known = LABEL_SETS[label_set]
        return dict(known.items()) if isinstance(known, dict) else dict(enumerate(known))
    names = getattr(feature, "names", None)
    if names:
        return dict(enumerate(names))
    distinct = sorted(set(values), key=str)
    if all(isinstance(value, str) for value in distinct):
        return {value: value for value in distinct}
    raise ValueError(f"the label column holds bare numbers {distinct[:10]} without names: say which label set they "
                     f"follow with --label_set ({', '.join(sorted(LABEL_SETS))}) or map them with --label_map")


def read_label_map(text: str | None) -> dict:
    """`--label_map`: JSON (inline or a file) from the dataset's label (name or number) to a model label name, or
    null to drop that class."""
    if not text:
        return {}
    source = Path(text)
    try:
        value = json.loads(source.read_text() if not text.lstrip().startswith("{") and source.is_file() else text)
    except ValueError as error:
        raise ValueError(f"--label_map: not valid JSON ({error}); expected e.g. '{{\"contempt\": \"Other\"}}'") \
            from None
    if not isinstance(value, dict):
        raise ValueError(f"--label_map: expected a JSON object from dataset labels to model labels, got "
                         f"{type(value).__name__}")
    return {str(key): target for key, target in value.items()}


def map_labels(names: dict, label2id: dict, label_map: dict | None = None, drop_unmapped: bool = False) -> dict:
    """{value in the dataset's label column: model label id, or None to drop}. By the caller's map first (keyed by
    name or by value), then by name (case-insensitively, with `SYNONYMS`). A class that maps to nothing is a
    `ValueError` naming it and the model's labels, unless `drop_unmapped`."""
    label_map = label_map or {}
    lookup = {name.lower(): index for name, index in label2id.items()}
    mapping, unmapped = {}, []
    for value, name in names.items():
        if str(name) in label_map or str(value) in label_map:
            target = label_map.get(str(name), label_map.get(str(value)))
            if target is None:  # dropped on purpose
                mapping[value] = None
                continue
            if str(target).lower() not in lookup:
                raise ValueError(f"--label_map sends {name!r} to {target!r}, which is not one of the model's labels "
                                 f"{sorted(label2id, key=label2id.get)}")
            mapping[value] = lookup[str(target).lower()]
            continue
        key = str(name).strip().lower()
        canonical = SYNONYMS.get(key, key).lower()
        if canonical in lookup:
            mapping[value] = lookup[canonical]
        elif key in lookup:
            mapping[value] = lookup[key]
        else:
            unmapped.append(name)
            mapping[value] = None
    if unmapped and not drop_unmapped:
        raise ValueError(f"dataset labels {unmapped} are not among the model's labels "
                         f"{sorted(label2id, key=label2id.get)}: map them with --label_map (e.g. "
                         f"'{{\"{unmapped[0]}\": \"Other\"}}') or drop their images with --drop_unmapped_labels")
    targets = [index for index in mapping.values() if index is not None]
    if len(targets) != len(set(targets)) and not label_map:
        merged = sorted({names[v] for v, i in mapping.items() if i is not None and targets.count(i) > 1}, key=str)
        raise ValueError(f"dataset labels {merged} would merge into one model label; say how with --label_map")
    return mapping
