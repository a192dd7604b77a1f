"""The paper's ablation as one command: fine-tune one model per fusion strategy and fusion layer with the same data,
seed and budget, evaluate each on the held-out split (raw and smoothed), and tabulate.

    emotic ablate DATA --output_dir ablation [--model_name_or_path PRETRAINED]
        [--strategies none,mean,concat,concat_linear,attention] [--fusion_layers 2,4,6] [FINETUNE OPTIONS...]

DATA is an Aff-Wild2 EXPR root (`annotations/Train_Set`, `annotations/Validation_Set`, `cropped_aligned`). Every
option `emotic finetune` takes (`--num_train_epochs`, `--per_device_train_batch_size`, `--learning_rate`, `--seed`,
`--bf16`, ...) is passed to each run unchanged. `none` (the MAE-Face baseline) ignores the fusion layer and runs
once. Each setting trains in its own sub-folder (`none`, `attention-L4`, ...) and counts as finished once its
`ablation_result.json` is written; an interrupted ablation started again with the same command skips the finished
settings and resumes the unfinished one from its last checkpoint. Under `accelerate launch -m emotic.ablate` every
run is distributed like `finetune`; the evaluations run on the main process.

With `--temporal`, the best setting (by per-frame macro-F1) also gets the two-stage recipe's second stage, in
`temporal-<setting>/`: its features of every frame (`emotic features`), a temporal head trained on them (`emotic
finetune-temporal`, with `--temporal_args`) and `emotic evaluate --temporal_model` on the same frames, so that the
table gains a row per temporal setting: the frame model alone, at its best smoothing window, and with the temporal
head. Its `ablation_result.json` marks it finished, as a setting's does. With `--features_args` giving `emotic
features` an audio or text encoder (`"--audio_model ID --audio_dir DATA/videos --text_model ID --transcripts
DATA/transcripts"`, as `emotic synth --audio` writes them), a head is trained for every combination the features
hold, on the same frames: vision, + audio, + text, all; each is evaluated with the same sound and words.

Outputs in `--output_dir`: `ablation.md` (macro-F1 per strategy and fusion layer, raw and smoothed, with the training
cost of each setting, and the temporal rows), `ablation.json` (every number) and `ablation.png` (macro-F1 against
fusion layer per strategy, and the training time of each setting).
"""

import json
import os
import shlex
import sys
from pathlib import Path
from typing import get_args

from emotic.commands import command_parser
from emotic.inference import evaluate
from emotic.inference.report import pyplot, save_figure
from emotic.modeling.configuration_emotic import FusionStrategy
from emotic.processing.image_processing_emotic import GEOMETRIES
from emotic.training import finetune
from emotic.training.synthetic import is_generated
from emotic.training.trainer import finish_distributed

RESULT = "ablation_result.json"  # written last in a setting's folder: the setting is finished


def settings(strategies, fusion_layers) -> list[tuple[str, int | None]]:
    """(strategy, fusion layer) pairs in table order; `none` once, without a layer."""
    return [(strategy, None) for strategy in strategies if strategy == "none"] + [
        (strategy, layer) for strategy in strategies if strategy != "none" for layer in fusion_layers]


def setting_name(strategy: str, layer: int | None) -> str:
    return strategy if layer is None else f"{strategy}-L{layer}"


def forward_gflops(model_dir: Path) -> float:
    """Floating-point operations of one forward pass on one image (both views), counted by torch, in GFLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    size = model.config.image_size
    views = {"pixel_values": torch.zeros(1, 3, size, size), "pixel_values_aux": torch.zeros(1, 3, size, size)}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**views)
    return counter.get_total_flops() / 1e9


def run_setting(data: Path, folder: Path, strategy: str, layer: int | None, args, finetune_args: list) -> dict:
    """Fine-tune (resuming from the last checkpoint if there is one), then evaluate on the main process."""
    from accelerate import PartialState

    command = ["--affwild2_root", str(data), "--output_dir", str(folder), "--fusion_strategy", strategy,
               *(["--fusion_layer", str(layer)] if layer is not None else []),
               *(["--model_name_or_path", args.model_name_or_path] if args.model_name_or_path else []),
               "--geometry", args.geometry, *finetune_args]
    finetune.train(command)
    state = PartialState()
    if state.is_main_process:
        report = folder / "report"
        code = evaluate.main([str(folder), str(data), "--output_dir", str(report), "--geometry", args.geometry,
                              "--smoothing_windows", args.smoothing_windows, "--quiet"])
        if code != 0:
            raise RuntimeError(f"emotic evaluate of {folder} failed (exit status {code})")
        metrics = json.loads((report / "metrics.json").read_text())
        train = json.loads((folder / "train_results.json").read_text())
        result = {
            "setting": folder.name, "fusion_strategy": strategy, "fusion_layer": layer,
            "macro_f1": metrics["raw"]["macro_f1"], "accuracy": metrics["raw"]["accuracy"],
            "smoothed_macro_f1": metrics["smoothed"]["macro_f1"], "smoothing_window": metrics["smoothing"]["window"],
            "smoothing_mode": metrics["smoothing"]["mode"], "num_frames": metrics["raw"]["num_frames"],
            "train_runtime_s": round(train["train_runtime"], 1), "forward_gflops": round(forward_gflops(folder), 4),
        }
        partial = folder / f"{RESULT}.partial"
        partial.write_text(json.dumps(result, indent=2))
        os.replace(partial, folder / RESULT)  # atomically: the setting is finished
    state.wait_for_everyone()
    return json.loads((folder / RESULT).read_text())


def run_temporal(data: Path, folder: Path, best: dict, args) -> dict:
    """The second stage on the best setting's model: its features, a temporal head, and the evaluation of both on
    the held-out split (resuming each step: features per video, the head from its checkpoints)."""
    from accelerate import PartialState

    from emotic.inference import features
    from emotic.training import temporal

    frame_model = folder.parent / best["setting"]
    features_args = shlex.split(args.features_args)
    code = features.main([str(frame_model), str(data / "cropped_aligned"), "--output_dir", str(folder / "features"),
                          "--geometry", args.geometry, "--quiet", *features_args])
    if code != 0:
        raise RuntimeError(f"emotic features of {frame_model} did not finish every video (exit status {code})")
    held = held_modalities(folder / "features")
    combinations = [("vision",)] + [("vision", name) for name in held] + ([("vision", *held)] if len(held) > 1 else [])
    # evaluate finds each head's encoders, and frame folders' sound and words, where features did
    given = {option: features_args[features_args.index(option) + 1] for option in
             ("--audio_model", "--audio_dir", "--text_model", "--transcripts", "--asr_model")
             if option in features_args[:-1]}
    needs = {"audio": ("--audio_model", "--audio_dir"), "text": ("--text_model", "--transcripts", "--asr_model",
                                                                  "--audio_dir")}
    for combination in combinations:
        temporal.train(["--features_dir", str(folder / "features"), "--affwild2_root", str(data), "--output_dir",
                        str(folder / head_name(combination)), "--modalities", ",".join(combination),
                        *shlex.split(args.temporal_args)])
    state = PartialState()
    if state.is_main_process:
        scores = {}
        for combination in combinations:
            head, report = folder / head_name(combination), folder / report_name(combination)
            options = dict.fromkeys(option for name in combination[1:] for option in needs[name] if option in given)
            taken = [item for option in options for item in (option, given[option])]
            code = evaluate.main([str(frame_model), str(data), "--temporal_model", str(head), "--output_dir",
                                  str(report), "--geometry", args.geometry, "--smoothing_windows",
                                  args.smoothing_windows, "--quiet", *taken])
            if code != 0:
                raise RuntimeError(f"emotic evaluate of {head} failed (exit status {code})")
            scores[" + ".join(combination)] = json.loads((report / "metrics.json").read_text())
        metrics = scores["vision"]
        result = {"setting": best["setting"], "frame_macro_f1": best["macro_f1"],
                  "frame_smoothed_macro_f1": best["smoothed_macro_f1"],
                  "frame_smoothing_window": best["smoothing_window"],
                  "temporal_macro_f1": metrics["raw"]["macro_f1"],
                  "temporal_smoothed_macro_f1": metrics["smoothed"]["macro_f1"],
                  "temporal_smoothing_window": metrics["smoothing"]["window"], "temporal_args": args.temporal_args,
                  "features_args": args.features_args,
                  "modalities": {name: score["raw"]["macro_f1"] for name, score in scores.items()}}
        partial = folder / f"{RESULT}.partial"
        partial.write_text(json.dumps(result, indent=2))
        os.replace(partial, folder / RESULT)
    state.wait_for_everyone()
    return json.loads((folder / RESULT).read_text())


def held_modalities(features_dir: Path) -> list[str]:
    """The modalities besides vision that `emotic features` stored in `features_dir` (its Parquet's columns)."""
    import pyarrow.parquet as pq

    from emotic.training.frame_features import MODALITIES

    files = sorted((features_dir / "features").glob("*.parquet"))
    names = pq.read_schema(files[0]).names if files else []
    return [name for name in MODALITIES if name in names]


def head_name(combination) -> str:
    """`head` (vision only, as before modalities), `head-audio`, `head-text`, `head-audio-text`."""
    return "-".join(["head", *combination[1:]])


def report_name(combination) -> str:
    return "-".join(["report", *combination[1:]])


def write_table(path: Path, rows: list, fusion_layers, title: str, synthetic: bool, temporal: dict | None = None):
    """`ablation.md`: macro-F1 per strategy (rows) and fusion layer (columns), raw / smoothed, then the costs."""
    by_key = {(row["fusion_strategy"], row["fusion_layer"]): row for row in rows}
    strategies = list(dict.fromkeys(row["fusion_strategy"] for row in rows))
    lines = [f"# Fusion ablation: {title}", ""]
    if synthetic:
        lines += ["> Generated faces (`emotic synth`): these numbers show the ablation runs, not how the strategies "
                  "compare on real expressions.", ""]
    lines += ["Macro-F1 on the held-out split, per frame (raw) / smoothed over each video (best window of the "
              "sweep, chosen on this split):", "",
              "| fusion strategy | " + " | ".join(f"fusion layer {layer}" for layer in fusion_layers) + " |",
              "| --- |" + " --- |" * len(fusion_layers)]
    for strategy in strategies:
        cells = []
        for layer in fusion_layers:
            row = by_key.get((strategy, None if strategy == "none" else layer))
            cells.append(f"{row['macro_f1']:.3f} / {row['smoothed_macro_f1']:.3f}" if row else "")
        name = "`none` (the baseline: no fusion, one run)" if strategy == "none" else f"`{strategy}`"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| setting | macro-F1 | smoothed (window) | accuracy | training time | forward GFLOPs / image |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| `{row['setting']}` | {row['macro_f1']:.4f} | {row['smoothed_macro_f1']:.4f} "
                     f"({row['smoothing_window']}) | {row['accuracy']:.4f} | {row['train_runtime_s']:.1f} s | "
                     f"{row['forward_gflops']:.3f} |")
    if temporal:
        lines += ["", f"Temporal settings of the best setting, `{temporal['setting']}` (macro-F1 on the same held-out "
                      f"frames):", "", "| temporal setting | macro-F1 |", "| --- | --- |",
                  f"| none (per frame) | {temporal['frame_macro_f1']:.4f} |",
                  f"| best smoothing window ({temporal['frame_smoothing_window']}) | "
                  f"{temporal['frame_smoothed_macro_f1']:.4f} |",
                  f"| temporal head | {temporal['temporal_macro_f1']:.4f} |"]
        lines += [f"| temporal head, {name} | {score:.4f} |" for name, score in temporal.get("modalities", {}).items()
                  if name != "vision"]
    lines += ["", "![macro-F1 against fusion layer](ablation.png)", ""]
    path.write_text("\n".join(lines))


def plot_ablation(path: Path, rows: list, fusion_layers) -> None:
    """Macro-F1 against fusion layer per strategy (the baseline as a line), and each setting's training time."""
    figure, (left, right) = pyplot().subplots(1, 2, figsize=(12, 4.5))
    for strategy in dict.fromkeys(row["fusion_strategy"] for row in rows):
        points = [row for row in rows if row["fusion_strategy"] == strategy]
        if strategy == "none":
            left.axhline(points[0]["macro_f1"], linestyle="--", color="grey", label="none (baseline)")
        else:
            left.plot([row["fusion_layer"] for row in points], [row["macro_f1"] for row in points], marker="o",
                      label=strategy)
    left.set_xticks(list(fusion_layers))
    left.set_xlabel("fusion layer (blocks both views run before fusion)")
    left.set_ylabel("macro-F1 (held-out, per frame)")
    left.set_title("Macro-F1 per fusion strategy and layer")
    left.legend()
    right.barh([row["setting"] for row in rows], [row["train_runtime_s"] for row in rows], color="steelblue")
    right.invert_yaxis()
    right.set_xlabel("training time (s)")
    right.set_title("Training cost of each setting")
    save_figure(figure, path)


def parse_list(text: str, what: str, convert=str) -> list:
    values = [item.strip() for item in text.split(",") if item.strip()]
    if not values:
        raise ValueError(f"{what}: give at least one value, comma-separated")
    try:
        return [convert(value) for value in values]
    except ValueError:
        raise ValueError(f"{what}={text!r}: expected comma-separated integers") from None


def main(argv=None) -> int:
    parser = command_parser("emotic ablate", __doc__)
    parser.allow_abbrev = False  # unknown options go to finetune whole: `--fusion_layer` must not pass as ours
    parser.add_argument("data", metavar="DATA", help="an Aff-Wild2 EXPR root")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--model_name_or_path", default=None, help="the pre-trained encoder every setting starts from")
    parser.add_argument("--strategies", default=",".join(get_args(FusionStrategy)),
                        help="fusion strategies, comma-separated")
    parser.add_argument("--fusion_layers", default="4", help="fusion layers, comma-separated")
    parser.add_argument("--geometry", choices=GEOMETRIES, default="template",
                        help="face geometry of the frames in training and evaluation (template: aligned crops)")
    parser.add_argument("--smoothing_windows", default="1,3,5,9,15,21,31", help="windows the evaluations try")
    parser.add_argument("--temporal", action="store_true",
                        help="also train and evaluate a temporal head on the best setting's features")
    parser.add_argument("--temporal_args", default="",
                        help="options for `emotic finetune-temporal`, in one string: \"--num_train_epochs 20 ...\"")
    parser.add_argument("--features_args", default="",
                        help="options for `emotic features` with --temporal, in one string: \"--audio_model ID "
                             "--audio_dir DATA/videos --text_model ID --transcripts DATA/transcripts\" adds the heads "
                             "that hear and read")
    args, finetune_args = parser.parse_known_args(argv)
    data, output = Path(args.data), Path(args.output_dir)
    try:
        strategies = parse_list(args.strategies, "--strategies")
        unknown = [s for s in strategies if s not in get_args(FusionStrategy)]
        if unknown:
            raise ValueError(f"--strategies: {unknown} unknown; allowed: {list(get_args(FusionStrategy))}")
        fusion_layers = sorted(set(parse_list(args.fusion_layers, "--fusion_layers", int)))
        if not (data / "annotations" / "Train_Set").is_dir() or not (data / "annotations" / "Validation_Set").is_dir():
            raise ValueError(f"{data}: expected an Aff-Wild2 EXPR root with annotations/Train_Set and "
                             f"annotations/Validation_Set")
        shlex.split(args.temporal_args)
        shlex.split(args.features_args)
    except ValueError as error:
        parser.error(str(error))
    for option in ("--output_dir", "--output-dir", "--fusion_strategy", "--fusion-strategy", "--fusion_layer",
                   "--fusion-layer", "--affwild2_root", "--affwild2-root"):
        if option in finetune_args:
            parser.error(f"{option} is set by emotic ablate for each setting; leave it out")

    from accelerate import PartialState

    main_process = PartialState().is_main_process

    def say(message: str) -> None:  # under `accelerate launch`, one process reports
        if main_process:
            print(f"[ablate] {message}", flush=True)

    rows = []
    for strategy, layer in settings(strategies, fusion_layers):
        folder = output / setting_name(strategy, layer)
        if (folder / RESULT).is_file():
            rows.append(json.loads((folder / RESULT).read_text()))
            say(f"{folder.name}: finished earlier, kept")
            continue
        say(f"{folder.name}: fine-tuning")
        rows.append(run_setting(data, folder, strategy, layer, args, finetune_args))
        say(f"{folder.name}: macro-F1 {rows[-1]['macro_f1']:.4f} (smoothed {rows[-1]['smoothed_macro_f1']:.4f}), "
            f"{rows[-1]['train_runtime_s']:.0f} s")

    temporal = None
    if args.temporal:
        best = max(rows, key=lambda row: row["macro_f1"])
        folder = output / f"temporal-{best['setting']}"
        if (folder / RESULT).is_file():
            temporal = json.loads((folder / RESULT).read_text())
            say("temporal: finished earlier, kept")
        else:
            say(f"temporal: features of {best['setting']}, a temporal head, its evaluation")
            temporal = run_temporal(data, folder, best, args)
            say(f"temporal: macro-F1 {temporal['temporal_macro_f1']:.4f} against {best['macro_f1']:.4f} per frame "
                f"and {best['smoothed_macro_f1']:.4f} smoothed")

    if main_process:
        title = f"`{data.name}`, starting from `{Path(args.model_name_or_path).name}`" if args.model_name_or_path \
            else f"`{data.name}`"
        synthetic = is_generated(data)
        (output / "ablation.json").write_text(json.dumps(
            {"data": data.name, "synthetic": synthetic, "model_name_or_path": args.model_name_or_path,
             "finetune_options": finetune_args, "settings": rows, "temporal": temporal}, indent=2))
        write_table(output / "ablation.md", rows, fusion_layers, title, synthetic, temporal)
        plot_ablation(output / "ablation.png", rows, fusion_layers)
        print((output / "ablation.md").read_text())
    finish_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
