"""Train the temporal head (`EmoticTemporalModel`) on a frame model's features, for any ABAW track: the second
stage of the two-stage recipe.

    emotic finetune --affwild2_root DATA --output_dir runs/frames ...                 # 1. the frame model
    emotic features runs/frames DATA/cropped_aligned --output_dir feats              # 2. its features, per video
    emotic finetune-temporal --features_dir feats --affwild2_root DATA --output_dir runs/temporal   # 3. this
    emotic predict runs/frames VIDEOS --temporal_model runs/temporal                 # both, end to end

Each video's features (`feats/features/<video>.parquet`) are matched to its annotations by frame number (the
`00042.jpg` of its rows) in the track's `Train_Set` and `Validation_Set` (ABAW7's files for `--task multitask`);
videos without features are counted and left out. Training windows of `--window_size` frames start every
`--train_stride` frames (the last ones padded); the held-out score is computed as `emotic predict` runs the head:
windows every `--window_stride` frames over each whole video, overlapping logits averaged, and kept in `emotic_run.json`
(AU thresholds chosen on those frames are saved with the model). A run resumes from its last complete checkpoint
when started again.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import EvalPrediction, HfArgumentParser, Trainer, TrainingArguments, set_seed

from emotic.modeling.configuration_emotic_temporal import EmoticTemporalConfig
from emotic.modeling.heads_emotic import head_track
from emotic.modeling.modeling_emotic_temporal import EmoticTemporalModel, window_starts
from emotic.tracks import TRACKS, track_of
from emotic.training.affwild2 import annotation_index, annotations_by_video
from emotic.training.arguments import refuse_unhonoured
from emotic.training.frame_features import (
    FRAME_MODEL_FILE,
    MODALITIES,
    SETTINGS,
    SIGNATURE_TOLERANCE,
    frame_model_signature,
    read_frame_model,
    read_video_features,
    signature_difference,
)
from emotic.training.heads import Task, loss_weights, metrics_for, new_head, outputs_of, score_held_out
from emotic.training.run_summary import training_hyperparameters, write_run_summary
from emotic.training.synthetic import SYNTHETIC_DATASET_NAME, is_generated
from emotic.training.trainer import finish_distributed, last_complete_checkpoint


@dataclass
class TemporalArguments:
    features_dir: str = field(metadata={"help": "the --output_dir of `emotic features` (its features/*.parquet)"})
    affwild2_root: str = field(metadata={
        "help": "the annotations: the track's <challenge folder>/{Train_Set,Validation_Set} (EXPR also "
                "annotations/), or ABAW7's multi-task files beside cropped_aligned"})
    task: Task = field(default="expr", metadata={"help": "the ABAW track: expr, au, va or multitask"})
    hidden_size: int = field(default=256)
    num_hidden_layers: int = field(default=4)
    num_attention_heads: int = field(default=4)
    intermediate_size: int | None = field(default=None, metadata={"help": "default: 4 x hidden_size"})
    hidden_dropout_prob: float = field(default=0.1)
    kernel_size: int = field(default=5, metadata={"help": "frames of the temporal convolution before the Transformer"})
    window_size: int = field(default=100, metadata={"help": "frames per window (the model's longest input)"})
    window_stride: int = field(default=50, metadata={
        "help": "frames between windows at inference (saved with the model; overlapping logits are averaged)"})
    train_stride: int | None = field(default=None, metadata={
        "help": "frames between training windows; default: --window_stride"})
    class_weights: bool = field(default=True, metadata={
        "help": "inverse class frequency (expr), BCE pos_weight per action unit (au), both for multitask"})
    regression_loss: str | None = field(default=None, metadata={"help": "va, multitask: ccc (default) or mse"})
    modalities: str | None = field(default=None, metadata={
        "help": "what the head takes, separated by commas: vision, audio, text (default: every modality the "
                "features hold; `vision` leaves the others out)"})
    modality_fusion: str = field(default="cross_attention", metadata={
        "help": "how audio and text enter the vision stream: cross_attention or gated_sum"})
    modality_dropout: float = field(default=0.1, metadata={
        "help": "probability that a training window's audio (text) is replaced by its missing token"})
    frame_model: str | None = field(default=None, metadata={
        "help": "the frame model the features came from, whose head the temporal model starts from (its "
                "frame_head); default: the one features_settings.json names; 'none' starts from a new head"})


@dataclass
class TemporalTrainingArguments(TrainingArguments):
    """TrainingArguments with the temporal head's defaults (a small model on precomputed features)."""

    learning_rate: float = field(default=5e-4)
    weight_decay: float = field(default=0.05)
    num_train_epochs: float = field(default=30)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.05, metadata={"help": "warmup steps, or a fraction of all steps if < 1"})
    per_device_train_batch_size: int = field(default=32)
    per_device_eval_batch_size: int = field(default=32)
    remove_unused_columns: bool = field(default=False)
    eval_strategy: str = field(default="epoch")
    save_strategy: str = field(default="epoch")
    logging_steps: float = field(default=10)
    save_total_limit: int | None = field(default=2)
    report_to: str = field(default="none")
    hub_strategy: str = field(default="end", metadata={"help": "end (the finished model, once)"})


def unannotated_like(labels: np.ndarray) -> np.ndarray:
    """Labels of frames with no annotation, in the dtype and row shape of `labels`: -1 (expressions), NaN (values)."""
    return np.full((1, *labels.shape[1:]), -1 if labels.dtype.kind == "i" else np.nan, dtype=labels.dtype)


def load_videos(features_dir: Path, annotations: dict[str, np.ndarray], width: int | None = None):
    """(videos, report): per annotated video with features, its name, `features` `(frames, width)` and `labels`
    per features row (unannotated where its annotation has none), and `audio`, `audio_present` (`text`,
    `text_present`) where the files hold those features; every file must have the same widths and modalities."""
    videos, report = [], {"videos": 0, "frames": 0, "annotated_frames": 0, "without_features": []}
    for video, labels in sorted(annotations.items()):
        path = features_dir / "features" / f"{video}.parquet"
        if not path.is_file():
            report["without_features"].append(video)
            continue
        read = read_video_features(path)
        if width is not None and read["features"].shape[1] != width:
            raise ValueError(f"{path}: features of {read['features'].shape[1]} values per frame; the others (and the "
                             f"model) have {width}: features of one frame model only")
        width = read["features"].shape[1]
        indices = np.array([annotation_index(location, frame)
                            for location, frame in zip(read["locations"], read["frames"])])
        padded = np.concatenate([labels, unannotated_like(labels)])  # out-of-range frames: not annotated
        rows = padded[np.where((indices >= 0) & (indices < len(labels)), indices, len(labels))]
        annotated = rows >= 0 if rows.ndim == 1 else ~np.isnan(rows).all(axis=1)
        video_record = {"video": video, "features": read["features"], "labels": rows}
        for name in MODALITIES:
            if name in read:
                video_record.update({name: read[name], f"{name}_present": read[f"{name}_present"]})
            if videos and (name in videos[0]) != (name in read):
                raise ValueError(f"{path}: {'has' if name in read else 'lacks'} {name} features where "
                                 f"{videos[0]['video']}.parquet does not: features of one `emotic features` run only")
        videos.append(video_record)
        report["videos"] += 1
        report["frames"] += len(rows)
        report["annotated_frames"] += int(annotated.sum())
    if not videos:
        raise ValueError(f"{features_dir / 'features'}: no features for any of the {len(annotations)} annotated "
                         f"videos (expected <video>.parquet files from `emotic features` over their frame folders)")
    return videos, report


class FeatureWindows(torch.utils.data.Dataset):
    """Windows of `window` frames every `stride` frames of each video (`window_starts`): `features`,
    `attention_mask` and `labels` (and each of `modalities`, `audio` or `text`, with its `_present` flags), a window
    shorter than `window` (a short video) padded and masked."""

    def __init__(self, videos, window: int, stride: int, modalities=()):
        self.videos, self.window, self.modalities = videos, window, tuple(modalities)
        self.items = [(index, start) for index, video in enumerate(videos)
                      for start in window_starts(len(video["features"]), window, stride)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, position):
        index, start = self.items[position]
        video = self.videos[index]
        features = video["features"][start:start + self.window]
        labels = video["labels"][start:start + self.window]
        padding = self.window - len(features)
        mask = np.r_[np.ones(len(features), dtype=np.int64), np.zeros(padding, dtype=np.int64)]
        item = {"features": features, "labels": labels}
        for name in self.modalities:
            item.update({key: video[key][start:start + self.window] for key in (name, f"{name}_present")})
        if padding:  # labels unannotated, features zeros, other modalities absent
            for name, values in item.items():
                filler = unannotated_like(values) if name == "labels" else np.zeros((1, *values.shape[1:]),
                                                                                    values.dtype)
                item[name] = np.concatenate([values, np.repeat(filler, padding, axis=0)])
        return {"attention_mask": torch.from_numpy(mask),
                **{name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in item.items()}}


def window_metrics(config):
    """Trainer's `compute_metrics` over windows: the frame metrics of `metrics_for` on every window's frames
    (padding carries unannotated labels, which every score leaves out)."""
    per_frame = metrics_for(config)

    def compute_metrics(prediction) -> dict:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        labels = prediction.label_ids
        flat_labels = labels.reshape(-1) if labels.ndim == 2 else labels.reshape(-1, labels.shape[-1])
        return per_frame(EvalPrediction(predictions=logits.reshape(-1, logits.shape[-1]), label_ids=flat_labels))

    return compute_metrics


def chosen_modalities(args: TemporalArguments, videos, settings: dict) -> dict:
    """The config's modality fields for the modalities `--modalities` names (default: every one the features hold),
    refused by name where the features lack one; the settings `emotic features` recorded of each kept with them."""
    held = ["vision", *(name for name in MODALITIES if name in videos[0])]
    names = [name.strip() for name in args.modalities.split(",")] if args.modalities else held
    if names[:1] != ["vision"] or len(set(names)) != len(names):
        raise ValueError(f"--modalities {args.modalities}: expected vision first, then any of "
                         f"{', '.join(MODALITIES)}, each once")
    for name in names:
        if name not in held:
            raise ValueError(f"--modalities {args.modalities}: the features hold no {name} (they hold "
                             f"{', '.join(held)}); make them with `emotic features --{name}_model ...`")
    fields = {"modalities": names, "modality_fusion": args.modality_fusion, "modality_dropout": args.modality_dropout}
    for name in names[1:]:
        fields[f"{name}_size"] = int(videos[0][name].shape[1])
        fields[f"{name}_settings"] = {key: settings[key] for key in SETTINGS[name] if key in settings} or None
    return fields


def build_temporal_model(args: TemporalArguments, width: int, train_labels: np.ndarray,
                         modalities: dict | None = None) -> EmoticTemporalModel:
    if args.regression_loss and not TRACKS[args.task].has_values:
        raise ValueError(f"--regression_loss is for --task va or multitask, not {args.task}")
    head = new_head(args.task, args.regression_loss)
    if args.class_weights:
        head.update(loss_weights(args.task, train_labels))
    config = EmoticTemporalConfig(
        feature_size=width, hidden_size=args.hidden_size, num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads, intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        hidden_dropout_prob=args.hidden_dropout_prob, kernel_size=args.kernel_size, window_size=args.window_size,
        window_stride=args.window_stride, **(modalities or {}), **head)
    return EmoticTemporalModel(config)


def copy_frame_head(model: EmoticTemporalModel, frame_model: str, features: dict) -> str:
    """`model.frame_head` as the frame model's `classifier` (its head on the same features), kept fixed in training
    (`frozen_frame_head`: measured as good as training it, and it lets predict check the frame model), when that
    model loads and has the same head (labels and track); otherwise a new frame head, trained. What was done, in
    words, for the log and the run record. `features`: what `emotic features` recorded of the model its features
    came from (`read_frame_model`); a frame model that is not that one is a `ValueError`: a head is never trained
    on one model's features with another's head."""
    from transformers import AutoConfig, AutoModelForImageClassification

    try:
        config = AutoConfig.from_pretrained(frame_model)
    except (OSError, ValueError) as error:
        return f"new: the frame model {frame_model} does not load ({str(error).splitlines()[0]})"
    loaded = None
    if features.get("signature") and getattr(config, "model_type", None) == "emotic":
        loaded = AutoModelForImageClassification.from_pretrained(frame_model).eval()
        difference = signature_difference(frame_model_signature(loaded), features["signature"])
        if difference > SIGNATURE_TOLERANCE:
            raise ValueError(f"--frame_model {frame_model} is not the model the features came from "
                             f"({features.get('model')}, recorded in {FRAME_MODEL_FILE}): its features differ from "
                             f"theirs by {difference:.0%}; give the model that made them, or make the features with "
                             f"this one")
    same = getattr(config, "hidden_size", None) == model.config.feature_size and head_track(config) == \
        head_track(model.config) and config.id2label == model.config.id2label
    if not same:
        return f"new: the frame model {Path(frame_model).name}'s head is not this task's"
    classifier = (loaded or AutoModelForImageClassification.from_pretrained(frame_model)).classifier
    with torch.no_grad():
        model.frame_head.weight.copy_(classifier.weight)
        model.frame_head.bias.copy_(classifier.bias)
    model.frame_head.requires_grad_(False)
    model.config.frozen_frame_head = True
    return f"from the frame model {Path(frame_model).name}"


def video_outputs(model, videos, without=()) -> list[np.ndarray]:
    """Per video, the head's outputs per frame (`head_outputs`) as `emotic predict --temporal_model` computes
    them; `without`: modalities taken away (the head's missing token for them on every frame)."""
    model.eval()
    taken = [name for name in model.config.modalities[1:] if name not in without]
    return [outputs_of(model.video_logits(torch.from_numpy(video["features"]), **{
        key: video[key] for name in taken if name in video for key in (name, f"{name}_present")}).cpu().numpy(),
        model.config) for video in videos]


def train(argv=None) -> dict:
    """One training run of the temporal head from command-line arguments: the held-out metrics."""
    parser = HfArgumentParser((TemporalArguments, TemporalTrainingArguments))
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    try:
        refuse_unhonoured(training_args)
        return _train(args, training_args)
    except ValueError as error:  # bad data or options: one clear message, no traceback
        parser.error(str(error))


def _train(args: TemporalArguments, training_args: TemporalTrainingArguments) -> dict:
    set_seed(training_args.seed)
    features_dir = Path(args.features_dir)
    if not (features_dir / "features").is_dir():
        raise ValueError(f"--features_dir {features_dir}: no features/ folder; expected the --output_dir of "
                         f"`emotic features`")
    train_stride = args.train_stride or args.window_stride
    if not 1 <= train_stride <= args.window_size:
        raise ValueError(f"--train_stride {train_stride}; allowed: 1..{args.window_size} (--window_size)")
    train, train_report = load_videos(features_dir, annotations_by_video(args.affwild2_root, args.task, "Train_Set"))
    width = train[0]["features"].shape[1]
    evaluation, eval_report = load_videos(
        features_dir, annotations_by_video(args.affwild2_root, args.task, "Validation_Set"), width)
    modalities = chosen_modalities(args, train, _settings(features_dir))
    model = build_temporal_model(args, width, np.concatenate([video["labels"] for video in train]), modalities)
    features = read_frame_model(features_dir)  # the model the features came from, recorded in the head
    model.config.frame_signature = features.get("signature")
    frame_model = args.frame_model or _settings(features_dir).get("model")
    frame_head = copy_frame_head(model, frame_model, features) if frame_model and frame_model != "none" else "new"
    if training_args.process_index == 0:
        for split, report in (("train", train_report), ("eval", eval_report)):
            print(f"{split}: {report['videos']} videos, {report['frames']} frames ({report['annotated_frames']} "
                  f"annotated), {len(report['without_features'])} annotated videos without features")
        print(f"temporal head: {model.num_parameters():,} parameters over {width}-wide features "
              f"({' + '.join(model.config.modalities)}), windows of {args.window_size} frames; frame head {frame_head}")

    others = model.config.modalities[1:]
    trainer = Trainer(model=model, args=training_args,
                      train_dataset=FeatureWindows(train, args.window_size, train_stride, others),
                      eval_dataset=FeatureWindows(evaluation, args.window_size, args.window_size, others),
                      compute_metrics=window_metrics(model.config))
    resume = last_complete_checkpoint(training_args.output_dir)
    if resume and training_args.process_index == 0:
        print(f"resuming from {resume}")
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_metrics("train", train_result.metrics)

    model = trainer.accelerator.unwrap_model(trainer.model)
    track = track_of(model.config)
    # the score as `emotic predict` runs the head, and action units' thresholds chosen on these frames, stored
    labels = np.concatenate([video["labels"] for video in evaluation])
    results = score_held_out(model.config, np.concatenate(video_outputs(model, evaluation)), labels)
    for name in others:  # the same head with a modality taken away: what its missing token keeps
        without = score_held_out(model.config, np.concatenate(video_outputs(model, evaluation, without=(name,))),
                                 labels)
        results[f"without_{name}"] = {key: without[key] for key in (*track.headline, "num_frames")}
    if trainer.is_world_process_zero():
        trainer.save_model()
        name = SYNTHETIC_DATASET_NAME if is_generated(args.affwild2_root) else track.dataset
        summary = {
            "task": "finetune-temporal", "track": args.task, "dataset": name,
            "synthetic": name == SYNTHETIC_DATASET_NAME,
            "data": {"train": train_report, "eval": eval_report},
            "features": {"frame_model": Path(frame_model).name if frame_model else None, "width": width,
                         "modalities": model.config.modalities, "audio": model.config.audio_settings,
                         "text": model.config.text_settings},
            "frame_head": frame_head.replace(str(frame_model), Path(frame_model).name) if frame_model else frame_head,
            "model": {key: getattr(model.config, key) for key in (
                "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "window_size",
                "window_stride", "class_weights", "pos_weight", "regression_loss", "tasks")},
            "hyperparameters": training_hyperparameters(training_args, trainer.accelerator),
            "eval": results,
        }
        write_run_summary(training_args.output_dir, summary)
        print(json.dumps({key: results[key] for key in (*track.headline, "num_frames")}))
    return results


def _settings(features_dir: Path) -> dict:
    """What `emotic features` recorded of its run (`features_settings.json`: the model, its width)."""
    try:
        settings = json.loads((features_dir / "features_settings.json").read_text())
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def main(argv=None) -> dict:
    results = train(argv)
    finish_distributed()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
