"""Convert a MAE-Face / MAE / timm ViT checkpoint, or a transformers ViTMAE folder, into an emotic model folder.

    python -m emotic.modeling.convert_mae_face --checkpoint mae_face_pretrain_vit_base.pth --output_dir mae-face-emotic

Accepted sources:
- a `.pth`/`.pt`/`.bin` file with the state dict under `model` (MAE, MAE-Face), `state_dict`, or bare (timm);
  optimizer, scaler, epoch and args entries beside it are ignored; loaded with `torch.load(weights_only=True)`;
- a `.safetensors` file in timm's naming;
- a folder saved by transformers' `ViTMAEModel` / `ViTMAEForPreTraining`.

Key mapping (timm / MAE-Face → emotic; a ViTMAE folder is first renamed to timm's names, q/k/v fused into qkv):

    cls_token, pos_embed          → emotic.embeddings.cls_token, emotic.embeddings.position_embeddings
    patch_embed.proj              → emotic.embeddings.patch_embeddings.projection
    blocks.i.{norm1,norm2}        → emotic.layers.i.{norm1,norm2}
    blocks.i.attn.{qkv,proj}      → emotic.layers.i.attention.{qkv,proj}
    blocks.i.mlp.{fc1,fc2}        → emotic.layers.i.mlp.{fc1,fc2}
    fc_norm (global pool) | norm  → emotic.layernorm
    head                          → classifier
    decoder_embed, mask_token, decoder_pos_embed, decoder_blocks.i.*, decoder_norm, decoder_pred
                                  → decoder.decoder_embed, decoder.mask_token, ... decoder.decoder_layers.i.*, ...

Like MAE-Face fine-tuning with `global_pool`, a pre-training checkpoint (no `fc_norm`) converted for
classification with `pooling="avg"` starts the final LayerNorm fresh instead of reusing `norm`.
Every key that is not used, and every weight the new model lacks, is reported by name.
"""

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import torch

from .configuration_emotic import EmoticConfig, FusionStrategy, Pooling
from .modeling_emotic import EmoticForImageClassification, EmoticForPreTraining, EmoticModel

TASKS = {
    "image-classification": EmoticForImageClassification,
    "pretraining": EmoticForPreTraining,
    "base": EmoticModel,
}

# Top-level entries of training checkpoints that are not weights.
NON_WEIGHT_ENTRIES = {"optimizer", "scaler", "epoch", "args", "lr_scheduler", "step", "config"}

_BLOCK_PARTS = {
    "norm1": "norm1", "norm2": "norm2", "attn.qkv": "attention.qkv", "attn.proj": "attention.proj",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_BLOCK_KEY = re.compile(r"^(decoder_blocks|blocks)\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


@dataclass
class ConversionReport:
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)  # weights of the new model not found in the checkpoint
    unused: dict = field(default_factory=dict)  # checkpoint key -> why it was not used

    def format(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing from the checkpoint, initialised fresh ({len(self.missing)}):")
            lines += [f"  {key}" for key in self.missing]
        if self.unused:
            lines.append(f"in the checkpoint but not used ({len(self.unused)}):")
            lines += [f"  {key}: {why}" for key, why in self.unused.items()]
        return "\n".join(lines)


def load_source(checkpoint: str | Path) -> tuple[dict, dict, dict]:
    """Returns (timm-named state dict, config hints, entries skipped at the top level)."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        return _load_vit_mae_folder(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), {}, {}
        except Exception as error:  # safetensors raises its own error types for truncated or corrupt headers
            cause = (str(error).strip().splitlines() or ["empty or truncated file"])[0]
            raise ValueError(f"checkpoint {path}: cannot be read as safetensors ({type(error).__name__}: "
                             f"{cause})") from None
    try:
        # MAE checkpoints carry their argparse options; a Namespace holds plain values and is safe to rebuild.
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors have many types; name the file and the cause
        cause = (str(error).strip().splitlines() or ["empty or truncated file"])[0]
        raise ValueError(f"checkpoint {path}: cannot be read as a torch state dict with weights_only=True "
                         f"({type(error).__name__}: {cause})") from error
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path}: expected a dict of tensors, got {type(payload).__name__}")
    skipped = {}
    for container in ("model", "state_dict", "module"):
        if isinstance(payload.get(container), dict):
            skipped = {key: "not a weight entry" for key in payload if key != container}
            payload = payload[container]
            break
    state_dict = {}
    for key, value in payload.items():
        key = key.removeprefix("module.")  # saved from a DistributedDataParallel wrapper
        if torch.is_tensor(value):
            state_dict[key] = value
        else:
            skipped[key] = "not a tensor"
    if not state_dict:
        raise ValueError(f"checkpoint {path}: no tensors found (top-level keys: {sorted(payload)[:10]})")
    return state_dict, {}, skipped


def _load_vit_mae_folder(path: Path) -> tuple[dict, dict, dict]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path} is a folder without config.json; expected a transformers ViTMAE folder")
    saved = json.loads(config_file.read_text())
    if saved.get("model_type") != "vit_mae":
        raise ValueError(f"{config_file}: model_type={saved.get('model_type')!r}; expected 'vit_mae'")
    from transformers import ViTMAEForPreTraining, ViTMAEModel

    with_decoder = "ViTMAEForPreTraining" in (saved.get("architectures") or [])
    model = (ViTMAEForPreTraining if with_decoder else ViTMAEModel).from_pretrained(path)
    source = {key.removeprefix("vit."): value for key, value in model.state_dict().items()}
    config = model.config
    hints = {name: getattr(config, name) for name in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "layer_norm_eps", "image_size", "patch_size", "num_channels", "qkv_bias", "decoder_hidden_size",
        "decoder_num_hidden_layers", "decoder_num_attention_heads", "decoder_intermediate_size", "mask_ratio",
        "norm_pix_loss")}
    return _vit_mae_to_timm_names(source), hints, {}


def _vit_mae_to_timm_names(source: dict) -> dict:
    renamed = {
        "cls_token": source.pop("embeddings.cls_token"),
        "pos_embed": source.pop("embeddings.position_embeddings"),
        "patch_embed.proj.weight": source.pop("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": source.pop("embeddings.patch_embeddings.projection.bias"),
    }
    for key in list(source):
        match = re.match(r"^(decoder\.decoder_layers|layers)\.(\d+)\.(.+)$", key)
        if match is None or not match.group(3).startswith("attention.q_proj"):
            continue
        stack, index, param = match.group(1), match.group(2), key.rsplit(".", 1)[1]
        prefix = f"{stack}.{index}."
        target = ("decoder_blocks" if stack.startswith("decoder") else "blocks") + f".{index}."
        renamed[target + f"attn.qkv.{param}"] = torch.cat(
            [source.pop(prefix + f"attention.{p}_proj.{param}") for p in "qkv"]
        )
    parts = {"attention.o_proj": "attn.proj", "layernorm_before": "norm1", "layernorm_after": "norm2",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for key in list(source):
        match = re.match(r"^(decoder\.decoder_layers|layers)\.(\d+)\.(.+)\.(weight|bias)$", key)
        if match and match.group(3) in parts:
            target = "decoder_blocks" if match.group(1).startswith("decoder") else "blocks"
            renamed[f"{target}.{match.group(2)}.{parts[match.group(3)]}.{match.group(4)}"] = source.pop(key)
    simple = {"layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    for key in list(source):
        if key in simple:
            renamed[simple[key]] = source.pop(key)
        elif key.startswith("decoder."):
            renamed[key.removeprefix("decoder.")] = source.pop(key)
    renamed.update(source)  # whatever is left is reported as unknown later
    return renamed


def infer_config(state_dict: dict, hints: dict, num_labels: int | None, overrides: dict,
                 with_decoder: bool = False) -> EmoticConfig:
    """Sizes from the tensors' shapes; what shapes cannot tell (heads, pooling) from hints, overrides or defaults."""
    for required in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if required not in state_dict:
            raise ValueError(f"the checkpoint has no {required!r}; expected a ViT in timm/MAE naming "
                             f"(found keys such as {sorted(state_dict)[:5]})")
    for key, ndim, shape in (("cls_token", 3, "(1, 1, D)"), ("pos_embed", 3, "(1, 1 + N, D)"),
                             ("patch_embed.proj.weight", 4, "(D, C, p, p)"), ("blocks.0.mlp.fc1.weight", 2, "(F, D)")):
        if state_dict[key].ndim != ndim:
            raise ValueError(f"the checkpoint's {key!r} has shape {tuple(state_dict[key].shape)}; expected {shape}")
    projection = state_dict["patch_embed.proj.weight"]  # [D, C, p, p]
    hidden_size, num_channels, patch_size = projection.shape[0], projection.shape[1], projection.shape[-1]
    num_positions = state_dict["pos_embed"].shape[1] - 1
    grid = int(round(num_positions**0.5))
    if grid * grid != num_positions:
        raise ValueError(f"pos_embed has {num_positions + 1} rows; expected 1 CLS row + a square patch grid")
    num_layers = 1 + max(int(key.split(".")[1]) for key in state_dict if key.startswith("blocks."))
    values = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 64),  # ViT convention: 64-wide heads
        "intermediate_size": state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        "image_size": grid * patch_size,
        "patch_size": patch_size,
        "num_channels": num_channels,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
        "pooling": "avg",  # MAE-Face's recommended global pooling
    }
    decoder_parts = ("decoder_embed.weight", "decoder_blocks.0.mlp.fc1.weight")
    present = [part in state_dict for part in decoder_parts]
    if with_decoder and any(present) and not all(present):  # no decoder at all: a fresh one, reported missing
        raise ValueError(f"the checkpoint's MAE decoder is incomplete (it lacks "
                         f"{[part for part in decoder_parts if part not in state_dict]}); --task pretraining needs "
                         f"the whole decoder or none (use --task base or image-classification for the encoder alone)")
    if all(present):
        decoder_size = state_dict["decoder_embed.weight"].shape[0]
        values.update(
            decoder_hidden_size=decoder_size,
            decoder_num_hidden_layers=1 + max(
                int(key.split(".")[1]) for key in state_dict if key.startswith("decoder_blocks.")),
            decoder_num_attention_heads=max(1, decoder_size // 32),  # MAE: 512 wide, 16 heads
            decoder_intermediate_size=state_dict["decoder_blocks.0.mlp.fc1.weight"].shape[0],
        )
    values.update(hints)
    values.update(overrides)
    if num_labels is not None:
        values["num_labels"] = num_labels  # otherwise the 8 ABAW expressions
    return EmoticConfig(**values)


def map_state_dict(state_dict: dict, model, report: ConversionReport) -> dict:
    """timm-named tensors → the model's own keys; fills `report.unused` for what finds no place."""
    config = model.config
    prefix = "" if isinstance(model, EmoticModel) else "emotic."
    is_pretraining = isinstance(model, EmoticForPreTraining)
    if is_pretraining:
        final_norm = "norm"
    elif config.pooling == "avg":
        final_norm = "fc_norm" if "fc_norm.weight" in state_dict else (
            None if isinstance(model, EmoticForImageClassification) else "norm")
    else:
        final_norm = "norm"

    mapped = {}
    encoder_keys = {
        "cls_token": "embeddings.cls_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    }
    decoder_keys = {"decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_pos_embed",
                    "decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    for key, tensor in state_dict.items():
        block = _BLOCK_KEY.match(key)
        if key in encoder_keys:
            mapped[prefix + encoder_keys[key]] = tensor
        elif block and block.group(1) == "blocks":
            mapped[f"{prefix}layers.{block.group(2)}.{_BLOCK_PARTS[block.group(3)]}.{block.group(4)}"] = tensor
        elif key.startswith(("norm.", "fc_norm.")):
            if key.split(".")[0] == final_norm:
                mapped[prefix + "layernorm." + key.split(".")[1]] = tensor
            elif final_norm is None:
                report.unused[key] = "MAE-Face's global pooling starts its fc_norm fresh (pooling='avg')"
            else:
                report.unused[key] = f"the model's final LayerNorm is taken from {final_norm!r}"
        elif key.startswith("head."):
            if not isinstance(model, EmoticForImageClassification):
                report.unused[key] = "the model has no classification head"
            elif tensor.shape[0] != config.num_labels:
                report.unused[key] = f"a head with {tensor.shape[0]} outputs; the model has {config.num_labels} labels"
            else:
                mapped["classifier." + key.split(".")[1]] = tensor
        elif key in decoder_keys or (block and block.group(1) == "decoder_blocks"):
            if not is_pretraining:
                report.unused[key] = "MAE decoder (only EmoticForPreTraining has one)"
            elif block:
                mapped[f"decoder.decoder_layers.{block.group(2)}.{_BLOCK_PARTS[block.group(3)]}.{block.group(4)}"] = tensor
            else:
                mapped["decoder." + key] = tensor
        else:
            report.unused[key] = "unknown key"

    # A separate auxiliary encoder starts from the same weights as the main one.
    if isinstance(model, EmoticForImageClassification) and hasattr(model, "aux_embeddings"):
        for key, tensor in list(mapped.items()):
            if key.startswith("emotic.embeddings."):
                mapped["aux_embeddings." + key.removeprefix("emotic.embeddings.")] = tensor
            match = re.match(r"^emotic\.layers\.(\d+)\.(.+)$", key)
            if match and int(match.group(1)) < config.fusion_layer:
                mapped[f"aux_layers.{match.group(1)}.{match.group(2)}"] = tensor
    return mapped


def convert(checkpoint, task: str = "image-classification", num_labels: int | None = None, **overrides):
    """Build the emotic model for `task` from `checkpoint`; returns `(model in eval mode, ConversionReport)`."""
    if task not in TASKS:
        raise ValueError(f"task={task!r}; allowed: {sorted(TASKS)}")
    state_dict, hints, skipped = load_source(checkpoint)
    config = infer_config(state_dict, hints, num_labels, overrides, with_decoder=task == "pretraining")
    model = TASKS[task](config)
    report = ConversionReport(unused=dict(skipped))
    mapped = map_state_dict(state_dict, model, report)

    target = model.state_dict()
    for key in mapped:
        if key not in target:
            report.unused[key] = "no such weight in the model"
    unexpected_shape = [key for key, tensor in mapped.items() if key in target and tensor.shape != target[key].shape]
    if unexpected_shape:
        raise ValueError("shape mismatch for " + ", ".join(
            f"{key} (checkpoint {tuple(mapped[key].shape)}, model {tuple(target[key].shape)})" for key in unexpected_shape))
    loadable = {key: tensor for key, tensor in mapped.items() if key in target}
    model.load_state_dict(loadable, strict=False)
    report.loaded = sorted(loadable)
    report.missing = sorted(set(target) - set(loadable))
    return model.eval(), report  # like from_pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # multi-word options in both spellings, as every emotic command (`--output_dir` and `--output-dir`)
    parser.add_argument("--checkpoint", required=True, help=".pth/.pt/.bin/.safetensors file or ViTMAE folder")
    parser.add_argument("--output_dir", "--output-dir", required=True)
    parser.add_argument("--task", default="image-classification", choices=sorted(TASKS))
    parser.add_argument("--num_labels", "--num-labels", type=int, default=None, help="default: the 8 ABAW expressions")
    parser.add_argument("--num_attention_heads", "--num-attention-heads", type=int, default=None,
                        help="default: hidden size / 64")
    parser.add_argument("--pooling", choices=get_args(Pooling), default=None)
    parser.add_argument("--fusion_strategy", "--fusion-strategy", choices=get_args(FusionStrategy), default=None)
    parser.add_argument("--fusion_layer", "--fusion-layer", type=int, default=None)
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in (
        ("num_attention_heads", args.num_attention_heads), ("pooling", args.pooling),
        ("fusion_strategy", args.fusion_strategy), ("fusion_layer", args.fusion_layer)) if value is not None}
    output = Path(args.output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        print(f"error: --output_dir {output} {'is not a folder' if not output.is_dir() else 'is not empty'}; "
              f"choose a new or empty folder (nothing there is overwritten)", file=sys.stderr)
        return 2
    try:
        model, report = convert(args.checkpoint, args.task, args.num_labels, **overrides)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model.save_pretrained(output)
    print(report.format())
    print(f"saved {type(model).__name__} to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
