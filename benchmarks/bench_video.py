"""End-to-end video throughput on the CPU: `emotic predict` against the loop a user would otherwise write
(`pipeline("image-classification")` frame by frame), the same ViT-B/16 dual-view model (random weights, attention
fusion), the same frames, in the same run, alternating, each in a fresh process timed from start to finish (imports
and model load included, as a user feels it).

    python benchmarks/bench_video.py [--frames 96] [--photos 96] [--repeats 2] [--onnx] [--int8] [--json results.json]
    python benchmarks/bench_video.py --smoke     # a tiny model, 2 frames, 1 photo: checks the script, measures nothing

Two streams: an Aff-Wild2-like folder of aligned 112x112 JPEG frames (template geometry, as `cropped_aligned`), and
512x512 photos of real faces where the face detector runs on every image. `emotic predict` decodes frames and builds
both views in a background thread while the model runs; it is timed in float32 and with `--dtype auto` (bfloat16 where
a start-up probe measures it faster than float32; float32 elsewhere); `--int8` adds `--quantize int8` (every linear
layer dynamically quantized), and `--onnx` `--backend onnxruntime` on the graph `emotic export-onnx` writes (the
export timed on its own). Each command also runs once on a folder holding only the first image (a stream of one image
is its own): its time is the start-up (imports, model and detector loading), and `(time - start-up) / (images - 1)`
the steady cost per image, whose ratio is what a long video sees. The `emotic` command keeps freed memory for reuse
(glibc's mallopt, see emotic/cli.py); the loop runs once more with the same setting through glibc's environment
variables, to show how much of the gap that setting is. The breakdown times each stage on its own in this process
(decode, detect, views, model in predict's batches of 8 in float32 and in the `auto` dtype), and the peak memory of
each predict process is printed. The CPU's flags that matter are printed first: compare ratios within one run, never
absolute numbers across machines.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from emotic.cli import KEPT_MEMORY_BYTES


def cpu_summary() -> dict:
    flags = set()
    name = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and name == "unknown":
                    name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"})}


def make_model(folder: Path, smoke: bool) -> None:
    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor

    torch.manual_seed(0)
    config = EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=32, patch_size=8) if smoke else EmoticConfig()  # ViT-B/16, 224 px
    EmoticForImageClassification(config).save_pretrained(folder)
    EmoticImageProcessor(size=config.image_size).save_pretrained(folder)


def aligned_frames(folder: Path, count: int) -> Path:
    """Generated aligned faces at Aff-Wild2's 112 px, as JPEG frames of one video."""
    from emotic.training.synthetic import synthetic_video

    folder.mkdir(parents=True)
    for index, (image, _, _) in enumerate(synthetic_video(np.random.default_rng(0), count, 112), 1):
        image.save(folder / f"{index:05d}.jpg", quality=95)
    return folder


def photos(folder: Path, count: int) -> Path:
    """512x512 photos of two real faces (scikit-image's astronaut, matplotlib's Grace Hopper) under different crops
    and mirrorings, so the detector works on each."""
    import skimage.data
    from matplotlib import cbook
    from PIL import Image, ImageOps

    folder.mkdir(parents=True)
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        sources = [Image.fromarray(skimage.data.astronaut()), grace.convert("RGB")]
    rng = np.random.default_rng(0)
    for index in range(count):
        source = sources[index % 2]
        side = int(min(source.size) * rng.uniform(0.8, 1.0))
        left, top = int(rng.uniform(0, source.width - side)), int(rng.uniform(0, min(40, source.height - side) + 1))
        image = source.crop((left, top, left + side, top + side)).resize((512, 512))
        (ImageOps.mirror(image) if index % 4 >= 2 else image).save(folder / f"photo{index:03d}.jpg", quality=95)
    return folder


PIPELINE_LOOP = textwrap.dedent("""
    import sys, emotic
    from pathlib import Path
    from transformers import pipeline
    classify = pipeline("image-classification", model=sys.argv[1], trust_remote_code=False)
    for path in sorted(Path(sys.argv[2]).iterdir()):
        classify(str(path), top_k=1)
""")


# what `emotic.cli.keep_freed_memory` sets, as glibc's environment variables for a process that is not `emotic`
KEPT_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(KEPT_MEMORY_BYTES), "MALLOC_TRIM_THRESHOLD_": str(KEPT_MEMORY_BYTES)}


def resident_peak_mib(pid: int) -> float | None:
    """A running process's peak resident memory so far (Linux's VmHWM, in MiB), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def timed_process(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of one process (`env`: variables added to this one's).

    The peak is the child's own VmHWM, read every 20 ms while it runs: `ru_maxrss` (of `wait4` or of the child's
    `getrusage`) carries over exec the peak of the process that started it, so every command started by this one,
    once it has loaded models of its own (the breakdown), would report at least this one's peak. Where /proc cannot
    be read (not Linux), `ru_maxrss` it is."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})})
        peak = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            now = resident_peak_mib(process.pid)
            peak = now if peak is None or (now is not None and now > peak) else peak
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command[:5])} failed:\n{errors.read()[-3000:]}")
    return seconds, peak if peak is not None else usage.ru_maxrss / 1024


def breakdown(model_dir: Path, frames_dir: Path, geometry: str, frames: int = 32) -> dict:
    """Seconds per frame of each stage, each run on its own over the first `frames` images: decode, detect (photos),
    views, model (in predict's batches on the CPU)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from emotic.inference.runtime import CPU_BATCH_SIZE, resolve_dtype
    from emotic.processing.face_geometry import FaceLandmarker, detector_available
    from emotic.processing.image_files import open_image

    processor = AutoImageProcessor.from_pretrained(model_dir)
    paths = sorted(frames_dir.iterdir())[:frames]
    start = time.perf_counter()
    images = [processor.to_rgb(open_image(path)) for path in paths]
    times = {"decode": time.perf_counter() - start}
    landmarks = None
    if geometry == "detector" and detector_available():
        FaceLandmarker.shared()  # loading the landmark model (about a second) is start-up, not per-image work
        start = time.perf_counter()
        landmarks = [FaceLandmarker.shared()(np.asarray(image)) for image in images]
        times["detect"] = time.perf_counter() - start
        if any(points is None for points in landmarks):
            landmarks = None
    start = time.perf_counter()
    views = processor(images, return_tensors="pt", landmarks=landmarks, geometry="template")
    times["views"] = time.perf_counter() - start
    for name in ("float32", "auto"):
        dtype = resolve_dtype(name, "cpu")
        model = AutoModelForImageClassification.from_pretrained(model_dir, dtype=dtype).eval()
        batches = [{key: value[first:first + CPU_BATCH_SIZE] for key, value in views.items()}
                   for first in range(0, len(paths), CPU_BATCH_SIZE)]
        with torch.inference_mode():
            model(**batches[0])  # warm-up
            start = time.perf_counter()
            for batch in batches:
                model(**batch)
            times[f"model {name} ({str(dtype).removeprefix('torch.')})"] = time.perf_counter() - start
    return {stage: seconds / len(paths) for stage, seconds in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=96, help="aligned 112-px frames")
    parser.add_argument("--photos", type=int, default=96, help="512-px photos (the detector runs on each)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--onnx", action="store_true", help="also predict with --backend onnxruntime")
    parser.add_argument("--int8", action="store_true", help="also predict with --quantize int8")
    parser.add_argument("--json", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        # each command once; the frames also once on their first frame alone (the start-up), the photo is its own
        args.frames, args.photos, args.repeats = 2, 1, 1
    summary = cpu_summary()
    print(json.dumps(summary))
    results = {"machine": summary, "streams": {}}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        make_model(work / "model", args.smoke)
        if args.onnx:
            seconds, _ = timed_process([sys.executable, "-m", "emotic.cli", "export-onnx", str(work / "model"),
                                        "--output_dir", str(work / "onnx")])
            print(f"emotic export-onnx: {seconds:.1f} s (export and the parity check)")
            results["onnx_export_seconds"] = round(seconds, 1)
        streams = {"aligned 112x112 frames": (aligned_frames(work / "frames", args.frames), "template"),
                   "512x512 photos, detector": (photos(work / "photos", args.photos), "detector")}
        for stream, (folder, geometry) in streams.items():
            count = len(list(folder.iterdir()))
            sources = [(folder, "")]
            if count > 1:  # the start-up: the same commands on one image (a one-image stream is its own start-up)
                first = folder.with_name(folder.name + "-first")
                first.mkdir()
                first_image = min(folder.iterdir())
                os.link(first_image, first / first_image.name)
                sources.append((first, " start-up"))
            runs, envs = {}, {}  # envs: variables added for a run, by its name
            for source, label in sources:
                out = f"out{label.strip()}"
                predict = [sys.executable, "-m", "emotic.cli", "predict", str(work / "model"), str(source),
                           "--quiet", "--geometry", geometry, "--overwrite"]
                loop_command = [sys.executable, "-c", PIPELINE_LOOP, str(work / "model"), str(source)]
                runs[f"pipeline loop (float32){label}"] = loop_command
                runs[f"pipeline loop, memory kept{label}"] = loop_command
                envs[f"pipeline loop, memory kept{label}"] = KEPT_MEMORY
                runs[f"emotic predict (float32){label}"] = [*predict, "--output_dir", str(work / f"{out}32")]
                runs[f"emotic predict (--dtype auto){label}"] = [*predict, "--output_dir", str(work / f"{out}auto"),
                                                                 "--dtype", "auto"]
                if args.int8:
                    runs[f"emotic predict (--quantize int8){label}"] = [*predict, "--output_dir",
                                                                        str(work / f"{out}int8"), "--quantize", "int8"]
                if args.onnx:
                    runs[f"emotic predict (--backend onnxruntime){label}"] = [
                        sys.executable, "-m", "emotic.cli", "predict", str(work / "onnx"), *predict[5:],
                        "--output_dir", str(work / f"{out}onnx"), "--backend", "onnxruntime"]
            samples = {name: [] for name in runs}
            peaks = {name: 0.0 for name in runs}
            for _ in range(args.repeats):  # alternating: machine noise hits every candidate alike
                for name, command in runs.items():
                    seconds, peak = timed_process(command, envs.get(name))
                    samples[name].append(seconds)
                    peaks[name] = max(peaks[name], peak)
            medians = {name: statistics.median(values) for name, values in samples.items()}
            names = [name for name in runs if not name.endswith(" start-up")]
            for name in names:
                medians.setdefault(f"{name} start-up", medians[name])
            loop = medians["pipeline loop (float32)"]
            # None where the start-up swamps the images (a few frames of a tiny model): no steady cost to give
            steady = {name: (medians[name] - medians[f"{name} start-up"]) / (count - 1)
                      if count > 1 and medians[name] > medians[f"{name} start-up"] else None for name in names}
            base = steady["pipeline loop (float32)"]
            print(f"\n{stream}: {count} image{'s' if count > 1 else ''}, medians of {args.repeats} (start to finish, "
                  f"imports and load included; steady: per image after start-up)")
            rows = {}
            for name in names:
                seconds = medians[name]
                ratio = round(base / steady[name], 2) if base and steady[name] else None
                rows[name] = {"seconds": round(seconds, 2), "frames_per_s": round(count / seconds, 2),
                              "vs_pipeline_loop": round(loop / seconds, 2), "peak_mib": round(peaks[name]),
                              "start_up_seconds": round(medians[f"{name} start-up"], 2),
                              "steady_ms_per_frame": None if steady[name] is None else round(steady[name] * 1000, 1),
                              "steady_vs_pipeline_loop": ratio}
                cost = "n/a" if steady[name] is None else f"{steady[name] * 1000:6.1f} ms/frame {ratio or 0:4.2f}x"
                print(f"  {name:32s} {seconds:7.1f} s  {count / seconds:6.2f} frames/s  {loop / seconds:4.2f}x the loop"
                      f"  | start-up {medians[f'{name} start-up']:4.1f} s, steady {cost}  | peak {peaks[name]:.0f} MiB")
            stages = breakdown(work / "model", folder, geometry)
            print("  breakdown, ms per frame: " + ", ".join(f"{k} {v * 1000:.1f}" for k, v in stages.items()))
            results["streams"][stream] = {"images": count, "runs": rows,
                                          "breakdown_ms_per_frame": {k: round(v * 1000, 2) for k, v in stages.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
