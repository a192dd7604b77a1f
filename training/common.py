"""What pre-training and fine-tuning share: arguments, model-size presets, layer-wise LR decay, the Trainer,
resuming from the last complete checkpoint, and the run summary written beside the model."""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from emotic.modeling.configuration_emotic import EmoticConfig

# Encoder presets. `base` is MAE-Face's ViT-B/16; `tiny` is for demos and tests on a CPU.
MODEL_SIZES = {
    "base": {},
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                  decoder_hidden_size=256, decoder_num_hidden_layers=4, decoder_num_attention_heads=8,
                  decoder_intermediate_size=1024),
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128, image_size=64,
                 patch_size=8, decoder_hidden_size=32, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
                 decoder_intermediate_size=64),
}


@dataclass
class EmoticTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments with MAE-Face fine-tuning defaults (AdamW, weight decay 0.05, 5% warmup then
    cosine) and the layer-wise learning-rate decay of MAE (`layer_decay`, 0.65 for ViT-B)."""

    layer_decay: float = field(default=0.65, metadata={"help": "lr scale per block from the top (1.0 = none)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate of the top layers"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (not on norms, biases, "
                                                                 "position embeddings or tokens)"})
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.05, metadata={"help": "warmup steps, or a fraction of all steps if < 1"})
    remove_unused_columns: bool = field(default=False)  # the image paths are decoded by the dataset transform
    eval_strategy: str = field(default="epoch")
    save_strategy: str = field(default="epoch")
    logging_steps: float = field(default=10)
    save_total_limit: int | None = field(default=2)
    dataloader_num_workers: int = field(default=0)
    # every parameter takes part in the loss in every fusion mode (tested), so DDP need not search for unused ones
    ddp_find_unused_parameters: bool | None = field(default=False)
    # --push_to_hub publishes the finished model once (emotic export + push); checkpoints are never pushed, so
    # "end" is the only strategy there is (others are refused, not ignored)
    hub_strategy: str = field(default="end", metadata={"help": "end (the finished model, once)"})


def layer_decay_parameter_groups(model, weight_decay: float, learning_rate: float, layer_decay: float) -> list:
    """MAE's layer-wise LR decay: block `i` trains at `learning_rate * layer_decay ** (L - i)`, the embeddings at
    `layer_decay ** (L + 1)` of it, the fusion block like the block after it, and the final norm, the head and
    the MAE decoder at the full rate. No weight decay on 1-D parameters (norms, biases) nor on position
    embeddings and tokens."""
    num_layers = model.config.num_hidden_layers
    fusion_layer = model.config.fusion_layer
    no_decay = model.no_weight_decay()

    def layer_id(name: str) -> int:
        if re.search(r"(^|\.)(embeddings|aux_embeddings)\.", name):
            return 0
        match = re.search(r"(?:^|\.)(?:layers|aux_layers)\.(\d+)\.", name)
        if match and not name.startswith("decoder."):
            return int(match.group(1)) + 1
        if name.startswith("fusion."):
            return fusion_layer + 1  # sits between block fusion_layer - 1 and block fusion_layer
        return num_layers + 1

    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = 0.0 if parameter.ndim == 1 or name in no_decay else weight_decay
        scale = layer_decay ** (num_layers + 1 - layer_id(name))
        key = (scale, decay)
        groups.setdefault(key, {"params": [], "weight_decay": decay, "lr": learning_rate * scale,
                                "lr_scale": scale})["params"].append(parameter)
    return list(groups.values())


class EmoticTrainer(Trainer):
    """Trainer whose optimizer follows `layer_decay_parameter_groups` (everything else is transformers' Trainer:
    mixed precision, gradient accumulation, distribution through Accelerate, checkpoints)."""

    def create_optimizer(self, model=None):
        model = self.model if model is None else model
        if self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            groups = layer_decay_parameter_groups(
                model, self.args.weight_decay, self.args.learning_rate, getattr(self.args, "layer_decay", 1.0)
            )
            for group in groups:
                group.pop("lr_scale")
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


def last_complete_checkpoint(output_dir) -> str | None:
    """The newest `checkpoint-N` that was written to the end, or None. A run killed while saving leaves a folder
    without a readable `trainer_state.json` (written last) or without weights: it is skipped, not loaded."""
    if not os.path.isdir(output_dir):
        return None
    numbered = []
    for entry in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", entry)
        if match and os.path.isdir(os.path.join(output_dir, entry)):
            numbered.append((int(match.group(1)), os.path.join(output_dir, entry)))
    for _, path in sorted(numbered, reverse=True):
        try:
            with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, ValueError):
            print(f"skipping incomplete checkpoint {path}")
            continue
        if os.path.isfile(os.path.join(path, "model.safetensors")) and (
            os.path.isfile(os.path.join(path, "optimizer.pt")) or os.path.isfile(os.path.join(path, "optimizer.bin"))
        ):
            return path
        print(f"skipping incomplete checkpoint {path}")
    return None


def finish_distributed() -> None:
    """Wait for every process, then close the process group. A process that exits with the group still open can
    abort at interpreter shutdown ("terminate called without an active exception": gloo's thread is still live)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def build_config(model_size: str, **overrides) -> EmoticConfig:
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size={model_size!r}; allowed: {sorted(MODEL_SIZES)}")
    return EmoticConfig(**{**MODEL_SIZES[model_size], **{k: v for k, v in overrides.items() if v is not None}})


def write_run_summary(output_dir, summary: dict) -> None:
    """`emotic_run.json`: data, hyper-parameters and metrics of the run, read by the model card. Only plain
    values: no tokens, and dataset locations as folder names, not paths of this machine."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / "emotic_run.json", "w", encoding="utf-8") as handle:
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
