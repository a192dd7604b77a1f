"""What pre-training and fine-tuning share on the command line: transformers' TrainingArguments with MAE-Face's
defaults, and the encoder size presets."""

from dataclasses import dataclass, field
from typing import Literal, get_args

from transformers import TrainingArguments

from emotic.commands import check_number
from emotic.modeling.configuration_emotic import EmoticConfig

# Encoder presets. `base` is MAE-Face's ViT-B/16; `tiny` is for demos and tests on a CPU.
ModelSize = Literal["base", "small", "tiny"]
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
    cosine) and the layer-wise learning-rate decay of MAE (`layer_decay`, 0.65 for ViT-B). Layer decay keeps what
    pre-training taught the lower blocks, so it is only the default where there is something to keep: an encoder
    trained from random weights gets none (`resolve_layer_decay`)."""

    layer_decay: float | None = field(default=None, metadata={
        "help": "lr scale per block from the top (1.0 = none); default: 0.65 when fine-tuning a pre-trained or "
                "fine-tuned encoder (--model_name_or_path), 1.0 for an encoder from random weights"})
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


PRETRAINED_LAYER_DECAY = 0.65  # MAE's fine-tuning recipe for ViT-B


def resolve_layer_decay(args: TrainingArguments, pretrained: bool) -> float:
    """`--layer_decay` as given, else MAE's 0.65 for a pre-trained encoder and 1.0 (none) for random weights: scaling
    the lower blocks' learning rate down only slows an encoder that has nothing to keep (FER+, the tiny preset from
    scratch, 2 epochs, one seed: 0.400 validation accuracy at 0.65 against 0.420 at 1.0)."""
    if args.layer_decay is None:
        args.layer_decay = PRETRAINED_LAYER_DECAY if pretrained else 1.0
    check_number("--layer_decay", args.layer_decay, 0, 1, low_open=True)
    return args.layer_decay


def refuse_unhonoured(args: TrainingArguments) -> None:
    """A `ValueError` for every Trainer option emotic's scripts would silently not honour (or that breaks them)."""
    strategy = getattr(args.hub_strategy, "value", args.hub_strategy)
    refusals = {
        "--hub_strategy": (strategy != "end", f"{strategy}: the finished model is published once (--push_to_hub, "
                                              f"through `emotic export` and `emotic push`), never checkpoints; leave "
                                              f"it at 'end'"),
        "--hub_always_push": (args.hub_always_push, "checkpoints are never pushed (see --hub_strategy)"),
        "--remove_unused_columns": (args.remove_unused_columns, "the images are decoded from the `image` column by "
                                                                "the dataset transform, which Trainer would remove"),
        "--label_smoothing_factor": (args.label_smoothing_factor, "Trainer's smoother would replace the model's loss "
                                                                  "and its class weights; use --label_smoothing"),
        "--prediction_loss_only": (args.prediction_loss_only, "the held-out macro-F1 needs the predictions"),
    }
    refused = [f"{option} {reason}" for option, (given, reason) in refusals.items() if given]
    if refused:
        raise ValueError("emotic does not honour these Trainer options: " + "; ".join(refused))


def build_config(model_size: str, **overrides) -> EmoticConfig:
    if model_size not in get_args(ModelSize):
        raise ValueError(f"model_size={model_size!r}; allowed: {list(get_args(ModelSize))}")
    return EmoticConfig(**{**MODEL_SIZES[model_size], **{k: v for k, v in overrides.items() if v is not None}})
