"""Live streams: does `emotic predict` keep up? A 25 fps 640x360 two-person stream (the tests' real people, moving)
served over HTTP at real-time pace by a loopback server (tests/live_server.py), read by `emotic predict URL` with
every face tracked, for the `tiny`, `small` and `base` encoders (random weights: speed does not depend on them) and
`--detect_every 1` and `5`: frames per second sustained (frames with a row that is not `dropped`, over the stream's
duration), the fraction of frames dropped to hold `--max_latency`, and the latency from decoding to row (p50, p95;
the smoothing window's lag is part of it: `--smoothing_window 1` here).

    python benchmarks/bench_live.py --output_dir OUT [--seconds 20] [--max_latency 2] [--dtype auto]
    python benchmarks/bench_live.py --output_dir OUT --smoke     # 3 seconds, the tiny encoder: checks the script

Outputs: `live.md` (the table, the machine) and `live.json`. A row keeps up when nothing is dropped; the latency
then says how far behind real time its rows are written.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from bench_real_faces import machine  # noqa: E402  (the script's folder is on the path)
from people import compose_people  # noqa: E402

FPS = 25


def layout(frames: int):
    """Two people side by side, swaying and growing a little: the astronaut on the left, Grace Hopper on the right."""
    import math

    placed = []
    for index in range(frames):
        phase = 2 * math.pi * index / 100
        placed.append([(0, 190 + 30 * math.sin(phase), 180, 190 + 20 * math.sin(phase)),
                       (1, 450 - 30 * math.sin(phase), 180, 210 - 20 * math.sin(phase))])
    return placed


def write_stream(path: Path, seconds: float) -> int:
    """The stream as MPEG-TS (MPEG-4 part 2, a key frame a second); its frame count."""
    import av
    from PIL import Image

    frames = int(seconds * FPS)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 640, 360, "yuv420p", FPS
        stream.options = {"qscale": "3"}
        for frame in compose_people(layout(frames)):
            container.mux(stream.encode(av.VideoFrame.from_image(Image.fromarray(frame))))
        container.mux(stream.encode())
    return frames


def model_folder(out: Path, size: str) -> Path:
    """An emotic classifier of `size` with random weights, and its processor (faces found by the detector)."""
    import torch

    from emotic import EmoticForImageClassification, EmoticImageProcessor
    from emotic.training.arguments import build_config

    folder = out / "models" / size
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        config = build_config(size, image_size=112 if size != "tiny" else 64)
        EmoticForImageClassification(config).save_pretrained(folder)
        EmoticImageProcessor(size=config.image_size).save_pretrained(folder)
    return folder


def run(model: Path, url: str, output: Path, detect_every: int, args) -> dict:
    command = [sys.executable, "-m", "emotic.cli", "predict", str(model), url, "--output_dir", str(output),
               "--detect_every", str(detect_every), "--max_latency", str(args.max_latency), "--smoothing_window", "1",
               "--dtype", args.dtype, "--quiet", "--overwrite"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"predict failed: {result.stderr[-2000:]}")
    counts = json.loads((output / "summary.json").read_text())["videos"][Path(url).stem]
    return {"frames": counts["frames"], "dropped": counts["dropped"], "latency_p50": counts.get("latency_p50"),
            "latency_p95": counts.get("latency_p95"), "wall_seconds": round(time.perf_counter() - started, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max_latency", type=float, default=2.0)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--detect_every", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.sizes, args.detect_every = 3.0, ["tiny"], [5]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream = out / "two.ts"
    frames = write_stream(stream, args.seconds)
    rows = []
    for size in args.sizes:
        model = model_folder(out, size)
        for every in args.detect_every:
            server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "live_server.py"), str(stream),
                                       str(args.seconds)], stdout=subprocess.PIPE, text=True)
            try:
                url = f"http://127.0.0.1:{int(server.stdout.readline())}/two.ts"
                result = run(model, url, out / "runs" / f"{size}-every{every}", every, args)
            finally:
                server.kill()
                server.wait()
            kept = result["frames"] - result["dropped"]
            row = {"size": size, "detect_every": every, **result, "sent": frames,
                   "sustained_fps": round(kept / args.seconds, 1), "dropped_fraction": round(result["dropped"] /
                                                                                           max(result["frames"], 1), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [f"# Live: a {FPS} fps 640x360 two-person stream over HTTP ({args.seconds:g} s, {frames} frames)", "",
             f"Machine: {machine()}; `--dtype {args.dtype}`, `--max_latency {args.max_latency:g}`, every face tracked, "
             f"`--smoothing_window 1`.", "",
             "| encoder | --detect_every | frames/s sustained | dropped | latency p50 (s) | latency p95 (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['size']} | {row['detect_every']} | {row['sustained_fps']} | "
                     f"{row['dropped_fraction']:.1%} | {row['latency_p50']} | {row['latency_p95']} |")
    (out / "live.md").write_text("\n".join(lines) + "\n")
    (out / "live.json").write_text(json.dumps({"machine": machine(), "seconds": args.seconds, "fps": FPS,
                                               "rows": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
