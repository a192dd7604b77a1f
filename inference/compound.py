"""Compound expressions zero-shot from an expression model (the ABAW6/ABAW7 compound-expression track, whose
organisers give no training labels): a compound's score is the mean of the probabilities of the two basic
expressions it is made of, and a frame gets the compound with the highest score.

    emotic predict MODEL VIDEOS... --output_dir OUT --compound_submission   # also writes OUT/submission_compound.txt
"""

import csv
from pathlib import Path

import numpy as np

# The 7 compound expressions, in the submission's column order, each with the two basic expressions it combines.
COMPOUND_EXPRESSIONS = {
    "Fearfully_Surprised": ("Fear", "Surprise"),
    "Happily_Surprised": ("Happiness", "Surprise"),
    "Sadly_Surprised": ("Sadness", "Surprise"),
    "Disgustedly_Surprised": ("Disgust", "Surprise"),
    "Angrily_Surprised": ("Anger", "Surprise"),
    "Sadly_Fearful": ("Sadness", "Fear"),
    "Sadly_Angry": ("Sadness", "Anger"),
}


def check_compound_labels(labels) -> None:
    """A `ValueError` naming the basic expressions a model lacks for the compound rule."""
    missing = sorted({name for pair in COMPOUND_EXPRESSIONS.values() for name in pair} - set(labels))
    if missing:
        raise ValueError(f"compound expressions are scored from the basic expressions {missing}, which this model's "
                         f"labels {list(labels)} lack: use an expression (EXPR) model")


def compound_scores(probabilities, labels) -> np.ndarray:
    """`(frames, 7)` compound scores from `(frames, len(labels))` expression probabilities: for each compound, the
    mean of its two basic expressions' probabilities."""
    check_compound_labels(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(labels))
    index = {name: i for i, name in enumerate(labels)}
    return np.stack([(probabilities[:, index[a]] + probabilities[:, index[b]]) / 2
                     for a, b in COMPOUND_EXPRESSIONS.values()], axis=1)


def write_compound_submission(csv_paths, labels, path: Path, rows_of) -> int:
    """The compound-expression submission from `emotic predict`'s per-frame CSVs (their smoothed probabilities),
    streamed: header `image_location,Fearfully_Surprised,...,Sadly_Angry`, then `location,<0-based index>`, for
    the `(location, row)` pairs `rows_of(csv_path)` gives (`emotic.inference.predict.submission_rows`: each frame,
    or each tracked person's frames)."""
    check_compound_labels(labels)
    lines = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["image_location", *COMPOUND_EXPRESSIONS])
        for csv_path in csv_paths:
            rows = list(rows_of(csv_path))
            if not rows:
                continue
            scores = compound_scores([[float(row[name]) for name in labels] for _, row in rows], labels)
            for (location, _), best in zip(rows, scores.argmax(axis=1)):
                writer.writerow([location, int(best)])
                lines += 1
    return lines

