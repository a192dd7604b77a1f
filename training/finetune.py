"""Fine-tune the dual-view classifier (or the `fusion_strategy="none"` MAE-Face baseline) for an ABAW track:
expressions (`--task expr`, the default), action units (`--task au`), valence-arousal (`--task va`) or all three
with one trunk (`--task multitask`, ABAW7's multi-task challenge).

    accelerate launch -m emotic.training.finetune --affwild2_root DATA --model_name_or_path PRETRAINED \\
        --output_dir runs/dual-view --num_train_epochs 10 --per_device_train_batch_size 64 --bf16

Data: Aff-Wild2 (`--affwild2_root` with the track's `<challenge folder>/{Train_Set,Validation_Set}` (EXPR also
`annotations/`) and `cropped_aligned`, or the folders given one by one) or, for expressions, an image folder per
split with one sub-folder per class (`--train_dir`, `--eval_dir`) or a `datasets` dataset; multi-task: ABAW7's
`training_set_annotations.txt` and `validation_set_annotations.txt` beside `cropped_aligned` (`--affwild2_root`). A
run resumes by itself from the last complete checkpoint in `--output_dir`: start the same command again after an
interruption. The finished folder loads with `AutoModelForImageClassification` and `pipeline`.
"""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from transformers import AutoImageProcessor, AutoModelForImageClassification, HfArgumentParser, set_seed

from emotic.commands import check_number
from emotic.modeling.configuration_emotic import FusionStrategy, RegressionLoss
from emotic.modeling.heads_emotic import head_track
from emotic.modeling.modeling_emotic import EmoticForImageClassification
from emotic.processing.face_geometry import REGIONS
from emotic.processing.image_processing_emotic import AuxLayout, EmoticImageProcessor, Geometry
from emotic.tracks import TRACKS
from emotic.training.affwild2 import affwild2_annotations, read_affwild2, read_multitask_annotations
from emotic.training.arguments import (EmoticTrainingArguments, ModelSize, build_config, refuse_unhonoured,
                                       resolve_layer_decay)
from emotic.training.heads import Task, loss_weights, metrics_for, new_head, outputs_of, score_held_out
from emotic.training.image_datasets import dataset_label, read_dataset, read_image_folder, read_value_dataset
from emotic.training.labels import LabelSet, read_label_map
from emotic.training.run_summary import training_hyperparameters, unreadable_summary, write_run_summary
from emotic.training.synthetic import SYNTHETIC_DATASET_NAME, is_generated
from emotic.training.trainer import EmoticTrainer, EpochCallback, finish_distributed, last_complete_checkpoint
from emotic.training.transforms import ViewTransform


@dataclass
class ModelArguments:
    task: Task = field(default="expr", metadata={
        "help": "the ABAW track: expr (8 expressions, cross-entropy), au (12 action units, binary cross-entropy), "
                "va (valence and arousal in [-1, 1], CCC or MSE), multitask (all three on one trunk, ABAW7: the sum "
                "of the three losses, each over its annotated frames)"})
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "an emotic folder (pre-trained with `emotic pretrain`, converted from MAE-Face, or fine-tuned); "
                "without it the encoder starts from random weights of --model_size"})
    model_size: ModelSize = field(default="base", metadata={"help": "encoder preset without a checkpoint"})
    image_size: int | None = field(default=None, metadata={"help": "input resolution (default: the model's)"})
    # Unset (None) architecture and loss options keep the model's own: a fine-tuned concat model stays concat. Without
    # --model_name_or_path they take EmoticConfig's defaults (shown in brackets).
    fusion_strategy: FusionStrategy | None = field(default=None, metadata={
        "help": "default: the model's [attention]"})
    fusion_layer: int | None = field(default=None, metadata={"help": "default: the model's [num_hidden_layers // 3]"})
    share_encoder: bool | None = field(default=None, metadata={"help": "default: the model's [true]"})
    # the auxiliary view is the image processor's; unset keeps the model folder's processor's
    aux_regions: list[str] | None = field(default=None, metadata={
        "help": f"regions of the auxiliary view, any of {' '.join(REGIONS)}; default: the model's processor's "
                f"[eyes mouth]"})
    aux_layout: AuxLayout | None = field(default=None, metadata={"help": "default: the model's processor's [concat]"})
    geometry: Geometry = field(default="template", metadata={
        "help": "face geometry of the training images: template (aligned crops such as Aff-Wild2 cropped_aligned), "
                "detector, or auto"})
    drop_path_rate: float | None = field(default=None, metadata={"help": "default: the model's [0.1]"})
    label_smoothing: float | None = field(default=None, metadata={"help": "default: the model's [0.0]"})
    class_weights: bool = field(default=True, metadata={
        "help": "weights from the training split: inverse class frequency (expr), negatives over positives per "
                "action unit as BCE pos_weight (au); both for multitask; va has none"})
    class_weight_power: float = field(default=1.0, metadata={
        "help": "raise those weights to this power: 1 the full inverse frequency, 0.5 its square root (milder for a "
                "long tail such as FER+'s 116 disgust against 8,733 neutral faces), 0 none"})
    regression_loss: RegressionLoss | None = field(default=None, metadata={
        "help": "va and multitask: ccc (1 - concordance correlation, per output) or mse; default: the model's, ccc "
                "for a new head"})
    lora_rank: int | None = field(default=None, metadata={
        "help": "train LoRA adapters of this rank (PEFT) on the encoder's attention projections instead of the whole "
                "encoder; the fusion block, the final norm and the head train fully. The run folder holds the merged "
                "model, and the adapter in adapter/"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA scaling numerator (default: 2 x rank)"})


@dataclass
class DataArguments:
    affwild2_root: str | None = field(default=None, metadata={
        "help": "folder with annotations/Train_Set, annotations/Validation_Set and cropped_aligned"})
    train_annotations: str | None = None
    eval_annotations: str | None = None
    frames_dir: str | None = field(default=None, metadata={"help": "Aff-Wild2 cropped_aligned folder"})
    train_dir: str | None = field(default=None, metadata={"help": "image folder: one sub-folder per class"})
    eval_dir: str | None = None
    dataset_name: str | None = field(default=None, metadata={
        "help": "a `datasets` dataset: a Hub id or a local folder `datasets.load_dataset` reads (imagefolder, "
                "parquet)"})
    dataset_config_name: str | None = None
    train_split: str = field(default="train")
    eval_split: str | None = field(default="validation", metadata={"help": "held-out split; empty for none"})
    image_column: str = field(default="image")
    label_column: str = field(default="label")
    label_set: LabelSet | None = field(default=None, metadata={"help": "the label set of bare-number labels"})
    label_map: str | None = field(default=None, metadata={
        "help": "JSON (or a JSON file) from dataset labels to model labels, null drops a class: "
                "'{\"Contempt\": \"Other\"}'"})
    drop_unmapped_labels: bool = field(default=False, metadata={
        "help": "drop (and count) images of classes the model has no label for, instead of refusing them"})
    frame_stride: int = field(default=1, metadata={"help": "keep every n-th training frame"})
    max_frames_per_class: int | None = field(default=None, metadata={"help": "cap each training class"})
    hflip: bool = field(default=True, metadata={"help": "random horizontal flips in training"})
    color_jitter: float = field(default=0.2, metadata={"help": "brightness/contrast/saturation jitter in training"})
    # the augmentation unaligned expression crops (FER2013, FER+, AffectNet) call for; off for aligned frames
    crop_scale: float = field(default=1.0, metadata={
        "help": "random resized crops keeping this fraction of the image's area or more, e.g. 0.8 (1.0: none)"})
    rotation: float = field(default=0.0, metadata={"help": "random rotation by up to this many degrees, e.g. 10"})
    erasing: float = field(default=0.0, metadata={
        "help": "probability of erasing a random rectangle (2-25%% of the image) with noise, e.g. 0.25"})


def load_splits(data: DataArguments, label2id: dict, seed: int, task: str = "expr"):
    """(train, eval, reports, dataset name) from Aff-Wild2, image folders or a `datasets` dataset."""
    track = TRACKS[task]
    if not track.single_label and data.dataset_name:  # values per image: valence-arousal, action units, all three
        options = dict(config_name=data.dataset_config_name, image_column=data.image_column,
                       label_column=data.label_column)
        train, train_report = read_value_dataset(data.dataset_name, data.train_split, task, **options)
        evaluation, eval_report = read_value_dataset(data.dataset_name, data.eval_split, task, **options) \
            if data.eval_split else (None, None)
        return train, evaluation, {"train": train_report, "eval": eval_report}, dataset_label(data.dataset_name)
    if track.multitask:
        return load_multitask_splits(data, task)
    if data.affwild2_root:
        root = Path(data.affwild2_root)
        data.train_annotations = data.train_annotations or str(affwild2_annotations(root, task, "Train_Set"))
        data.eval_annotations = data.eval_annotations or str(affwild2_annotations(root, task, "Validation_Set"))
        data.frames_dir = data.frames_dir or str(root / "cropped_aligned")
    if data.train_annotations:
        if not data.frames_dir:
            raise ValueError("--train_annotations needs --frames_dir (the cropped_aligned folder)")
        if sorted(label2id, key=label2id.get) != track.labels:
            raise ValueError(f"Aff-Wild2 {task.upper()} training needs the model's labels to be "
                             f"{track.labels} in order")
        train, train_report = read_affwild2(data.train_annotations, data.frames_dir, data.frame_stride,
                                            data.max_frames_per_class, seed, task=task)
        evaluation, eval_report = (read_affwild2(data.eval_annotations, data.frames_dir, task=task)
                                   if data.eval_annotations else (None, None))
        name = SYNTHETIC_DATASET_NAME if is_generated(Path(data.frames_dir).parent) else track.dataset
        return train, evaluation, {"train": train_report, "eval": eval_report}, name
    if not track.single_label and data.train_dir:
        raise ValueError(f"--task {task}: reads Aff-Wild2 annotations (--affwild2_root, or --train_annotations with "
                         f"--frames_dir) or a `datasets` dataset (--dataset_name); --train_dir holds expression "
                         f"classes")
    if data.dataset_name:
        options = dict(label2id=label2id, config_name=data.dataset_config_name, image_column=data.image_column,
                       label_column=data.label_column, label_set=data.label_set,
                       label_map=read_label_map(data.label_map), drop_unmapped=data.drop_unmapped_labels)
        train, train_report = read_dataset(data.dataset_name, data.train_split, **options)
        evaluation, eval_report = read_dataset(data.dataset_name, data.eval_split, **options) if data.eval_split \
            else (None, None)
        return train, evaluation, {"train": train_report, "eval": eval_report}, dataset_label(data.dataset_name)
    if data.train_dir:
        options = dict(label_map=read_label_map(data.label_map), drop_unmapped=data.drop_unmapped_labels)
        train, train_report = read_image_folder(data.train_dir, label2id, **options)
        evaluation, eval_report = read_image_folder(data.eval_dir, label2id, **options) if data.eval_dir \
            else (None, None)
        return train, evaluation, {"train": train_report, "eval": eval_report}, Path(data.train_dir).name
    raise ValueError("no training data: pass --affwild2_root, --train_annotations with --frames_dir, --train_dir or "
                     "--dataset_name")


def load_multitask_splits(data: DataArguments, task: str):
    """ABAW7's multi-task files (`--affwild2_root`, or `--train_annotations` / `--eval_annotations` files with
    `--frames_dir`): (train, eval, reports, dataset name)."""
    if data.frame_stride != 1 or data.max_frames_per_class is not None:
        raise ValueError("--frame_stride and --max_frames_per_class thin video annotations; ABAW7's multi-task files "
                         "list sampled frames already: leave them unset with --task multitask")
    if data.affwild2_root:
        root = Path(data.affwild2_root)
        data.train_annotations = data.train_annotations or str(affwild2_annotations(root, task, "Train_Set"))
        data.eval_annotations = data.eval_annotations or str(affwild2_annotations(root, task, "Validation_Set"))
        data.frames_dir = data.frames_dir or str(root / "cropped_aligned")
    if not (data.train_annotations and data.frames_dir):
        raise ValueError("--task multitask reads ABAW7's multi-task files: pass --affwild2_root (holding "
                         "training_set_annotations.txt, validation_set_annotations.txt and cropped_aligned), or "
                         "--train_annotations FILE with --frames_dir")
    train, train_report = read_multitask_annotations(data.train_annotations, data.frames_dir)
    evaluation, eval_report = (read_multitask_annotations(data.eval_annotations, data.frames_dir)
                               if data.eval_annotations else (None, None))
    name = SYNTHETIC_DATASET_NAME if is_generated(Path(data.frames_dir).parent) else TRACKS[task].dataset
    return train, evaluation, {"train": train_report, "eval": eval_report}, name


def build_model(model_args: ModelArguments, train_labels):
    labels = TRACKS[model_args.task].labels
    overrides = dict(
        fusion_strategy=model_args.fusion_strategy, fusion_layer=model_args.fusion_layer,
        share_encoder=model_args.share_encoder, drop_path_rate=model_args.drop_path_rate,
        label_smoothing=model_args.label_smoothing, regression_loss=model_args.regression_loss,
    )
    head = new_head(model_args.task, model_args.regression_loss)
    if model_args.model_name_or_path:
        from transformers import AutoConfig

        saved = AutoConfig.from_pretrained(model_args.model_name_or_path)
        same_head = [saved.id2label[i] for i in range(saved.num_labels)] == labels and \
            head_track(saved) == model_args.task
        # another track's head (or a pre-trained encoder's default one) is replaced: a new head for this track
        model = AutoModelForImageClassification.from_pretrained(
            model_args.model_name_or_path, **{k: v for k, v in overrides.items() if v is not None},
            **({} if same_head else {**head, "ignore_mismatched_sizes": True}))
        try:
            processor = AutoImageProcessor.from_pretrained(model_args.model_name_or_path)
        except OSError:  # a converted checkpoint has no processor yet
            processor = EmoticImageProcessor(size=model.config.image_size)
    else:
        model = EmoticForImageClassification(build_config(model_args.model_size, image_size=model_args.image_size,
                                                          **{**overrides, **head}))
        processor = EmoticImageProcessor(size=model.config.image_size)
    if not isinstance(model, EmoticForImageClassification):
        raise ValueError(f"{model_args.model_name_or_path} is a {type(model).__name__}, not an emotic model")
    view = {"aux_regions": model_args.aux_regions, "aux_layout": model_args.aux_layout}
    if any(value is not None for value in view.values()):  # the processor checks them, and saves them with the run
        processor = EmoticImageProcessor(**{**processor.to_dict(), **{k: v for k, v in view.items() if v is not None}})
    check_number("--class_weight_power", model_args.class_weight_power, 0, 1)
    if model_args.class_weights:
        for name, value in loss_weights(model_args.task, train_labels).items():
            setattr(model.config, name, [round(float(w) ** model_args.class_weight_power, 6) for w in value])
    return model, processor


def add_lora(model, rank: int, alpha: int | None = None):
    """`model` as a PEFT model: LoRA on the qkv and output projections of every encoder block (and of a separate
    auxiliary encoder), the fusion block, the final LayerNorm and the head trained in full."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError('--lora_rank needs PEFT: pip install "emotic[lora]"') from None
    check_number("--lora_rank", rank, 1, 1 << 16, integer=True)
    trained_fully = ["classifier", "emotic.layernorm", *(["fusion"] if model.uses_aux_view else [])]
    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=0.0,
                        target_modules=r"(emotic\.layers|aux_layers)\.\d+\.attention\.(qkv|proj)",
                        modules_to_save=trained_fully)
    return get_peft_model(model, config)


def save_lora_run(peft_model, processor, output_dir) -> None:
    """The adapter (with the fully trained modules) in `adapter/`, then the merged model and the processor in
    `output_dir`, which loads like any emotic model."""
    peft_model.save_pretrained(Path(output_dir) / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)


def push_finished_run(args) -> None:
    from emotic.hub_cards.export import export
    from emotic.hub_cards.push import push

    repo_id = args.hub_model_id or Path(args.output_dir).resolve().name
    folder = export(args.output_dir, Path(args.output_dir) / "hub_export", repo_id=repo_id, overwrite=True)
    commit = push(folder, repo_id, private=bool(args.hub_private_repo), revision=args.hub_revision,
                  token=args.hub_token)
    print(f"pushed to {repo_id}: {commit.commit_url}")


def train(argv=None) -> dict:
    """One fine-tuning run from command-line arguments: the held-out metrics (empty without an evaluation split).
    Under `accelerate launch` the process group stays open, for a caller that runs several (`emotic ablate`)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, EmoticTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    refuse_unhonoured(training_args)
    set_seed(training_args.seed)
    task = model_args.task
    track = TRACKS[task]
    labels = {name: index for index, name in enumerate(track.labels)}
    try:  # bad data or a model that cannot serve it: one clear message, no traceback
        train, evaluation, reports, dataset_name = load_splits(data_args, labels, training_args.seed, task)
        model, processor = build_model(model_args, list(train["label"]))
        resolve_layer_decay(training_args, pretrained=bool(model_args.model_name_or_path))
        train_transform = ViewTransform(processor, hflip=data_args.hflip, seed=training_args.seed,
                                        color_jitter=data_args.color_jitter, geometry=model_args.geometry,
                                        crop_scale=data_args.crop_scale, rotation=data_args.rotation,
                                        erasing=data_args.erasing)
    except ValueError as error:
        parser.error(str(error))
    parameters = {"total": model.num_parameters()}
    if model_args.lora_rank is not None:
        model = add_lora(model, model_args.lora_rank, model_args.lora_alpha)
    parameters["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if training_args.process_index == 0:
        print(f"trainable parameters: {parameters['trainable']:,} of {parameters['total']:,}"
              + (f" (LoRA rank {model_args.lora_rank})" if model_args.lora_rank else ""))
    if training_args.process_index == 0:
        for split, report in reports.items():
            if report is not None:
                print(f"{split}: {report.format()}")
    # the training frames' geometry (aligned crops: the template); the saved processor keeps `auto` for photos
    train.set_transform(train_transform)
    eval_transform = None
    if evaluation is not None:
        eval_transform = ViewTransform(processor, geometry=model_args.geometry)
        evaluation.set_transform(eval_transform)
    else:
        training_args.eval_strategy = "no"

    # --push_to_hub publishes the finished model once, through `emotic export` + `emotic push` (card, remote code,
    # one commit), instead of Trainer's pushes of every checkpoint
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = EmoticTrainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=evaluation,
        processing_class=processor, compute_metrics=metrics_for(model.config),
        callbacks=[EpochCallback(train_transform)],
    )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not trainer.is_fsdp_enabled \
            and training_args.process_index == 0:
        print(f"note: FSDP was asked for (--use_fsdp) but Accelerate runs {trainer.accelerator.distributed_type.value}"
              f" here (FSDP needs GPU processes): the model is not sharded", file=sys.stderr)
    resume = last_complete_checkpoint(training_args.output_dir)
    if resume and training_args.process_index == 0:
        print(f"resuming from {resume}")
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_metrics("train", train_result.metrics)

    results = {}
    if evaluation is not None:
        output = trainer.predict(evaluation, metric_key_prefix="eval")
        config = trainer.accelerator.unwrap_model(trainer.model).config
        # the score, and action units' thresholds chosen on these frames, stored with the model
        results = score_held_out(config, outputs_of(output.predictions, config), output.label_ids)
        trainer.save_metrics("eval", output.metrics)
    if model_args.lora_rank is None:
        trainer.save_model()  # model, config (with AU thresholds), code files and the processor, into output_dir
    if model_args.lora_rank is not None and trainer.is_world_process_zero():
        save_lora_run(trainer.accelerator.unwrap_model(trainer.model), processor, training_args.output_dir)
    if trainer.is_world_process_zero():
        write_run_summary(training_args.output_dir, {
            "task": "finetune", "track": task, "dataset": dataset_name,
            "synthetic": dataset_name == SYNTHETIC_DATASET_NAME,
            "data": {split: vars(report) if report else None for split, report in reports.items()},
            "model": {"fusion_strategy": model.config.fusion_strategy, "fusion_layer": model.config.fusion_layer,
                      "aux_regions": processor.aux_regions, "aux_layout": processor.aux_layout,
                      "share_encoder": model.config.share_encoder, "pooling": model.config.pooling,
                      "hidden_size": model.config.hidden_size, "num_hidden_layers": model.config.num_hidden_layers,
                      "image_size": model.config.image_size, "drop_path_rate": model.config.drop_path_rate,
                      "label_smoothing": model.config.label_smoothing, "class_weights": model.config.class_weights,
                      "problem_type": model.config.problem_type, "pos_weight": model.config.pos_weight,
                      "regression_loss": model.config.regression_loss if track.has_values else None,
                      "tasks": model.config.tasks,
                      "base_model": Path(model_args.model_name_or_path).name if model_args.model_name_or_path
                      else f"random init ({model_args.model_size})",
                      "lora_rank": model_args.lora_rank, "parameters": parameters},
            "hyperparameters": training_hyperparameters(training_args, trainer.accelerator),
            "eval": results,
            "unreadable_images": unreadable_summary(train_transform, eval_transform),
            # what the auxiliary views were built from: views per geometry (`full_image`: the detector found no face)
            "geometries": {"train": dict(train_transform.geometries),
                           "eval": dict(eval_transform.geometries) if eval_transform else None},
        })
        if results:
            print(json.dumps({k: results[k] for k in (*track.headline, "num_frames")}))
        if push_to_hub:
            push_finished_run(training_args)
    return results


def main(argv=None) -> dict:
    results = train(argv)
    finish_distributed()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
