"""Speed and memory of the emotic models against transformers and timm at real size (ViT-B/16, 224 px, random
weights), measured in one process: every candidate of a comparison runs once per round, rounds alternate after a
warm-up, and the median is reported, so machine noise hits every candidate alike and the ratios hold.

    python benchmarks/bench_models.py [--batch-size 8] [--repeats 5] [--threads N] [--only 1,2,...]

Comparisons (printed as ratios against their goals; > 1 means emotic is faster):
  1. EmoticModel one view vs transformers ViTModel (SDPA) vs timm vit_base_patch16_224: forward images/s.
  2. EmoticForImageClassification dual view vs the same model with fusion_strategy="none", against the cost model
     1 + fusion_layer / num_layers (goal: within 5% of it; two separate encoders would be 2.0x).
  3. A training step (forward, backward, AdamW) of the classifier vs transformers ViTForImageClassification.
  4. An MAE pre-training step vs transformers ViTMAEForPreTraining, same sizes and mask ratio.
  5. Memory: activations saved for the backward pass of a training step (counted exactly), and the peak resident
     memory of one inference forward above the resting model (Linux VmHWM, each model in a fresh process).
The image processor has its own script: benchmarks/bench_processor.py.
"""

import argparse
import gc
import platform
import statistics
import subprocess
import sys

import torch

from bench_processor import timed  # same folder: run as `python benchmarks/bench_models.py`
from emotic import EmoticConfig, EmoticForImageClassification, EmoticForPreTraining, EmoticModel


def compare(title: str, candidates: dict, images: int, repeats: int, reference: str) -> dict:
    """Alternating rounds after one warm-up each; prints images/s and the ratio to `reference`."""
    runs = {name: timed(step) for name, step in candidates.items()}
    for run in runs.values():
        run()
    samples = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(run())
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\n{title}")
    for name, seconds in medians.items():
        ratio = medians[reference] / seconds
        print(f"  {name:58s} {images / seconds:8.2f} images/s   {seconds * 1e3:9.1f} ms   "
              f"{ratio:5.2f}x vs {reference}")
    return medians


def forward_flops(model, pixels, aux=None) -> float:
    """FLOPs of one forward, counted with eager attention (the CPU's fused SDPA kernel is not in the counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(pixels) if aux is None else model(pixels, aux)
    finally:
        model.set_attn_implementation("sdpa")
    return counter.get_total_flops()


def saved_activation_mib(model, **inputs) -> float:
    """MiB of tensors the forward saves for the backward pass (deterministic, unlike resident memory)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**inputs)
    return total / 2**20


def peak_memory_mib(step) -> float:
    """Peak resident memory above the level before `step`, in MiB (Linux: VmHWM after clearing it)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets the peak (VmHWM) to the current RSS

    def status(field):
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith(field)) / 1024

    before = status("VmRSS:")
    step()
    return status("VmHWM:") - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", default="1,2,3,4,5", help="which comparisons to run")
    parser.add_argument("--smoke", action="store_true", help="tiny models, one round: checks the script only")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = {int(x) for x in args.only.split(",")}
    torch.manual_seed(0)
    if args.smoke:
        vit_config = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                          image_size=32, patch_size=8, layer_norm_eps=1e-6, qkv_bias=True)
        decoder = dict(decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
                       decoder_intermediate_size=64)
        args.batch_size, args.repeats = 2, 1
    else:  # ViT-B/16 and MAE's 512-d, 8-block decoder
        vit_config = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                          image_size=224, patch_size=16, layer_norm_eps=1e-6, qkv_bias=True)
        decoder = dict(decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
                       decoder_intermediate_size=2048)
    size, batch = vit_config["image_size"], args.batch_size
    pixels = torch.randn(batch, 3, size, size)
    aux = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 8, (batch,))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, batch {batch}, {size}x{size}, ViT {vit_config['hidden_size']}x{vit_config['num_hidden_layers']}"
          f"/{vit_config['patch_size']} random weights, medians of {args.repeats}")

    from transformers import ViTConfig, ViTForImageClassification, ViTMAEConfig, ViTMAEForPreTraining, ViTModel

    emotic_sizes = {k: v for k, v in vit_config.items() if k != "qkv_bias"}

    def emotic_config(**overrides):
        return EmoticConfig(**emotic_sizes, **decoder, drop_path_rate=0.0, **overrides)

    config = emotic_config()
    if args.memory_child:  # one forward in this fresh process: its peak above the resting model
        model = {"transformers": lambda: ViTForImageClassification(ViTConfig(**vit_config, num_labels=8)),
                 "emotic, fusion none": lambda: EmoticForImageClassification(emotic_config(fusion_strategy="none")),
                 "emotic, dual": lambda: EmoticForImageClassification(config)}[
            next(key for key in ("transformers", "emotic, fusion none", "emotic, dual")
                 if args.memory_child.startswith(key))]().eval()
        inputs = (pixels, aux) if "dual" in args.memory_child else (pixels,)
        with torch.inference_mode():
            print(peak_memory_mib(lambda: model(*inputs)))
        return

    if 1 in only:
        import timm

        ours = EmoticModel(config).eval()
        theirs = ViTModel(ViTConfig(**vit_config, attn_implementation="sdpa"), add_pooling_layer=False).eval()
        timm_model = timm.create_model(
            "vit_base_patch16_224", pretrained=False, num_classes=0, img_size=size, patch_size=vit_config["patch_size"],
            embed_dim=vit_config["hidden_size"], depth=vit_config["num_hidden_layers"],
            num_heads=vit_config["num_attention_heads"],
            mlp_ratio=vit_config["intermediate_size"] / vit_config["hidden_size"]).eval()
        with torch.inference_mode():
            compare("1. encoder forward, one view", {
                "EmoticModel (SDPA)": lambda: ours(pixels),
                "transformers ViTModel (SDPA)": lambda: theirs(pixels),
                "timm vit_base_patch16_224": lambda: timm_model(pixels),
            }, batch, args.repeats, "transformers ViTModel (SDPA)")
        del ours, theirs, timm_model

    if 2 in only:
        models = {strategy: EmoticForImageClassification(emotic_config(fusion_strategy=strategy)).eval()
                  for strategy in ("none", "mean", "attention")}
        candidates = {"fusion none (one view)": lambda: models["none"](pixels)}
        for strategy in ("mean", "attention"):
            candidates[f"fusion {strategy} after block {config.fusion_layer} (two views)"] = \
                lambda m=models[strategy]: m(pixels, aux)
        with torch.inference_mode():
            medians = compare("2. classifier forward: dual view vs one view", candidates, batch, args.repeats,
                              "fusion none (one view)")
        flops = {strategy: forward_flops(model, pixels[:1], None if strategy == "none" else aux[:1])
                 for strategy, model in models.items()}
        design = 1 + config.fusion_layer / config.num_hidden_layers
        print(f"  cost model: 1 + {config.fusion_layer}/{config.num_hidden_layers} = {design:.3f} "
              f"(without the fusion block's own work); two separate encoders: 2.0")
        for strategy in ("mean", "attention"):
            cost = medians[f"fusion {strategy} after block {config.fusion_layer} (two views)"] / medians[
                "fusion none (one view)"]
            work = flops[strategy] / flops["none"]
            print(f"  {strategy:9s}: time ratio {cost:.3f}; FLOP ratio {work:.3f} (the cost model plus the fusion "
                  f"block); time / FLOP ratio {cost / work:.3f}; time / cost model {cost / design:.3f} "
                  f"(goal <= 1.05)")
        del models

    def train_step(model, optimizer, **inputs):
        def step():
            loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    if 3 in only:
        dual = EmoticForImageClassification(config).train()
        single = EmoticForImageClassification(emotic_config(fusion_strategy="none")).train()
        theirs = ViTForImageClassification(ViTConfig(**vit_config, num_labels=8, attn_implementation="sdpa")).train()
        steps = {
            "transformers ViTForImageClassification (SDPA)":
                train_step(theirs, torch.optim.AdamW(theirs.parameters()), pixel_values=pixels, labels=labels),
            "emotic, fusion none (same work)":
                train_step(single, torch.optim.AdamW(single.parameters()), pixel_values=pixels, labels=labels),
            "emotic, dual view (attention fusion)":
                train_step(dual, torch.optim.AdamW(dual.parameters()), pixel_values=pixels, pixel_values_aux=aux,
                           labels=labels),
        }
        medians = compare("3. training step (forward, backward, AdamW)", steps, batch, args.repeats,
                          "transformers ViTForImageClassification (SDPA)")
        work = forward_flops(dual.eval(), pixels[:1], aux[:1]) / forward_flops(single.eval(), pixels[:1])
        per_work = medians["transformers ViTForImageClassification (SDPA)"] / (
            medians["emotic, dual view (attention fusion)"] / work)
        print(f"  dual view does {work:.3f}x the FLOPs of one view; per unit of work: {per_work:.2f}x transformers")
        del dual, single, theirs, steps

    if 4 in only:
        ours = EmoticForPreTraining(config).train()
        theirs = ViTMAEForPreTraining(ViTMAEConfig(**vit_config, **decoder, mask_ratio=config.mask_ratio,
                                                   norm_pix_loss=True, attn_implementation="sdpa")).train()
        compare(f"4. MAE pre-training step, mask ratio {config.mask_ratio}", {
            "transformers ViTMAEForPreTraining (SDPA)":
                train_step(theirs, torch.optim.AdamW(theirs.parameters()), pixel_values=pixels),
            "EmoticForPreTraining": train_step(ours, torch.optim.AdamW(ours.parameters()), pixel_values=pixels),
        }, batch, args.repeats, "transformers ViTMAEForPreTraining (SDPA)")
        del ours, theirs

    if 5 in only:
        models = {
            "transformers ViTForImageClassification (SDPA)": lambda: ViTForImageClassification(
                ViTConfig(**vit_config, num_labels=8, attn_implementation="sdpa")),
            "emotic, fusion none": lambda: EmoticForImageClassification(emotic_config(fusion_strategy="none")),
            "emotic, dual view (attention fusion)": lambda: EmoticForImageClassification(config),
        }
        print(f"\n5. memory per batch of {batch}: activations saved for the backward pass (training), and peak "
              f"resident memory of one forward above the resting model (inference, a fresh process each)")
        for name, build in models.items():
            model = build().train()
            inputs = {"pixel_values": pixels, "labels": labels}
            if "dual" in name:
                inputs["pixel_values_aux"] = aux
            saved = saved_activation_mib(model, **inputs)
            del model
            child = subprocess.run([sys.executable, __file__, "--memory-child", name, "--batch-size", str(batch)]
                                   + (["--smoke"] if args.smoke else []), capture_output=True, text=True)
            peak = float(child.stdout.split()[-1]) if child.returncode == 0 else float("nan")
            print(f"  {name:58s} training: {saved:7.0f} MiB saved   inference: {peak:7.0f} MiB peak")


if __name__ == "__main__":
    main()
