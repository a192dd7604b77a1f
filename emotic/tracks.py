"""The ABAW tracks emotic serves, each declared once: expressions (`expr`), action units (`au`), valence-arousal
(`va`) and all three on one trunk (`multitask`, ABAW7's multi-task challenge).

A track's head (labels, problem type, activation, loss) is `emotic.modeling.heads_emotic.HEADS`' entry, which the
models carry into Hub repositories. Everything else a track is lives here, in two declarations:

- `OUTPUTS`, one per kind of head output (a multi-task head has three side by side): what a frame without a face
  is given, its columns in the per-frame CSV and in the submission, its loss weights from training labels and its
  class counts;
- `TRACKS`, one per track: its outputs in order, where its Aff-Wild2 annotations lie and how runs on them name the
  data, its score (the one that ranks smoothing windows and models) and headline scores, the smoothing modes that
  apply, its `evaluate` metric module and what its model card says.

The other modules ask the registry (`track_of(config)`, `TRACKS[name]`) instead of comparing track names. A new track
is one entry in each (and in `HEADS`) plus its annotation reader (`emotic.training.affwild2.ANNOTATION_READERS`) and
its metric (`emotic.training.metrics.TRACK_METRICS`).
"""

from dataclasses import dataclass, field

import numpy as np

from emotic.modeling.heads_emotic import HEADS, MULTITASK, MULTITASK_TRACKS, head_track, multitask_labels

EXPRESSION = "expr"  # the track of expression classes: what the app shows, what compound expressions come from


def inverse_frequency_weights(labels, num_classes: int) -> list[float]:
    """Class weights `N / (C * n_c)` from the training split (absent classes get the largest present weight)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    weights[counts == 0] = weights.max() if (counts > 0).any() else 1.0
    return [round(float(w), 6) for w in weights]


def positive_weights(labels) -> list[float]:
    """Per action unit, negatives over positives in the training frames (BCE `pos_weight`: a rare unit's positives
    weigh as much as its negatives); a unit never present gets the largest weight of the others."""
    labels = np.asarray(labels, dtype=np.float64)
    positives, negatives = (labels == 1).sum(0), (labels == 0).sum(0)
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 0.0)
    weights[positives == 0] = weights.max() if (positives > 0).any() else 1.0
    return [round(max(float(w), 1e-3), 6) for w in weights]


def unit_thresholds(names, thresholds=None) -> np.ndarray:
    """Each action unit's decision threshold on its probability: the model's `label_thresholds`, or 0.5."""
    return np.asarray(thresholds if thresholds is not None else [0.5] * len(names), dtype=np.float64)


def units_present(names, thresholds=None):
    """`probabilities -> "AU6+AU12"`: the action units whose probability reaches their threshold (0.5 unless set)."""
    thresholds = unit_thresholds(names, thresholds)
    return lambda probabilities: "+".join(name for name, on in zip(names, np.asarray(probabilities) >= thresholds)
                                          if on)


# -- the outputs of each kind of head ---------------------------------------------------------------------------------

class ExpressionOutputs:
    """Expression probabilities (softmax): one class index per frame."""

    name = "expr"
    single_label = True  # classes: a confusion matrix, per-class F1, a majority vote, compound expressions
    thresholded = False  # a decision threshold per output (`config.label_thresholds`)

    def no_face(self, width: int) -> np.ndarray:
        """A frame without a face, until its neighbour's outputs replace it: uniform probabilities."""
        return np.full(width, 1.0 / width)

    def csv_columns(self, names) -> list[str]:
        return ["raw_label", "label", *names]

    def csv_values(self, raw, smoothed, names, thresholds=None) -> list:
        return [int(np.argmax(raw)), int(np.argmax(smoothed)), *(f"{p:.6f}" for p in smoothed)]

    def label_columns(self, names) -> list[str]:
        """Its columns in a multi-task submission and in ABAW7's annotation files: the class index."""
        return ["expression"]

    def submission_values(self, row: dict, names, thresholds=None) -> list:
        return [row["label"]]

    def loss_weights(self, labels, width: int) -> dict:
        """Inverse class frequency over the annotated frames (an index >= 0)."""
        values = np.nan_to_num(np.asarray(labels, dtype=np.float64).reshape(-1), nan=-1.0)
        return {"class_weights": inverse_frequency_weights(values[values >= 0].astype(np.int64), width)}

    def annotated(self, labels) -> np.ndarray:
        """Per frame, whether its class is annotated (an index >= 0; -1 or NaN: not)."""
        values = np.nan_to_num(np.asarray(labels, dtype=np.float64), nan=-1.0)
        return (values >= 0).reshape(len(values), -1).any(axis=1)

    def class_counts(self, labels, names) -> dict:
        """Frames per class index."""
        values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
        return {int(value): int(count) for value, count in zip(values, counts)}


class ActionUnitOutputs:
    """A probability per action unit (sigmoid), present where it reaches its threshold."""

    name = "au"
    single_label = False
    thresholded = True

    def no_face(self, width: int) -> np.ndarray:
        return np.full(width, 0.5)

    def csv_columns(self, names) -> list[str]:
        return ["raw_units", "units", *names]

    def csv_values(self, raw, smoothed, names, thresholds=None) -> list:
        present = units_present(names, thresholds)
        return [present(raw), present(smoothed), *(f"{p:.6f}" for p in smoothed)]

    def label_columns(self, names) -> list[str]:
        return list(names)

    def submission_values(self, row: dict, names, thresholds=None) -> list:
        """0/1 per unit, at its threshold."""
        return [int(float(row[name]) >= t) for name, t in zip(names, unit_thresholds(names, thresholds))]

    def loss_weights(self, labels, width: int) -> dict:
        return {"pos_weight": positive_weights(labels)}

    def annotated(self, labels) -> np.ndarray:
        """Per frame, whether its units are annotated (not NaN)."""
        return np.isfinite(np.asarray(labels, dtype=np.float64)).any(axis=1)

    def class_counts(self, labels, names) -> dict:
        """Frames in which each unit is present."""
        return dict(zip(names, np.sum(labels, axis=0).astype(int).tolist()))


class ValueOutputs:
    """Valence and arousal: the values themselves (bounded by the model)."""

    name = "va"
    single_label = False
    thresholded = False

    def no_face(self, width: int) -> np.ndarray:
        return np.zeros(width)

    def csv_columns(self, names) -> list[str]:
        return [*(f"raw_{name}" for name in names), *names]

    def csv_values(self, raw, smoothed, names, thresholds=None) -> list:
        return [*(f"{v:.6f}" for v in raw), *(f"{v:.6f}" for v in smoothed)]

    def label_columns(self, names) -> list[str]:
        return list(names)

    def submission_values(self, row: dict, names, thresholds=None) -> list:
        """Each value clipped to [-1, 1]."""
        return [f"{min(max(float(row[name]), -1.0), 1.0):.6f}" for name in names]

    def loss_weights(self, labels, width: int) -> dict:
        return {}

    def annotated(self, labels) -> np.ndarray:
        """Per frame, whether a value is annotated (not NaN)."""
        return np.isfinite(np.asarray(labels, dtype=np.float64)).any(axis=1)

    def class_counts(self, labels, names) -> dict:
        return {}


OUTPUTS = {outputs.name: outputs for outputs in (ExpressionOutputs(), ActionUnitOutputs(), ValueOutputs())}


# -- the tracks -------------------------------------------------------------------------------------------------------

# What each score is, for model cards: (description, `model-index` metric type), by its key in the metrics.
SCORES = {
    "macro_f1": ("Macro-F1 (per frame)", "f1"),
    "accuracy": ("Accuracy (per frame)", "accuracy"),
    "au_score": ("Mean F1 over the 12 action units (per frame, threshold 0.5)", "f1"),
    "va_score": ("Mean CCC of valence and arousal (per frame)", "ccc"),
    "ccc_valence": ("CCC of valence (per frame)", "ccc"),
    "ccc_arousal": ("CCC of arousal (per frame)", "ccc"),
    "mtl_score": ("ABAW multi-task score P_VA + P_EXPR + P_AU (per frame)", "abaw_mtl"),
    "expr_score": ("Macro-F1 over the 8 expressions (per frame)", "f1"),
}


@dataclass(frozen=True)
class Track:
    """One ABAW track (see the module's docstring)."""

    name: str
    parts: tuple  # the kinds of its outputs, in output order (`OUTPUTS` keys): one, or a multi-task head's tracks
    dataset: str  # how a run on its Aff-Wild2 annotations names the data
    score: str  # the metric that ranks smoothing windows (and says how good a model is)
    score_name: str
    headline: tuple  # the scores a finished run prints, Trainer logs and the model card lists
    report_scores: tuple  # the scores `emotic evaluate`'s report.md tabulates
    metric_module: str  # its `evaluate` metric module, a folder of `emotic.hub_cards`
    card_task: str  # the model card's `model-index` task
    card_metrics: tuple  # the card's `metrics` metadata
    # where its annotations lie under an Aff-Wild2 root: `<folder>/<split>/<video>.txt` (the first folder found),
    # or, for ABAW7's multi-task challenge, one file per split beside `cropped_aligned/`
    annotation_folders: tuple = ()
    annotation_files: dict = field(default_factory=dict)

    @property
    def multitask(self) -> bool:
        return len(self.parts) > 1

    @property
    def labels(self) -> list[str]:
        """The outputs of its head, in order."""
        return multitask_labels(self.parts) if self.multitask else list(HEADS[self.name].labels)

    @property
    def single_label(self) -> bool:
        """Whether its outputs are one set of classes (a confusion matrix, a majority vote, compound expressions)."""
        return not self.multitask and OUTPUTS[self.name].single_label

    @property
    def smoothing_modes(self) -> tuple:
        """`mode`, a majority vote of class labels, smooths classes only; `mean` and `gaussian` anything."""
        return ("mean", "gaussian", "mode") if self.single_label else ("mean", "gaussian")

    @property
    def label_columns(self) -> list[str]:
        """Its label columns (ABAW7's annotation files, value columns of `datasets` datasets, a multi-task
        submission): per part, the expression's class index or each value."""
        return [column for kind in self.parts for column in OUTPUTS[kind].label_columns(HEADS[kind].labels)]

    def head_options(self) -> dict:
        """The config options of a new head for this track: its labels, problem type and tracks."""
        labels = self.labels
        return dict(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
                    problem_type=None if self.multitask else HEADS[self.name].problem_type,
                    tasks=list(self.parts) if self.multitask else None)

    @property
    def has_values(self) -> bool:
        """Whether it predicts values (valence-arousal): a bounded range and a regression loss."""
        return any(HEADS[kind].bounded for kind in self.parts)

    def part_columns(self) -> list[tuple[str, slice]]:
        """(kind, its label columns) per part: one part spanning everything for a single track."""
        if not self.multitask:
            return [(self.name, slice(None))]
        columns, start = [], 0
        for kind in self.parts:
            columns.append((kind, slice(start, start + HEADS[kind].targets)))
            start += HEADS[kind].targets
        return columns

    def loss_weights(self, labels) -> dict:
        """The loss weights of its head from the training labels, each from its annotated values: inverse class
        frequency (`class_weights`, expressions), negatives over positives per action unit (`pos_weight`); none for
        valence-arousal."""
        rows = np.asarray(labels, dtype=np.float64 if self.multitask or not self.single_label else np.int64)
        weights = {}
        for kind, columns in self.part_columns():
            weights.update(OUTPUTS[kind].loss_weights(rows[:, columns] if rows.ndim == 2 else rows,
                                                      len(HEADS[kind].labels)))
        return weights

    def annotated(self, labels) -> np.ndarray:
        """Per frame of labels in its columns (a video's, as evaluate and finetune-temporal read them), whether
        anything of it is annotated."""
        rows = np.asarray(labels, dtype=np.float64)
        found = np.zeros(len(rows), dtype=bool)
        for kind, columns in self.part_columns():
            found |= OUTPUTS[kind].annotated(rows[:, columns] if rows.ndim == 2 else rows)
        return found

    def class_counts(self, labels) -> dict:
        """A training split's counts for its record: frames per expression class, per present action unit."""
        return {} if self.multitask else OUTPUTS[self.name].class_counts(labels, HEADS[self.name].labels)

    def check_smoothing_mode(self, mode: str) -> None:
        if mode not in self.smoothing_modes:
            raise ValueError(f"--smoothing_mode {mode} is a majority vote of expression labels; this "
                             f"{self.name.upper()} model's outputs are smoothed with "
                             f"{' or '.join(self.smoothing_modes)}")


TRACKS = {track.name: track for track in (
    Track("expr", ("expr",), "Aff-Wild2 EXPR", "macro_f1", "macro-F1", ("macro_f1", "accuracy"),
          ("macro_f1", "accuracy"), "abaw_expression", "Facial expression recognition", ("f1", "accuracy"),
          annotation_folders=("annotations", "EXPR_Recognition_Challenge", "EXPR_Classification_Challenge")),
    Track("au", ("au",), "Aff-Wild2 AU", "au_score", "mean AU F1", ("au_score",), ("au_score",),
          "abaw_action_units", "Facial action unit detection", ("f1",),
          annotation_folders=("AU_Detection_Challenge",)),
    Track("va", ("va",), "Aff-Wild2 VA", "va_score", "mean CCC", ("va_score", "ccc_valence", "ccc_arousal"),
          ("va_score", "ccc_valence", "ccc_arousal"), "abaw_valence_arousal", "Valence-arousal estimation", ("ccc",),
          annotation_folders=("VA_Estimation_Challenge",)),
    Track(MULTITASK, tuple(MULTITASK_TRACKS), "s-Aff-Wild2 MTL", "mtl_score", "P_VA + P_EXPR + P_AU",
          ("mtl_score", "va_score", "expr_score", "au_score"),
          ("mtl_score", "va_score", "ccc_valence", "ccc_arousal", "expr_score", "au_score"), "abaw_multitask",
          "Multi-task facial affect (valence-arousal, expression, action units)", ("ccc", "f1"),
          annotation_files={"Train_Set": "training_set_annotations.txt",
                            "Validation_Set": "validation_set_annotations.txt"}),
)}


def track_of(config) -> Track:
    """The track a head (a frame model's or a temporal head's config) serves."""
    return TRACKS[head_track(config)]
