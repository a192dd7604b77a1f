"""What hearing costs: `emotic features` over a video with sound, without and with `--audio_model`, on this machine.

A generated talking video (`emotic synth --audio`'s voice under drawn aligned faces, 25 fps) is run through
`emotic features` with the frame model alone and with a speech encoder too, for the frame model sizes asked for
(`tiny`, `small`, `base`; random weights: speed does not depend on them) and a speech encoder of Wav2Vec2-base's
size (12 layers of width 768: what `facebook/wav2vec2-base`, HuBERT-base and WavLM-base-plus are; random weights) at
the default windows (2 s every 0.5 s). Frames per second of the whole command, start-up included, and the ratio of
the two in the same run.

    python benchmarks/bench_audio.py --output_dir OUT [--seconds 30] [--sizes tiny,base] [--dtype auto]
    python benchmarks/bench_audio.py --output_dir OUT --smoke     # 4 seconds, tiny frame model, a 2-layer encoder

Outputs: `audio.md` (the table, the machine) and `audio.json`.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_live import model_folder  # noqa: E402  (random weights; --geometry template is given to features)
from bench_real_faces import machine  # noqa: E402

FPS = 25


def write_talking_video(path: Path, seconds: float) -> int:
    """Drawn aligned faces moving through expressions, with the generated voice that follows them; its frames."""
    import numpy as np

    from emotic.training.synthetic import AUDIO_RATE, synthetic_video_frames, synthetic_voice, write_video

    rng = np.random.default_rng(0)
    frames = list(synthetic_video_frames(rng, int(seconds * FPS), size=112))
    sound, _ = synthetic_voice(rng, [f.expression for f in frames], [f.intensity for f in frames],
                               [0.3] * len(frames), FPS)
    return write_video(path, [frame.image for frame in frames], fps=FPS, audio=sound, audio_rate=AUDIO_RATE)


def speech_encoder(out: Path, smoke: bool) -> Path:
    """A Wav2Vec2 of base size (or, for --smoke, 2 small layers) with random weights, and its feature extractor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = out / "models" / ("speech-smoke" if smoke else "wav2vec2-base-size")
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                num_conv_pos_embedding_groups=2) if smoke else Wav2Vec2Config()
        Wav2Vec2Model(config).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(folder)
    return folder


def timed_features(model: Path, video: Path, output: Path, dtype: str, audio: Path | None) -> float:
    command = [sys.executable, "-m", "emotic.cli", "features", str(model), str(video), "--output_dir", str(output),
               "--geometry", "template", "--dtype", dtype, "--quiet", "--overwrite"]
    if audio is not None:
        command += ["--audio_model", str(audio)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"features failed:\n{result.stderr[-3000:]}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sizes", default="tiny,base")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds, sizes = (4.0, ["tiny"]) if args.smoke else (args.seconds, args.sizes.split(","))
    video = out / "talking.mp4"
    frames = write_talking_video(video, seconds)
    encoder = speech_encoder(out, args.smoke)
    rows = []
    for size in sizes:
        model = model_folder(out, size)
        alone = timed_features(model, video, out / "runs" / f"{size}-vision", args.dtype, None)
        heard = timed_features(model, video, out / "runs" / f"{size}-audio", args.dtype, encoder)
        rows.append({"frame_model": size, "frames": frames, "vision_fps": round(frames / alone, 2),
                     "audio_fps": round(frames / heard, 2), "ratio": round(alone / heard, 3)})
        print(rows[-1], flush=True)
    described = machine()
    lines = [f"`emotic features` over a {seconds:g}-second {FPS} fps video with sound on {described}, dtype "
             f"{args.dtype}; speech encoder: {encoder.name} (windows of 2 s every 0.5 s). Start-up included.", "",
             "| frame model | frames | frames/s, vision | frames/s, vision + audio | ratio |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['frame_model']} | {row['frames']} | {row['vision_fps']} | {row['audio_fps']} | "
              f"{row['ratio']} |" for row in rows]
    (out / "audio.md").write_text("\n".join(lines) + "\n")
    (out / "audio.json").write_text(json.dumps({"machine": described, "dtype": args.dtype, "rows": rows}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
