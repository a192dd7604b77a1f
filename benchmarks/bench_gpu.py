"""GPU throughput of the dual-view classifier at real size (ViT-B/16, 224 px, two views, attention fusion): bf16
inference and training (forward, backward, fused AdamW) in images/s, peak memory, and model FLOP utilisation (MFU),
for batch sizes up to 256, eager (SDPA) and with `torch.compile`; then `emotic predict` end to end (model load,
JPEG decoding, both views, the model, smoothing, the CSVs) over a folder of generated 112-px aligned frames, against
the loop a user would otherwise write (`pipeline("image-classification")` frame by frame, the same model, float32
like predict). One run stays under `--time-budget` seconds (default 420): what does not fit is listed as skipped.

    python benchmarks/bench_gpu.py [--batch-sizes 32,64,128,256] [--json results.json] [--peak-tflops 989]
    python benchmarks/bench_gpu.py --smoke        # a tiny model on the CPU: checks the script, measures nothing

FLOPs per image are counted by `torch.utils.flop_counter.FlopCounterMode` on the device (forward, and forward +
backward for training); MFU = achieved FLOP/s / the device's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s; pass
--peak-tflops for another card). A transformers ViTForImageClassification (one view, SDPA) at the largest batch
gives a reference point.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emotic import EmoticConfig, EmoticForImageClassification

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0,
                    "H100 NVL": 835.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def count_flops(model, inputs: dict, training: bool) -> float:
    """FLOPs of one forward (and backward when training) per image."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = next(iter(inputs.values())).shape[0]
    with FlopCounterMode(display=False) as counter, torch.autocast(inputs["pixel_values"].device.type,
                                                                   dtype=torch.bfloat16):
        output = model(**inputs)
        if training:
            output.loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(step, device, warmup: int, iterations: int) -> float:
    """Median seconds per step over `iterations` timed steps after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_steps(model, inputs, device, compiled: bool):
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def infer():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            forward(**{k: v for k, v in inputs.items() if k != "labels"})

    def train():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = forward(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return infer, train


def predict_end_to_end(config, device, frames: int, loop_frames: int, batch_size: int) -> dict:
    """Frames per second of `emotic predict` on a frame folder, and of a `pipeline` loop over the first frames."""
    from transformers import pipeline

    from emotic import EmoticImageProcessor
    from emotic.inference import predict
    from emotic.training.synthetic import synthetic_video

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "video").mkdir()
        for index, (image, _, _) in enumerate(synthetic_video(np.random.default_rng(0), frames, 112)):
            image.save(work / "video" / f"{index + 1:05d}.jpg", quality=90)
        torch.manual_seed(0)
        EmoticForImageClassification(config).save_pretrained(work / "model")
        EmoticImageProcessor(size=config.image_size, geometry="template").save_pretrained(work / "model")
        started = time.perf_counter()
        code = predict.main([str(work / "model"), str(work / "video"), "--output_dir", str(work / "out"),
                             "--batch_size", str(batch_size), "--device", device.type, "--quiet"])
        predict_s = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"emotic predict exited with {code}")
        classify = pipeline("image-classification", model=str(work / "model"), device=device, trust_remote_code=False)
        files = sorted((work / "video").glob("*.jpg"))[:loop_frames]
        classify(str(files[0]), top_k=1)  # warm-up
        started = time.perf_counter()
        for file in files:
            classify(str(file), top_k=1)
        loop_s = time.perf_counter() - started
    return {"frames": frames, "batch_size": batch_size, "predict_s": round(predict_s, 2),
            "predict_frames_per_s": round(frames / predict_s, 1), "pipeline_loop_frames": loop_frames,
            "pipeline_loop_frames_per_s": round(loop_frames / loop_s, 1),
            "ratio": round((frames / predict_s) / (loop_frames / loop_s), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="32,64,128,256")
    parser.add_argument("--compile-batch-sizes", default="64,256",
                        help="batch sizes also measured with torch.compile (each compiles anew)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--time-budget", type=float, default=420)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--predict-frames", type=int, default=2048,
                        help="frames `emotic predict` runs over (the pipeline loop runs over a quarter of them)")
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, to check the script")
    args = parser.parse_args()
    started = time.perf_counter()

    if args.smoke:
        device = torch.device("cpu")
        config = EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              image_size=32, patch_size=8, fusion_layer=1, drop_path_rate=0.0)
        batch_sizes, compile_sizes, size = [2, 4], [], 32
        args.iterations, args.warmup, args.predict_frames = 2, 1, 8
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_gpu.py needs a CUDA GPU (use --smoke to check the script on a CPU)")
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        config = EmoticConfig(drop_path_rate=0.0)  # ViT-B/16, attention fusion after block 4
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        compile_sizes = [int(b) for b in args.compile_batch_sizes.split(",")]
        size = 224
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    print(f"{name}; torch {torch.__version__}; bf16 autocast; peak {peak or 'unknown'} TFLOP/s; "
          f"ViT {config.hidden_size}x{config.num_hidden_layers}, {size}px, two views, fusion "
          f"{config.fusion_strategy} after block {config.fusion_layer}", flush=True)

    torch.manual_seed(0)
    model = EmoticForImageClassification(config).to(device).train()

    def batch_of(batch):
        return {"pixel_values": torch.randn(batch, 3, size, size, device=device),
                "pixel_values_aux": torch.randn(batch, 3, size, size, device=device),
                "labels": torch.randint(0, 8, (batch,), device=device)}

    flops = {"inference": count_flops(model, {k: v for k, v in batch_of(2).items() if k != "labels"}, False),
             "training": count_flops(model, batch_of(2), True)}
    print(f"GFLOPs per image: inference {flops['inference'] / 1e9:.1f}, training step {flops['training'] / 1e9:.1f}",
          flush=True)

    results, skipped = [], []
    plan = [(batch, False) for batch in batch_sizes] + [(batch, True) for batch in compile_sizes]
    for batch, compiled in plan:
        mode = "torch.compile" if compiled else "eager SDPA"
        if time.perf_counter() - started > args.time_budget:
            skipped.append(f"batch {batch} {mode}")
            continue
        inputs = batch_of(batch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        infer, train = make_steps(model, inputs, device, compiled)
        row = {"batch_size": batch, "mode": mode}
        for kind, step in (("inference", infer), ("training", train)):
            try:
                seconds = measure(step, device, args.warmup, args.iterations)
            except torch.OutOfMemoryError:
                row[kind] = "out of memory"
                torch.cuda.empty_cache()
                continue
            achieved = flops[kind] * batch / seconds
            row[kind] = {"images_per_s": round(batch / seconds, 1), "ms_per_step": round(seconds * 1e3, 2),
                         "tflops": round(achieved / 1e12, 1),
                         "mfu": round(achieved / (peak * 1e12), 3) if peak else None}
        if device.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        results.append(row)
        print(json.dumps(row), flush=True)
        torch._dynamo.reset()

    reference = None
    if device.type == "cuda" and time.perf_counter() - started < args.time_budget:
        from transformers import ViTConfig, ViTForImageClassification

        batch = batch_sizes[-1]
        vit = ViTForImageClassification(ViTConfig(layer_norm_eps=1e-6, num_labels=8, attn_implementation="sdpa"))
        vit = vit.to(device).train()
        inputs = {"pixel_values": torch.randn(batch, 3, 224, 224, device=device),
                  "labels": torch.randint(0, 8, (batch,), device=device)}
        infer, train = make_steps(vit, inputs, device, False)
        reference = {"model": "transformers ViTForImageClassification, one view, eager SDPA", "batch_size": batch,
                     "inference_images_per_s": round(batch / measure(infer, device, args.warmup, args.iterations), 1),
                     "training_images_per_s": round(batch / measure(train, device, args.warmup, args.iterations), 1)}
        print(json.dumps(reference), flush=True)

    video = None
    if time.perf_counter() - started < args.time_budget:
        del model
        torch.cuda.empty_cache() if device.type == "cuda" else None
        video = predict_end_to_end(config, device, args.predict_frames, max(args.predict_frames // 4, 4),
                                   batch_size=256 if device.type == "cuda" else 4)
        print(json.dumps({"emotic predict, end to end": video}), flush=True)
    else:
        skipped.append("emotic predict end to end")

    print("\n| batch | mode | inference img/s | MFU | training img/s | MFU | peak GiB |\n|---|---|---|---|---|---|---|")
    for row in results:
        cells = []
        for kind in ("inference", "training"):
            value = row[kind]
            cells += [value, ""] if isinstance(value, str) else [
                f"{value['images_per_s']:.0f}", f"{value['mfu']:.2f}" if value["mfu"] is not None else "n/a"]
        print(f"| {row['batch_size']} | {row['mode']} | {' | '.join(cells)} | {row.get('peak_memory_gib', 'n/a')} |")
    if skipped:
        print(f"skipped (time budget {args.time_budget:.0f} s): {', '.join(skipped)}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": name, "torch": torch.__version__, "peak_tflops": peak, "flops_per_image": flops,
                       "results": results, "reference": reference, "predict": video, "skipped": skipped}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
