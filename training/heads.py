"""What fine-tuning a head for an ABAW track takes, shared by `emotic finetune` (the frame model) and `emotic
finetune-temporal` (the temporal head): a new head's options and its loss weights from the training labels, Trainer's
metrics, and the one step that scores the held-out frames, chooses the action units' thresholds on them and stores
those with the model. The tracks themselves are `emotic.tracks`'."""

from typing import Literal

import numpy as np
import torch

from emotic.modeling.heads_emotic import head_outputs, head_parts
from emotic.tracks import OUTPUTS, TRACKS, track_of
from emotic.training.metrics import choose_thresholds, track_metrics

# The ABAW tracks a model can be fine-tuned for (`--task`): `emotic.tracks.TRACKS`' names.
Task = Literal["expr", "au", "va", "multitask"]
assert set(Task.__args__) == set(TRACKS), "Task lists the registry's tracks"


def new_head(task: str, regression_loss: str | None = None) -> dict:
    """The config options of a new head for the ABAW track `task`: its labels, problem type and tracks; where it
    predicts values (valence-arousal, alone or in a multi-task head) the [-1, 1] range and the loss (CCC unless
    given). What `finetune` gives a frame model and `finetune-temporal` a temporal head."""
    track = TRACKS[task]
    head = track.head_options()
    if track.has_values:
        head.update(regression_range=[-1.0, 1.0], regression_loss=regression_loss or "ccc")
    return head


def loss_weights(task: str, train_labels) -> dict:
    """The loss weights of the track's head from the training labels (`Track.loss_weights`): inverse class
    frequency (expressions), negatives over positives per action unit (`pos_weight`); none for valence-arousal."""
    return TRACKS[task].loss_weights(train_labels)


def outputs_of(logits, config) -> np.ndarray:
    """The head's logits (Trainer's predictions) as `head_outputs` gives them: probabilities and values."""
    return head_outputs(torch.as_tensor(np.asarray(logits, dtype=np.float32)), head_parts(config)).double().numpy()


def class_names(config) -> list[str] | None:
    """The names of a classifying head's classes for its scores (`per_class_f1`); None for the other tracks,
    whose metric modules name their units and values themselves."""
    return [config.id2label[i] for i in range(config.num_labels)] if track_of(config).single_label else None


def metrics_for(config):
    """Trainer's `compute_metrics` for the head's track: its headline scores (`Track.headline`) and, where the track
    has them, the F1 of each class or action unit (`f1_<name>`)."""
    track = track_of(config)

    def compute_metrics(eval_prediction) -> dict:
        predictions = eval_prediction.predictions[0] if isinstance(eval_prediction.predictions, tuple) else \
            eval_prediction.predictions
        metrics = track_metrics(track.name, outputs_of(predictions, config), eval_prediction.label_ids)
        flat = {key: metrics[key] for key in track.headline}
        for key in ("per_class_f1", "per_au_f1"):
            flat.update({f"f1_{name}": value for name, value in (metrics.get(key) or {}).items()})
        return flat

    return compute_metrics


def score_held_out(config, outputs: np.ndarray, labels: np.ndarray) -> dict:
    """The held-out frames' metrics of a trained head (`outputs` as `head_outputs` gives them). Where the head has
    action units, each unit's decision threshold is chosen on these frames and stored in `config.label_thresholds`
    (saved with the model), and the metrics at those thresholds are kept under `tuned`."""
    track = track_of(config)
    results = track_metrics(track.name, outputs, labels, class_names(config))
    units = [(span, columns) for kind, span, columns in head_parts(config) if OUTPUTS[kind].thresholded]
    if units:
        (span, columns), = units
        thresholds = choose_thresholds(outputs[:, span], labels[:, columns])
        config.label_thresholds = thresholds
        tuned = track_metrics(track.name, outputs, labels, class_names(config), thresholds)
        tuned_units = tuned.get("au", tuned)  # a multi-task head's unit scores are under `au`
        results["tuned"] = {"au_score": tuned_units["au_score"], "per_au_f1": tuned_units["per_au_f1"],
                            "thresholds": thresholds, "note": "thresholds chosen on these frames"}
        if "mtl_score" in tuned:
            results["tuned"]["mtl_score"] = tuned["mtl_score"]
    return results
