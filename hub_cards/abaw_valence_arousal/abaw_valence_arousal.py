"""The ABAW valence-arousal score as an `evaluate` metric module: the concordance correlation coefficient (CCC) of
valence and of arousal over all annotated frames, and their mean (the ABAW VA challenge's score).

    import evaluate
    metric = evaluate.load("path/to/abaw_valence_arousal")   # this folder: works offline
    metric.compute(predictions=[[0.1, 0.3], [0.5, -0.2]], references=[[0.2, 0.4], [0.4, -0.1]])

Self-contained (numpy and evaluate only), so it can be copied or published beside a model and score predictions
exactly as emotic does; emotic computes every VA score it reports through it.
"""

import datasets
import evaluate
import numpy as np

# Aff-Wild2 marks a frame whose valence or arousal was not annotated with -5.
UNANNOTATED = -5.0

_DESCRIPTION = __doc__.split("\n\n")[0]
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per frame, the predicted [valence, arousal].
    references (`list[list[float]]`): per frame, the annotated [valence, arousal] in [-1, 1]; -5 or NaN (not
        annotated) leaves that value out, so each of valence and arousal is scored over its annotated frames.
Returns:
    va_score (the mean of the two CCCs), ccc_valence, ccc_arousal, num_frames (frames with both values annotated).
"""


def concordance_correlation(predictions, references) -> float:
    """Lin's CCC with population moments: 2 cov(x, y) / (var x + var y + (mean x - mean y)^2); 0 for fewer than two
    values or when both are constant and equal."""
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    covariance = ((x - x.mean()) * (y - y.mean())).mean()
    denominator = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def abaw_valence_arousal_score(predictions, references) -> dict:
    """The score itself, on numpy: see the module's description."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1, 2)
    references = np.asarray(references, dtype=np.float64).reshape(-1, 2)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions ({predictions.shape[0]} frames) and references ({references.shape[0]} frames) "
                         f"differ in length")
    annotated = np.isfinite(references) & (references != UNANNOTATED)
    if (np.abs(references[annotated]) > 1).any():
        raise ValueError("references must lie in [-1, 1] (or be -5 / NaN: not annotated)")
    if not np.isfinite(predictions[annotated]).all():
        raise ValueError("predictions hold NaN or infinity where references are annotated")
    valence, arousal = (concordance_correlation(predictions[annotated[:, i], i], references[annotated[:, i], i])
                        for i in (0, 1))
    return {"va_score": (valence + arousal) / 2, "ccc_valence": valence, "ccc_arousal": arousal,
            "num_frames": int(annotated.all(axis=1).sum())}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AbawValenceArousal(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, references):
        return abaw_valence_arousal_score(predictions, references)
