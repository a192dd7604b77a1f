"""The ABAW expression score and its companions, computed locally (no metric is downloaded from a hub)."""

import numpy as np

from emotic.modeling.configuration_emotic import ABAW_EXPRESSION_LABELS


def expression_metrics(predictions, labels, num_classes: int = 8, class_names=None) -> dict:
    """Macro-F1 over `num_classes` (the ABAW EXPR score: the unweighted mean of per-class F1, a class absent from
    both predictions and labels counting 0), per-class F1, accuracy and the confusion matrix (rows = true class).
    Labels below 0 (Aff-Wild2's -1) are ignored."""
    predictions, labels = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions ({predictions.shape[0]}) and labels ({labels.shape[0]}) differ in length")
    keep = labels >= 0
    predictions, labels = predictions[keep].astype(np.int64), labels[keep].astype(np.int64)
    if ((predictions < 0) | (predictions >= num_classes) | (labels >= num_classes)).any():
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    confusion = np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(
        num_classes, num_classes)
    true_positives = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(0) + confusion.sum(1)  # predicted + actual = 2TP + FP + FN
    f1 = np.divide(2 * true_positives, denominator, out=np.zeros(num_classes), where=denominator > 0)
    names = list(class_names or (ABAW_EXPRESSION_LABELS if num_classes == 8 else range(num_classes)))
    return {
        "macro_f1": float(f1.mean()),
        "accuracy": float(true_positives.sum() / max(len(labels), 1)),
        "per_class_f1": {str(name): float(value) for name, value in zip(names, f1)},
        "confusion_matrix": confusion.tolist(),
        "num_frames": int(len(labels)),
    }
