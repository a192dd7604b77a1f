"""The ABAW multi-task score as an `evaluate` metric module: P_VA + P_EXPR + P_AU (ABAW7's multi-task challenge),
with each track's score: the mean CCC of valence and arousal, the expressions' macro-F1 over 8 classes and the mean
binary F1 over the 12 action units, each over the frames annotated for that track.

    import evaluate
    metric = evaluate.load("path/to/abaw_multitask")   # this folder: works offline
    metric.compute(predictions=[[0.1, 0.3, 4, *[0] * 12], [0.5, -0.2, 0, *[1] * 12]],
                   references=[[0.2, 0.4, 4, *[0] * 12], [0.4, -0.1, 1, *[1] * 12]])

Rows are ABAW7's columns after the image: valence, arousal, expression, AU1 ... AU26. Self-contained (numpy and
evaluate only), so it can be copied or published beside a model and score predictions exactly as emotic does.
"""

import datasets
import evaluate
import numpy as np

NUM_EXPRESSIONS, NUM_UNITS = 8, 12
COLUMNS = 2 + 1 + NUM_UNITS

_DESCRIPTION = __doc__.split("\n\n")[0]
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per frame, [valence, arousal, expression index, 12 action units 0/1].
    references (`list[list[float]]`): per frame, the annotations in the same columns, with ABAW7's markers for
        "not annotated": valence or arousal -5 (or NaN), expression -1, an action unit -1 (the frame's units are
        then left out, as the ABAW loaders do).
Returns:
    mtl_score (va_score + expr_score + au_score), va_score, ccc_valence, ccc_arousal, expr_score (macro-F1),
    au_score (mean F1), and the frames each was scored on (va_frames, expr_frames, au_frames).
"""


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation with population moments; 0 for fewer than two frames or no spread at all."""
    if x.size < 2:
        return 0.0
    moments = np.cov(np.stack([x, y]), bias=True)
    spread = moments[0, 0] + moments[1, 1] + (x.mean() - y.mean()) ** 2
    return float(2 * moments[0, 1] / spread) if spread > 0 else 0.0


def _mean_f1(predicted: np.ndarray, actual: np.ndarray) -> float:
    """The mean over columns of binary F1 (0 where a column has nothing predicted nor present)."""
    hits = 2 * (predicted & actual).sum(0)
    totals = predicted.sum(0) + actual.sum(0)
    return float(np.where(totals > 0, hits / np.maximum(totals, 1), 0.0).mean())


def abaw_multitask_score(predictions, references) -> dict:
    """The score itself, on numpy: see the module's description."""
    predictions, references = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape != references.shape or predictions.shape[1] != COLUMNS:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape}: expected two arrays of "
                         f"shape (frames, {COLUMNS}): valence, arousal, expression, 12 action units")
    if not np.isfinite(predictions).all():
        raise ValueError("predictions hold NaN or infinity")
    va = {}
    for column, name in ((0, "ccc_valence"), (1, "ccc_arousal")):
        truth = references[:, column]
        keep = np.isfinite(truth) & (truth != -5)
        if (np.abs(truth[keep]) > 1).any():
            raise ValueError(f"references: {name[4:]} must lie in [-1, 1] (or be -5: not annotated)")
        va[name] = _ccc(predictions[keep, column], truth[keep])
    expression = np.nan_to_num(references[:, 2], nan=-1.0)
    scored = expression >= 0
    predicted_class, true_class = predictions[scored, 2].astype(np.int64), expression[scored].astype(np.int64)
    if ((predicted_class < 0) | (predicted_class >= NUM_EXPRESSIONS) | (true_class >= NUM_EXPRESSIONS)).any():
        raise ValueError(f"expressions must be class indices 0..{NUM_EXPRESSIONS - 1} (or -1: not annotated)")
    classes = np.arange(NUM_EXPRESSIONS)
    expr_score = _mean_f1(predicted_class[:, None] == classes, true_class[:, None] == classes)
    units = np.nan_to_num(references[:, 3:], nan=-1.0)
    annotated = (units >= 0).all(axis=1)
    if not np.isin(units[annotated], (0, 1)).all() or not np.isin(predictions[:, 3:], (0, 1)).all():
        raise ValueError("action units must be 0 or 1 (references also -1: not annotated)")
    au_score = _mean_f1(predictions[annotated, 3:] >= 0.5, units[annotated] >= 0.5)
    va_score = (va["ccc_valence"] + va["ccc_arousal"]) / 2
    return {"mtl_score": va_score + expr_score + au_score, "va_score": va_score, **va, "expr_score": expr_score,
            "au_score": au_score, "va_frames": int((np.isfinite(references[:, :2]) & (references[:, :2] != -5))
                                                   .all(axis=1).sum()),
            "expr_frames": int(scored.sum()), "au_frames": int(annotated.sum())}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AbawMultitask(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, references):
        return abaw_multitask_score(predictions, references)
