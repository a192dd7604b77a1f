"""The Trainer of pre-training and fine-tuning: layer-wise LR decay, resuming from the last complete checkpoint,
closing the process group at the end; and the callback that keeps the training transform on the Trainer's epoch."""

import json
import os
import re

import torch
from transformers import Trainer, TrainerCallback
from transformers.utils import logging

from emotic.training.transforms import ViewTransform

logger = logging.get_logger(__name__)


class EpochCallback(TrainerCallback):
    """Tells a `ViewTransform` which epoch the Trainer is in (also after resuming)."""

    def __init__(self, transform: ViewTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.epoch = int(state.epoch or 0)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.transform.unreadable:
            names = sorted(self.transform.unreadable)
            logger.warning(f"{len(names)} training images could not be decoded and were skipped so far: "
                           f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")


def layer_decay_parameter_groups(model, weight_decay: float, learning_rate: float, layer_decay: float) -> list:
    """MAE's layer-wise LR decay over the model's own layer ids (`EmoticPreTrainedModel.layer_ids`, from its timm
    `group_matcher`): a parameter of layer `i` trains at `learning_rate * layer_decay ** (L + 1 - i)`, so the
    embeddings (0) slowest, block `i` at `i + 1`, the fusion block like the block after it, and the final norm,
    the head and the MAE decoder at the full rate. No weight decay on 1-D parameters (norms, biases) nor on
    position embeddings and tokens."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model: its own names
    num_layers = model.config.num_hidden_layers
    no_decay = model.no_weight_decay()
    layer_ids = model.layer_ids()
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = 0.0 if parameter.ndim == 1 or name in no_decay else weight_decay
        scale = layer_decay ** (num_layers + 1 - layer_ids[name])
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
                model, self.args.weight_decay, self.args.learning_rate, getattr(self.args, "layer_decay", None) or 1.0
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
        weights = ("model.safetensors", "adapter_model.safetensors")  # a LoRA run's checkpoints hold its adapter
        if any(os.path.isfile(os.path.join(path, name)) for name in weights) and (
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


