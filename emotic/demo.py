"""`make demo`: the main job end to end on the embedded default, on a CPU in a few minutes.

Generates a synthetic dataset in Aff-Wild2's layout (frames at Aff-Wild2's 112 px), pre-trains a tiny MAE-Face
encoder on its frames, fine-tunes the dual-view classifier (Fusion Attention) and the `fusion_strategy="none"`
baseline from it, prints their macro-F1 on the held-out videos, evaluates the dual-view model with sliding-window
smoothing (a report with charts), predicts a generated video in the ABAW format, exports a Hub-ready folder with its
model card, and loads the model with `AutoModelForImageClassification` and `pipeline`. The data are drawn faces, a
smoke-scale stand-in: the numbers show the pipeline works, not how a model does on real expressions.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from emotic.commands import command_parser
from emotic.hub_cards.export import export
from emotic.inference import evaluate, predict
from emotic.training import finetune, pretrain
from emotic.training.synthetic import synthetic_video, write_synthetic_affwild2, write_video


def main(argv=None) -> dict:
    parser = command_parser("emotic demo", __doc__)
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = Path(args.output_dir)
    started = time.perf_counter()
    common = ["--disable_tqdm", "true", "--seed", str(args.seed), "--per_device_train_batch_size", "32",
              "--save_total_limit", "1", "--report_to", "none", "--dataloader_num_workers", "1"]

    data = root / "data"
    if not (data / "summary.json").is_file():
        summary = write_synthetic_affwild2(data, args.videos, args.frames, size=112,
                                           validation_videos=max(2, args.videos // 5), seed=args.seed)
        print(f"[demo] generated {summary['frames']} frames of {args.videos} videos in {data} "
              f"({time.perf_counter() - started:.0f} s)")

    print("[demo] MAE pre-training a tiny encoder on the training videos' frames")
    annotations = sorted((data / "annotations" / "Train_Set").glob("*.txt"))
    train_videos = [str(data / "cropped_aligned" / annotation.stem) for annotation in annotations]
    result = pretrain.main(["--face_dirs", *train_videos, "--model_size", "tiny",
                            "--output_dir", str(root / "pretrain"), "--num_train_epochs", str(args.pretrain_epochs),
                            "--learning_rate", "1.5e-3", *common])
    losses = result["losses"]
    print(f"[demo] pre-training loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    scores = {}
    for name, strategy in (("dual-view (attention fusion)", "attention"), ("baseline (fusion none)", "none")):
        print(f"[demo] fine-tuning {name}")
        scores[name] = finetune.main([
            "--affwild2_root", str(data), "--model_name_or_path", str(root / "pretrain"),
            "--fusion_strategy", strategy, "--output_dir", str(root / strategy),
            "--num_train_epochs", str(args.finetune_epochs), "--learning_rate", "2e-3", "--layer_decay", "0.9",
            "--drop_path_rate", "0.0", *common])
    model_dir = root / "attention"

    print("[demo] evaluating the dual-view model on the held-out videos, with sliding-window smoothing")
    evaluate.main([str(model_dir), str(data), "--output_dir", str(root / "report"), "--geometry", "template",
                   "--smoothing_windows", "1,3,5,7,9,15", "--save_smoothing", "--quiet"])
    report = json.loads((root / "report" / "metrics.json").read_text())

    print("[demo] predicting a new generated video (a person not seen in training)")
    clip = root / "clip.mp4"
    frames = [image for image, _, _ in synthetic_video(np.random.default_rng(args.seed + 999), 60, 112)]
    write_video(clip, frames)
    predict.main([str(model_dir), str(clip), "--output_dir", str(root / "predictions"), "--geometry", "template",
                "--quiet", "--overwrite"])

    export(model_dir, root / "export", evaluation=root / "report" / "metrics.json", overwrite=True)
    print(f"[demo] Hub-ready folder with its model card: {root / 'export'} (publish with `emotic push`)")

    from transformers import AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained(model_dir)
    classify = pipeline("image-classification", model=str(model_dir))
    frame = next((data / "cropped_aligned").glob("*/00001.jpg"))
    prediction = classify(str(frame), top_k=1)[0]

    print("\n| model | macro-F1 (held-out videos) | accuracy |\n| --- | --- | --- |")
    for name, metrics in scores.items():
        print(f"| {name} | {metrics['macro_f1']:.3f} | {metrics['accuracy']:.3f} |")
    smoothing = report["smoothing"]
    print(f"| dual-view, ABAW protocol, raw | {report['raw']['macro_f1']:.3f} | {report['raw']['accuracy']:.3f} |")
    print(f"| dual-view, smoothed ({smoothing['mode']}, window {smoothing['window']}) | "
          f"{report['smoothed']['macro_f1']:.3f} | {report['smoothed']['accuracy']:.3f} |")
    print(f"\n[demo] {type(model).__name__} loads from {model_dir}; pipeline on {frame.name}: "
          f"{prediction['label']} ({prediction['score']:.2f})")
    print(f"[demo] report: {root / 'report' / 'report.md'}; video predictions: {root / 'predictions'}")
    print(f"[demo] done in {time.perf_counter() - started:.0f} s. Synthetic drawn faces: not expression data.")
    return {**scores, "report": report}


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
