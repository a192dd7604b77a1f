"""The ABAW scores, computed through emotic's own `evaluate` metric modules (`hub_cards/abaw_expression/`,
`abaw_action_units/`, `abaw_valence_arousal/`, `abaw_multitask/`, shipped in the package, loaded offline by path,
published beside a model by `emotic export --include_metric`): the one implementation behind every score emotic
reports."""

from functools import cache

import numpy as np

from emotic.hub_cards import METRIC_PATH, METRIC_PATHS  # noqa: F401  (METRIC_PATH: the EXPR module, as before)
from emotic.tracks import EXPRESSION


@cache
def abaw_metric(task: str = EXPRESSION):
    """The metric module of `task` (`expr`, `au`, `va` or `multitask`), loaded once per process (`import evaluate` takes
    seconds, so only when a score is due), keeping its predictions in memory (no cache files written per score)."""
    import evaluate

    return evaluate.load(str(METRIC_PATHS[task]), keep_in_memory=True)


def expression_metrics(predictions, labels, num_classes: int = 8, class_names=None) -> dict:
    """Macro-F1 over `num_classes` (the ABAW EXPR score: the unweighted mean of per-class F1, a class absent from
    both predictions and labels counting 0), per-class F1, accuracy and the confusion matrix (rows = true class).
    Labels below 0 (Aff-Wild2's -1) are ignored."""
    predictions, labels = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions ({predictions.shape[0]}) and labels ({labels.shape[0]}) differ in length")
    return abaw_metric("expr").compute(predictions=predictions.tolist(), references=labels.tolist(),
                                       num_classes=num_classes, class_names=class_names)


def valence_arousal_metrics(predictions, labels) -> dict:
    """The ABAW VA score: the mean of the CCCs of valence and arousal, each over its annotated frames (NaN or -5
    labels are not annotated), with both CCCs."""
    predictions, labels = _float_rows(predictions, labels, 2)
    labels = np.where(np.isnan(labels), -5.0, labels)  # the module's marker for "not annotated"
    return abaw_metric("va").compute(predictions=predictions.tolist(), references=labels.tolist())


def action_unit_metrics(probabilities, labels, thresholds=None, au_names=None) -> dict:
    """The ABAW AU score: the mean over the action units of binary F1, an AU present where its probability reaches
    its threshold (0.5 or per AU); frames with an unannotated AU (-1 or NaN) are left out."""
    probabilities, labels = _float_rows(probabilities, labels)
    labels = np.where(np.isnan(labels), -1.0, labels)
    return abaw_metric("au").compute(predictions=probabilities.tolist(), references=labels.tolist(),
                                     thresholds=None if thresholds is None else list(thresholds), au_names=au_names)


def choose_thresholds(probabilities, labels, candidates=np.linspace(0.05, 0.95, 19)) -> list[float]:
    """Per action unit, the threshold among `candidates` with the best F1 on these (validation) frames (the lowest
    such on ties), for `config.label_thresholds`. Frames with an unannotated AU are left out, as when scoring."""
    probabilities, labels = _float_rows(probabilities, labels)
    annotated = (np.nan_to_num(labels, nan=-1.0) >= 0).all(axis=1)
    probabilities, actual = probabilities[annotated], labels[annotated].astype(bool)
    chosen = []
    for unit in range(probabilities.shape[1]):
        present = probabilities[:, unit, None] >= np.asarray(candidates)[None]  # [frames, candidates]
        true_positives = (present & actual[:, unit, None]).sum(0)
        denominator = present.sum(0) + actual[:, unit].sum()
        f1 = np.divide(2 * true_positives, denominator, out=np.zeros(len(candidates)), where=denominator > 0)
        chosen.append(round(float(candidates[int(np.argmax(f1))]), 6))
    return chosen


def multitask_metrics(outputs, labels, thresholds=None) -> dict:
    """The ABAW multi-task score (P_VA + P_EXPR + P_AU) of a multi-task head's outputs in ABAW7's layout (valence,
    arousal, the 8 expression probabilities, the 12 unit probabilities) against labels in its file's columns
    (valence, arousal, expression, 12 units; NaN, -5 or -1 where not annotated): the submission's values (the
    expression's argmax, each unit at its threshold, 0.5 unless given) scored by the multi-task module, with each
    track's own metrics under `va`, `expr` and `au`."""
    outputs, labels = np.asarray(outputs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] != 22 or labels.shape != (len(outputs), 15):
        raise ValueError(f"outputs {outputs.shape} and labels {labels.shape}: expected (frames, 22) head outputs and "
                         f"(frames, 15) labels (valence, arousal, expression, 12 action units)")
    probabilities = outputs[:, 10:]
    cut = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64)
    rows = np.concatenate([outputs[:, :2], outputs[:, 2:10].argmax(1)[:, None], probabilities >= cut], axis=1)
    result = abaw_metric("multitask").compute(predictions=rows.tolist(), references=labels.tolist())
    expressions = np.nan_to_num(labels[:, 2], nan=-1.0).astype(np.int64)
    result["va"] = valence_arousal_metrics(outputs[:, :2], labels[:, :2])
    result["expr"] = expression_metrics(rows[:, 2].astype(np.int64), expressions)
    result["au"] = action_unit_metrics(probabilities, labels[:, 3:], thresholds)
    result["num_frames"] = len(outputs)
    return result


# Each ABAW track's metrics (`emotic.tracks`), from per-frame head outputs as `head_outputs` gives them
# (probabilities, values): (outputs, labels, class_names, thresholds) -> metrics
TRACK_METRICS = {
    "expr": lambda outputs, labels, names, thresholds: expression_metrics(
        outputs.argmax(-1), labels, len(names) if names else outputs.shape[-1], names),
    "au": lambda outputs, labels, names, thresholds: action_unit_metrics(outputs, labels, thresholds, names),
    "va": lambda outputs, labels, names, thresholds: valence_arousal_metrics(outputs, labels),
    "multitask": lambda outputs, labels, names, thresholds: multitask_metrics(outputs, labels, thresholds),
}


def track_metrics(track: str, outputs, labels, class_names=None, thresholds=None) -> dict:
    """The metrics of the ABAW track (`head_track`) from per-frame head outputs as `head_outputs` gives them
    (probabilities, values) against labels; `class_names` name the classes or units (the head's labels),
    `thresholds` the units' decision thresholds (0.5 unless given)."""
    return TRACK_METRICS[track](np.asarray(outputs), labels, class_names, thresholds)


def _float_rows(predictions, labels, width: int | None = None):
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if width is not None:
        predictions, labels = predictions.reshape(-1, width), labels.reshape(-1, width)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    return predictions, labels
