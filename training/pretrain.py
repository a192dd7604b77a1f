"""MAE pre-training on unlabelled faces (MAE-Face): mask 75% of the patches, reconstruct their pixels.

    accelerate launch -m emotic.training.pretrain --face_dirs faces/ more_faces/ --output_dir runs/mae-face \\
        --model_size base --num_train_epochs 800 --per_device_train_batch_size 256 --bf16

Continue from a checkpoint with `--model_name_or_path` (an emotic folder, e.g. converted MAE-Face weights). The run
resumes by itself from the last complete checkpoint in `--output_dir`. The saved folder is an
`EmoticForPreTraining`; fine-tune it with `emotic finetune --model_name_or_path`.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModelForPreTraining, HfArgumentParser, set_seed

from emotic.modeling.modeling_emotic import EmoticForPreTraining
from emotic.processing.image_processing_emotic import EmoticImageProcessor
from emotic.training.arguments import EmoticTrainingArguments, ModelSize, build_config, refuse_unhonoured
from emotic.training.image_datasets import dataset_label, read_unlabelled_dataset, read_unlabelled_faces
from emotic.training.run_summary import training_hyperparameters, unreadable_summary, write_run_summary
from emotic.training.trainer import EmoticTrainer, EpochCallback, finish_distributed, last_complete_checkpoint
from emotic.training.transforms import ViewTransform


@dataclass
class PretrainModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "continue from an emotic folder"})
    model_size: ModelSize = field(default="base", metadata={"help": "encoder preset"})
    image_size: int | None = None
    mask_ratio: float = field(default=0.75)
    norm_pix_loss: bool = field(default=True)


@dataclass
class PretrainDataArguments:
    face_dirs: list[str] = field(default_factory=list, metadata={
        "help": "folders of face images, searched recursively (e.g. Aff-Wild2 cropped_aligned)"})
    dataset_name: str | None = field(default=None, metadata={
        "help": "or a `datasets` dataset of face images: a Hub id or a folder `datasets.load_dataset` reads"})
    dataset_config_name: str | None = None
    train_split: str = field(default="train")
    image_column: str = field(default="image")
    hflip: bool = True


@dataclass
class PretrainTrainingArguments(EmoticTrainingArguments):
    """MAE pre-training defaults: no layer decay, weight decay 0.05, lr 1.5e-4 × batch / 256 in MAE's recipe."""

    layer_decay: float = field(default=1.0)
    learning_rate: float = field(default=1.5e-4)
    eval_strategy: str = field(default="no")


def main(argv=None) -> dict:
    parser = HfArgumentParser((PretrainModelArguments, PretrainDataArguments, PretrainTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not data_args.face_dirs and not data_args.dataset_name:
        parser.error("--face_dirs or --dataset_name: give at least one folder of face images, or a dataset of them")
    refuse_unhonoured(training_args)
    set_seed(training_args.seed)
    faces = read_unlabelled_faces(data_args.face_dirs) if data_args.face_dirs else read_unlabelled_dataset(
        data_args.dataset_name, data_args.train_split, data_args.dataset_config_name, data_args.image_column)
    if model_args.model_name_or_path:
        model = AutoModelForPreTraining.from_pretrained(
            model_args.model_name_or_path, mask_ratio=model_args.mask_ratio, norm_pix_loss=model_args.norm_pix_loss)
    else:
        model = EmoticForPreTraining(build_config(model_args.model_size, image_size=model_args.image_size,
                                                  mask_ratio=model_args.mask_ratio,
                                                  norm_pix_loss=model_args.norm_pix_loss))
    # pre-training sees whole aligned faces; the auxiliary view is not built
    processor = EmoticImageProcessor(size=model.config.image_size)
    transform = ViewTransform(processor, hflip=data_args.hflip, main_view_only=True, seed=training_args.seed,
                              geometry="template")
    faces.set_transform(transform)
    training_args.label_names = []  # the loss comes from the model itself
    trainer = EmoticTrainer(model=model, args=training_args, train_dataset=faces, processing_class=processor,
                            callbacks=[EpochCallback(transform)])
    resume = last_complete_checkpoint(training_args.output_dir)
    if resume and training_args.process_index == 0:
        print(f"resuming from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_metrics("train", result.metrics)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if trainer.is_world_process_zero():
        write_run_summary(training_args.output_dir, {
            "task": "pretrain", "images": len(faces), "face_dirs": [Path(d).name for d in data_args.face_dirs],
            "dataset": dataset_label(data_args.dataset_name) if data_args.dataset_name else None,
            "model": {"hidden_size": model.config.hidden_size, "num_hidden_layers": model.config.num_hidden_layers,
                      "image_size": model.config.image_size, "mask_ratio": model.config.mask_ratio,
                      "norm_pix_loss": model.config.norm_pix_loss},
            "hyperparameters": training_hyperparameters(training_args, trainer.accelerator),
            "losses": losses,
            "unreadable_images": unreadable_summary(transform),
        })
    finish_distributed()
    return {"losses": losses}


if __name__ == "__main__":
    main(sys.argv[1:])
