"""The ABAW expression score, computed through emotic's own `evaluate` metric module (`hub_cards/abaw_expression/`,
shipped in the package, loaded offline by path, published beside a model by `emotic export --include_metric`): the
one implementation behind every score emotic reports."""

from functools import cache

from emotic.hub_cards import METRIC_PATH


@cache
def abaw_expression_metric():
    """The metric module, loaded once per process (`import evaluate` takes seconds, so only when a score is due),
    keeping its predictions in memory (no cache files written per score)."""
    import evaluate

    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def expression_metrics(predictions, labels, num_classes: int = 8, class_names=None) -> dict:
    """Macro-F1 over `num_classes` (the ABAW EXPR score: the unweighted mean of per-class F1, a class absent from
    both predictions and labels counting 0), per-class F1, accuracy and the confusion matrix (rows = true class).
    Labels below 0 (Aff-Wild2's -1) are ignored."""
    import numpy as np

    predictions, labels = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions ({predictions.shape[0]}) and labels ({labels.shape[0]}) differ in length")
    return abaw_expression_metric().compute(predictions=predictions.tolist(), references=labels.tolist(),
                                            num_classes=num_classes, class_names=class_names)
