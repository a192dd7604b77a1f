"""`emotic_run.json`, the record a training run leaves beside its model: data, hyper-parameters, metrics and whether
the data were generated. The model card is written from it."""

import json
from pathlib import Path

import torch
from transformers import TrainingArguments

RUN_SUMMARY = "emotic_run.json"


def write_run_summary(output_dir, summary: dict) -> None:
    """`emotic_run.json`: data, hyper-parameters and metrics of the run, read by the model card. Only plain
    values: no tokens, and dataset locations as folder names, not paths of this machine."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / RUN_SUMMARY, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, default=str)


def unreadable_summary(*transforms) -> dict:
    """The images the transforms skipped as undecodable: a count and `folder/file` names (no paths of this
    machine)."""
    names = sorted({f"{Path(path).parent.name}/{Path(path).name}" for transform in transforms if transform
                    for path in transform.unreadable})
    return {"count": len(names), "files": names}


def training_hyperparameters(args: TrainingArguments, accelerator=None) -> dict:
    """The run's hyper-parameters. Precision, distribution and process count come from the Accelerator the Trainer
    used (what `accelerate launch --mixed_precision bf16` set, not only the `--bf16` flag)."""
    world = accelerator.num_processes if accelerator is not None else max(args.world_size, 1)
    precision = accelerator.mixed_precision if accelerator is not None else \
        "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    distribution = getattr(getattr(accelerator, "distributed_type", None), "value", None)
    return {
        "learning_rate": args.learning_rate, "layer_decay": getattr(args, "layer_decay", None),
        "weight_decay": args.weight_decay,
        "lr_scheduler_type": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        "warmup_steps": args.warmup_steps, "num_train_epochs": args.num_train_epochs, "max_steps": args.max_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "num_processes": world,
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
        "mixed_precision": precision, "distributed_type": distribution, "seed": args.seed,
        "torch_version": torch.__version__,
    }
