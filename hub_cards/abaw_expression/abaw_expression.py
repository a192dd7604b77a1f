"""The ABAW expression score as an `evaluate` metric module: macro-F1 over the 8 Aff-Wild2 expression classes (the
ABAW EXPR challenge's score), with per-class F1, accuracy and the confusion matrix.

    import evaluate
    metric = evaluate.load("path/to/abaw_expression")   # this folder: works offline
    metric.compute(predictions=[4, 0, 6], references=[4, 1, 6])

Self-contained (numpy and evaluate only), so it can be copied or published beside a model and score predictions
exactly as emotic does; emotic computes every score it reports through it.
"""

import datasets
import evaluate
import numpy as np

# The 8 expression classes of Aff-Wild2 / ABAW, in the index order of the annotation files.
ABAW_EXPRESSIONS = ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"]

_DESCRIPTION = __doc__.split("\n\n")[0]
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class indices.
    references (`list[int]`): true class indices; negative ones (Aff-Wild2's -1, "not annotated") are ignored.
    num_classes (`int`, defaults to 8): the classes macro-F1 averages over; a class absent from both predictions and
        references counts as F1 0 (the challenge's rule).
    class_names (`list[str]`, *optional*): names for `per_class_f1`; the ABAW expressions for 8 classes.
Returns:
    macro_f1, accuracy, per_class_f1 ({name: F1}), confusion_matrix (rows: true class), num_frames (scored).
"""


def abaw_expression_score(predictions, references, num_classes: int = 8, class_names=None) -> dict:
    """The score itself, on numpy: see the module's description."""
    predictions, references = np.asarray(predictions).reshape(-1), np.asarray(references).reshape(-1)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions ({predictions.shape[0]}) and references ({references.shape[0]}) differ in "
                         f"length")
    keep = references >= 0
    predictions, references = predictions[keep].astype(np.int64), references[keep].astype(np.int64)
    if ((predictions < 0) | (predictions >= num_classes) | (references >= num_classes)).any():
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    confusion = np.bincount(references * num_classes + predictions, minlength=num_classes**2).reshape(
        num_classes, num_classes)
    true_positives = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(0) + confusion.sum(1)  # predicted + actual = 2TP + FP + FN
    f1 = np.divide(2 * true_positives, denominator, out=np.zeros(num_classes), where=denominator > 0)
    names = list(class_names or (ABAW_EXPRESSIONS if num_classes == 8 else range(num_classes)))
    return {
        "macro_f1": float(f1.mean()),
        "accuracy": float(true_positives.sum() / max(len(references), 1)),
        "per_class_f1": {str(name): float(value) for name, value in zip(names, f1)},
        "confusion_matrix": confusion.tolist(),
        "num_frames": int(len(references)),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AbawExpression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_classes: int = 8, class_names=None):
        return abaw_expression_score(predictions, references, num_classes, class_names)
