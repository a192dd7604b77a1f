"""The ABAW action-unit score as an `evaluate` metric module: the mean over the 12 Aff-Wild2 action units of the
binary F1 (the ABAW AU challenge's score), with each AU's F1 and the thresholds used.

    import evaluate
    metric = evaluate.load("path/to/abaw_action_units")   # this folder: works offline
    metric.compute(predictions=[[0.9] * 12, [0.1] * 12], references=[[1] * 12, [0] * 12])

Predictions are probabilities (or 0/1); an AU counts as present when its probability reaches its threshold (0.5,
or per AU as chosen on validation data and stored with the model). Self-contained (numpy and evaluate only), so it
can be copied or published beside a model and score predictions exactly as emotic does.
"""

import datasets
import evaluate
import numpy as np

# The 12 action units of Aff-Wild2 / ABAW, in the column order of the annotation files.
ABAW_ACTION_UNITS = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]

_DESCRIPTION = __doc__.split("\n\n")[0]
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per frame, a probability (or 0/1) per action unit.
    references (`list[list[int]]`): per frame, 0/1 per action unit; a frame with any -1 (not annotated) is left
        out, as the ABAW loaders do.
    thresholds (`list[float]` or `float`, *optional*): the probability at which each AU counts as present
        (defaults to 0.5 each).
    au_names (`list[str]`, *optional*): names for `per_au_f1`; the ABAW action units for 12 columns.
Returns:
    au_score (the mean F1 over the AUs; an AU never present in predictions nor references counts 0), per_au_f1,
    thresholds, num_frames (scored).
"""


def binary_f1(predicted: np.ndarray, actual: np.ndarray) -> float:
    """F1 of one binary label: 2 TP / (2 TP + FP + FN), 0 when there is nothing to score (as scikit-learn's
    `f1_score(..., zero_division=0)`)."""
    true_positives = np.sum(predicted & actual)
    denominator = np.sum(predicted) + np.sum(actual)
    return float(2 * true_positives / denominator) if denominator else 0.0


def abaw_action_units_score(predictions, references, thresholds=None, au_names=None) -> dict:
    """The score itself, on numpy: see the module's description."""
    predictions, references = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape != references.shape:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape}: expected two arrays "
                         f"of shape (frames, action units)")
    num_units = predictions.shape[1]
    thresholds = np.broadcast_to(np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64),
                                 (num_units,))
    annotated = (references >= 0).all(axis=1)
    predictions, references = predictions[annotated], references[annotated]
    if not np.isin(references, (0, 1)).all():
        raise ValueError("references must be 0 or 1 per action unit (or -1: not annotated)")
    if not np.isfinite(predictions).all():
        raise ValueError("predictions hold NaN or infinity")
    present, actual = predictions >= thresholds, references.astype(bool)
    f1 = [binary_f1(present[:, unit], actual[:, unit]) for unit in range(num_units)]
    names = list(au_names or (ABAW_ACTION_UNITS if num_units == len(ABAW_ACTION_UNITS) else range(num_units)))
    return {"au_score": float(np.mean(f1)), "per_au_f1": {str(name): value for name, value in zip(names, f1)},
            "thresholds": [float(value) for value in thresholds], "num_frames": int(annotated.sum())}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AbawActionUnits(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, references, thresholds=None, au_names=None):
        return abaw_action_units_score(predictions, references, thresholds, au_names)
