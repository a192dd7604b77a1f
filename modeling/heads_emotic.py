"""The heads of emotic's models, one per ABAW track: what a head's outputs are (labels, transformers' problem type,
the columns of its labels), what they mean (activation), how they are trained (loss) and bounded; and how a
multi-task head lays several tracks side by side. The frame model and the temporal head share them.

Read top to bottom: the labels → the losses → the tracks (`HEADS`, one entry each) → a config's head (`head_track`,
`head_parts`) → its loss (`emotic_loss`) and outputs (`bound_outputs`, `head_outputs`). What else a track is (its
data, metric, files, card) is declared beside this entry in `emotic.tracks`.

This file is copied verbatim into Hub repositories for `trust_remote_code` (with the configs and models that import
it), so it imports only torch.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The 8 expression classes of Aff-Wild2 / ABAW, in the index order of the annotation files.
ABAW_EXPRESSION_LABELS = ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"]
# The 12 action units of Aff-Wild2's AU track, in the column order of its annotation files.
ABAW_ACTION_UNITS = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
# The two values of Aff-Wild2's VA track, in the column order of its annotation files.
VALENCE_AROUSAL = ["valence", "arousal"]


# ---------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------


def infer_problem_type(labels: torch.Tensor, logits: torch.Tensor, num_labels: int) -> str:
    """The problem type of one call's labels when the config sets none, as transformers infers it: one label is
    regression, class indices single-label, float targets of shape `(batch_size, num_labels)` multi-label."""
    if num_labels == 1:
        return "regression"
    if not labels.is_floating_point():
        return "single_label_classification"
    if labels.shape != logits.shape:
        raise ValueError(f"labels are floats of shape {tuple(labels.shape)}; expected class indices (an integer "
                         f"tensor of shape ({logits.shape[0]},)) or multi-label targets of shape "
                         f"{tuple(logits.shape)}")
    return "multi_label_classification"


def expression_cross_entropy(labels, logits, config, num_items_in_batch=None, **kwargs):
    """Cross-entropy with the config's class weights and label smoothing; negative labels (Aff-Wild2's -1) are
    ignored. The sum is divided by the number of labelled items (or `num_items_in_batch` under gradient
    accumulation), so accumulated and single large batches give the same gradients, with or without weights."""
    labels = labels.to(logits.device).view(-1)
    weight = None
    if config.class_weights is not None:
        weight = torch.tensor(config.class_weights, dtype=logits.dtype, device=logits.device)
    losses = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.masked_fill(labels < 0, -100),
        weight=weight if weight is None else weight.float(), ignore_index=-100,
        label_smoothing=config.label_smoothing, reduction="none",
    )
    denominator = num_items_in_batch if num_items_in_batch is not None else (labels >= 0).sum().clamp(min=1)
    if torch.is_tensor(denominator):
        denominator = denominator.to(losses.device)
    return losses.sum() / denominator


def _targets_like(labels, logits) -> torch.Tensor:
    """Float targets shaped as the logits `(B, num_labels)`: a `(B,)` vector is taken for one output."""
    if labels.numel() != logits.numel():
        raise ValueError(f"labels of shape {tuple(labels.shape)} for outputs of shape {tuple(logits.shape)}: a "
                         f"multi-label or regression model takes one target per output, shape {tuple(logits.shape)}")
    return labels.to(device=logits.device, dtype=torch.float32).reshape(logits.shape)


def multi_label_cross_entropy(labels, logits, config, **kwargs):
    """Binary cross-entropy per label (action units), with the config's `pos_weight`; a target below 0 or NaN
    (Aff-Wild2's -1, "not annotated") is left out, and the loss is the mean over the annotated targets."""
    targets = _targets_like(labels, logits)
    annotated = targets.isfinite() & (targets >= 0)  # [B, L]
    pos_weight = None
    if config.pos_weight is not None:
        pos_weight = torch.tensor(config.pos_weight, dtype=torch.float32, device=logits.device)
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), torch.where(annotated, targets, torch.zeros_like(targets)), pos_weight=pos_weight,
        reduction="none",
    )  # [B, L]
    return (losses * annotated).sum() / annotated.sum().clamp(min=1)


def concordance_correlation(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Lin's concordance correlation coefficient of two vectors, population moments (the ABAW VA score):
    2 cov(x, y) / (var x + var y + (mean x - mean y)^2)."""
    prediction_mean, target_mean = predictions.mean(), targets.mean()
    covariance = ((predictions - prediction_mean) * (targets - target_mean)).mean()
    denominator = predictions.var(unbiased=False) + targets.var(unbiased=False) + (prediction_mean - target_mean) ** 2
    return 2 * covariance / denominator.clamp(min=1e-8)


def regression_loss(labels, logits, config, **kwargs):
    """Regression (valence and arousal): `regression_loss="mse"`, the mean squared error over annotated targets,
    or `"ccc"`, 1 - the concordance correlation of each output over the batch's annotated frames, averaged over the
    outputs (Netease's VA loss). NaN targets (Aff-Wild2's -5, "not annotated", as the readers give it) are left out;
    an output with fewer than two annotated frames in the batch adds nothing to the CCC loss."""
    targets = _targets_like(labels, logits)
    annotated = targets.isfinite()  # [B, L]
    predictions = logits.float()
    if config.regression_loss == "mse":
        errors = (predictions - torch.where(annotated, targets, predictions.detach())) ** 2
        return (errors * annotated).sum() / annotated.sum().clamp(min=1)
    losses = [1 - concordance_correlation(predictions[keep, column], targets[keep, column])
              for column, keep in enumerate(annotated.unbind(1)) if keep.sum() >= 2]
    return torch.stack(losses).mean() if losses else predictions.sum() * 0.0  # 0, on the graph


# ---------------------------------------------------------------------------------------------------------------
# The tracks
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadTrack:
    """One ABAW track's head, as the model needs it."""

    name: str  # the track's short name: `--task`, `config.tasks`, the keys of the registries
    labels: list  # its outputs, in order
    problem_type: str  # transformers' `problem_type` of a head serving it alone
    targets: int  # its label columns in a multi-task head's labels
    activation: Callable  # logits -> what the outputs mean
    loss: Callable  # (labels, logits, config, **kwargs) -> the loss
    columns_to_labels: Callable  # its label columns of a multi-task batch -> the labels its loss takes
    bounded: bool = False  # outputs squashed into `config.regression_range`


HEADS = {
    # 8 expressions: softmax probabilities, cross-entropy; one label column (the class index, -1 or NaN: none)
    "expr": HeadTrack("expr", ABAW_EXPRESSION_LABELS, "single_label_classification", 1,
                      lambda logits: logits.softmax(-1), expression_cross_entropy,
                      lambda columns: torch.nan_to_num(columns[:, 0], nan=-1.0).long()),
    # 12 action units: a sigmoid probability each, binary cross-entropy; a 0/1 column each
    "au": HeadTrack("au", ABAW_ACTION_UNITS, "multi_label_classification", len(ABAW_ACTION_UNITS), torch.sigmoid,
                    multi_label_cross_entropy, lambda columns: columns),
    # valence and arousal: the values, bounded by the model; MSE or CCC; a column each
    "va": HeadTrack("va", VALENCE_AROUSAL, "regression", 2, lambda values: values, regression_loss,
                    lambda columns: columns, bounded=True),
}
# A multi-task head serves several tracks with one trunk, its outputs and label columns side by side in the order
# of `config.tasks`; ABAW7's multi-task challenge: valence-arousal, expression and action units, in the column
# order of its files.
MULTITASK = "multitask"
MULTITASK_TRACKS = ["va", "expr", "au"]


def head_track(config) -> str:
    """The ABAW track a head with this config serves: `multitask` where `config.tasks` is set, otherwise the track
    of its `problem_type` (`expr` when unset)."""
    if getattr(config, "tasks", None):
        return MULTITASK
    return next((head.name for head in HEADS.values() if head.problem_type == config.problem_type), "expr")


def head_parts(config) -> list[tuple[str, slice, slice]]:
    """(track, its outputs, its label columns) for each track of the head, in order: one part spanning everything
    for a single-track head; for a multi-task head, e.g. `("va", slice(0, 2), slice(0, 2))`,
    `("expr", slice(2, 10), slice(2, 3))`, `("au", slice(10, 22), slice(3, 15))`."""
    if not getattr(config, "tasks", None):
        everything = slice(0, config.num_labels)
        return [(head_track(config), everything, everything)]
    parts, output, column = [], 0, 0
    for track in config.tasks:
        width, targets = len(HEADS[track].labels), HEADS[track].targets
        parts.append((track, slice(output, output + width), slice(column, column + targets)))
        output, column = output + width, column + targets
    return parts


def multitask_labels(tasks) -> list[str]:
    """The outputs of a multi-task head over `tasks`, in order: `valence, arousal, Neutral, ..., AU26`."""
    return [name for track in tasks for name in HEADS[track].labels]


# ---------------------------------------------------------------------------------------------------------------
# A head's loss and outputs
# ---------------------------------------------------------------------------------------------------------------


def multitask_loss(labels, logits, config, **kwargs):
    """A multi-task head's loss (`config.tasks`): the sum of each track's loss on its outputs and its label columns
    (`head_parts`), each leaving out what was not annotated: NaN values, an expression below 0 or NaN. A frame
    annotated for one track only trains that track's outputs."""
    parts = head_parts(config)
    width = parts[-1][2].stop
    if labels.dim() != 2 or labels.shape != (logits.shape[0], width):
        raise ValueError(f"labels of shape {tuple(labels.shape)}: a multi-task head over {config.tasks} takes "
                         f"({logits.shape[0]}, {width}) values per batch, each track's columns in order "
                         f"({', '.join(f'{track} {columns.stop - columns.start}' for track, _, columns in parts)})")
    labels = labels.to(device=logits.device, dtype=torch.float32)
    total = logits.sum() * 0.0  # on the graph, also for a batch with nothing annotated
    for track, outputs, columns in parts:
        head = HEADS[track]
        total = total + head.loss(head.columns_to_labels(labels[:, columns]), logits[:, outputs], config)
    return total


def emotic_loss(labels, logits, config, num_items_in_batch=None, **kwargs):
    """The head's loss for its `problem_type` (or, unset, the one these labels imply): cross-entropy for
    expressions, binary cross-entropy for action units, MSE or CCC for valence and arousal; for a multi-task head
    (`config.tasks`), the sum of its tracks' losses."""
    if getattr(config, "tasks", None):
        return multitask_loss(labels, logits, config)
    problem_type = config.problem_type or infer_problem_type(labels, logits, config.num_labels)
    head = next((head for head in HEADS.values() if head.problem_type == problem_type), HEADS["expr"])
    return head.loss(labels, logits, config, num_items_in_batch=num_items_in_batch, **kwargs)


def bound_outputs(outputs: torch.Tensor, config) -> torch.Tensor:
    """A regression head's outputs (a multi-task head's valence and arousal) squashed into
    `config.regression_range` by a scaled tanh; unchanged without a range, and for classification."""
    if config.regression_range is None:
        return outputs
    low, high = config.regression_range

    def squash(values):
        return (low + high) / 2 + (high - low) / 2 * torch.tanh(values)

    parts = head_parts(config)
    if len(parts) == 1:
        return squash(outputs) if HEADS[parts[0][0]].bounded else outputs
    return torch.cat([squash(outputs[..., span]) if HEADS[track].bounded else outputs[..., span]
                      for track, span, _ in parts], dim=-1)


def head_outputs(logits: torch.Tensor, parts) -> torch.Tensor:
    """A head's logits as what they mean, per part of `head_parts(config)`: softmax probabilities (expressions),
    each unit's sigmoid probability (action units), the values themselves (valence-arousal, already bounded by the
    model); a multi-task head's parts side by side, in its output order. What predict writes and smooths, and what
    every score is computed from."""
    return torch.cat([HEADS[track].activation(logits[..., span]) for track, span, _ in parts], dim=-1)


__all__ = ["ABAW_ACTION_UNITS", "ABAW_EXPRESSION_LABELS", "HEADS", "MULTITASK", "MULTITASK_TRACKS", "VALENCE_AROUSAL",
           "HeadTrack", "bound_outputs", "emotic_loss", "head_outputs", "head_parts", "head_track", "multitask_labels"]
