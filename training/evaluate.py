"""Evaluate an expression model on a labelled dataset and write a report people can look at.

    emotic evaluate MODEL DATASET --output-dir report [--split Validation_Set] [--write-window]

DATASET is an Aff-Wild2 EXPR root (`annotations/<split>/<video>.txt` and `cropped_aligned/<video>/*.jpg`) or an image
folder with one sub-folder per class. On videos, every labelled frame is scored as in the ABAW challenge: frames
without an image (and frames where no face is found) carry the nearest earlier frame's prediction. Per-frame
probabilities are smoothed over each video with every window of `--windows`; the best window by macro-F1 is
reported beside the raw score and, with `--write-window`, stored in the model folder's config so that
`emotic predict` uses it by default. The window is chosen on the data evaluated here: choose it on a validation
split, then apply it to a test split.

The report folder holds `metrics.json`, `confusion_matrix.png`, `per_class_f1.png`, `smoothing.png` (macro-F1
against window, best marked), `examples.png` (frames beside their auxiliary views, true and predicted labels, and
where the model has one, the fusion block's attention drawn over the auxiliary view) and
`report.md` tying them together.
"""

import json
import sys
from pathlib import Path

import numpy as np

from emotic.cli import command_parser
from emotic.modeling.configuration_emotic import SMOOTHING_MODES
from emotic.training.data import iter_affwild2_videos, read_image_folder
from emotic.training.metrics import expression_metrics
from emotic.training.video import (
    MISSING,
    NO_FACE,
    UNREADABLE,
    FramePredictor,
    load_model,
    predict_sequence,
    smooth_probabilities,
)

DEFAULT_WINDOWS = (1, 3, 5, 9, 15, 21, 31, 45, 61)


def affwild2_videos(root: Path, split: str):
    """(video, labels, frame paths or None where the annotated frame has no image) per annotated video."""
    if not (root / "annotations" / split).is_dir():
        raise ValueError(f"{root}: no annotation folder annotations/{split} (expected an Aff-Wild2 EXPR root)")
    for video, video_dir, labels, present in iter_affwild2_videos(root / "annotations" / split,
                                                                  root / "cropped_aligned"):
        names = [f"{i + 1:05d}.jpg" for i in range(len(labels))]
        yield video, np.array(labels), [video_dir / name if name in present else None for name in names]


def predict_videos(predictor: FramePredictor, videos, show_progress: bool = True, sequential: bool = True):
    """Per-frame probabilities of each video, frames without a usable face filled from their neighbours as in
    `emotic predict` (`sequential=False`: independent images, each keeps its own prediction)."""
    from tqdm.auto import tqdm

    results, counts = [], {"frames": 0, "missing_images": 0, NO_FACE: 0, UNREADABLE: 0}
    for video, labels, paths in tqdm(list(videos), desc="videos", unit="video", disable=not show_progress):
        frames = ((f"{video}/{i + 1:05d}.jpg", path) for i, path in enumerate(paths))
        rows = list(predict_sequence(predictor, frames, window=1, mode="mean", sequential=sequential))
        statuses = [status for _, status, _, _ in rows]
        counts["frames"] += len(rows)
        counts["missing_images"] += statuses.count(MISSING)
        counts[NO_FACE] += statuses.count(NO_FACE)
        counts[UNREADABLE] += statuses.count(UNREADABLE)
        results.append((video, labels, np.stack([filled for _, _, _, filled in rows])))
    return results, counts


def sweep_windows(results, windows, mode: str, num_classes: int, class_names) -> dict:
    """Metrics of the smoothed predictions for each window (labelled frames only)."""
    labels = np.concatenate([video_labels for _, video_labels, _ in results])
    by_window = {}
    for window in windows:
        predictions = np.concatenate([smooth_probabilities(p, window, mode).argmax(1) for _, _, p in results])
        by_window[window] = expression_metrics(predictions, labels, num_classes, class_names)
    return by_window


def _denormalise(view, processor) -> np.ndarray:
    mean, std = np.array(processor.image_mean)[:, None, None], np.array(processor.image_std)[:, None, None]
    return np.clip((np.asarray(view) * std + mean).transpose(1, 2, 0), 0, 1)


def fusion_maps(model, views) -> np.ndarray | None:
    """Per image, the fusion block's attention from the main view's tokens to each auxiliary patch (the model's
    `fusion_attentions`, averaged over heads and queries), as `(images, grid, grid)`; None for a model without one
    (`fusion_strategy` none or mean)."""
    import torch

    if model.config.fusion_strategy not in ("attention", "concat"):
        return None
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # SDPA returns no attention weights
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            outputs = model(pixel_values=views["pixel_values"].to(device),
                            pixel_values_aux=views["pixel_values_aux"].to(device), output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    maps = outputs.fusion_attentions.float().mean(dim=(1, 2))[:, 1:]  # [B, N_aux]: the CLS token left out
    grid = int(round(maps.shape[1] ** 0.5))
    return maps.reshape(-1, grid, grid).cpu().numpy()


def plot_report(output: Path, metrics: dict, class_names, examples, processor, geometry, model):
    """The four PNGs of the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw, best = metrics["raw"], metrics["smoothed"]
    window, mode = metrics["smoothing"]["best_window"], metrics["smoothing"]["mode"]

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for axis, (title, result) in zip(axes, (("raw", raw), (f"smoothed ({mode}, window {window})", best))):
        confusion = np.array(result["confusion_matrix"], dtype=float)
        rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
        axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(confusion):
            axis.text(j, i, int(count), ha="center", va="center", fontsize=8,
                      color="white" if rates[i, j] > 0.6 else "black")
        axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
        axis.set_yticks(range(len(class_names)), class_names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{title}: macro-F1 {result['macro_f1']:.3f}")
    figure.suptitle("Confusion matrix (colour: share of the true class; numbers: frames)")
    figure.tight_layout()
    figure.savefig(output / "confusion_matrix.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(9, 4.5))
    positions = np.arange(len(class_names))
    axis.bar(positions - 0.2, [raw["per_class_f1"][name] for name in class_names], 0.4, label="raw")
    axis.bar(positions + 0.2, [best["per_class_f1"][name] for name in class_names], 0.4,
             label=f"smoothed (window {window})")
    axis.set_xticks(positions, class_names, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("F1")
    axis.set_title("Per-class F1")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output / "per_class_f1.png", dpi=100)
    plt.close(figure)

    curve = metrics["smoothing"]["macro_f1_by_window"]
    windows = [int(w) for w in curve]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(windows, list(curve.values()), marker="o", label=f"{mode} smoothing")
    axis.scatter([window], [best["macro_f1"]], s=160, marker="*", color="crimson", zorder=3,
                 label=f"best: window {window}, macro-F1 {best['macro_f1']:.3f}")
    axis.axhline(raw["macro_f1"], linestyle="--", color="grey", label=f"raw {raw['macro_f1']:.3f}")
    axis.set_xlabel("window (frames)")
    axis.set_ylabel("macro-F1")
    axis.set_title("Macro-F1 against smoothing window")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output / "smoothing.png", dpi=100)
    plt.close(figure)

    if examples:
        views = processor([path for path, _, _ in examples], return_tensors="pt", geometry=geometry)
        maps = fusion_maps(model, views)
        columns = 2 if maps is None else 3
        figure, axes = plt.subplots(len(examples), columns, figsize=(2.5 * columns, 2.4 * len(examples)),
                                    squeeze=False)
        for row, ((path, truth, predicted), main, aux) in enumerate(zip(examples, views["pixel_values"].numpy(),
                                                                         views["pixel_values_aux"].numpy())):
            axes[row, 0].imshow(_denormalise(main, processor))
            axes[row, 1].imshow(_denormalise(aux, processor))
            axes[row, 0].set_title(f"{Path(path).parent.name}/{Path(path).name}", fontsize=8)
            axes[row, 1].set_title(f"true {truth} | predicted {predicted}", fontsize=8,
                                   color="black" if truth == predicted else "crimson")
            if maps is not None:  # where the fusion block's main queries looked in the auxiliary view
                height, width = aux.shape[-2:]
                axes[row, 2].imshow(_denormalise(aux, processor))
                axes[row, 2].imshow(maps[row], cmap="inferno", alpha=0.55, interpolation="bilinear",
                                    extent=(-0.5, width - 0.5, height - 0.5, -0.5))
                axes[row, 2].set_title("fusion attention", fontsize=8)
            for axis in axes[row]:
                axis.axis("off")
        figure.suptitle("Main view | auxiliary view" + (" | fusion attention over it" if maps is not None else ""),
                        fontsize=10)
        figure.tight_layout()
        figure.savefig(output / "examples.png", dpi=100)
        plt.close(figure)


def pick_examples(results, paths_by_video, smoothed_by_video, class_names, count: int):
    """Up to `count` labelled frames with images, one class after another, from the middle of each class's frames."""
    by_class = {}
    for video, labels, _ in results:
        for index, label in enumerate(labels):
            if label >= 0 and paths_by_video[video][index] is not None:
                by_class.setdefault(int(label), []).append((video, index))
    picks = []
    while len(picks) < count and any(by_class.values()):
        for label in sorted(by_class):
            if by_class[label] and len(picks) < count:
                video, index = by_class[label].pop(len(by_class[label]) // 2)
                picks.append((paths_by_video[video][index], class_names[label],
                              class_names[int(smoothed_by_video[video][index])]))
    return picks


def write_report_md(output: Path, metrics: dict, model_name: str, dataset: str, class_names) -> None:
    raw, best = metrics["raw"], metrics["smoothed"]
    smoothing, counts = metrics["smoothing"], metrics["counts"]
    videos = f", {counts['videos']} videos" if counts["videos"] else ""
    if metrics["split"] == "image folder":
        smoothing_text = ["Images are scored one by one: there is nothing to smooth.", ""]
    else:
        smoothing_text = [
            f"Macro-F1 for each window of {smoothing['mode']} smoothing: "
            + ", ".join(f"{w}: {f:.4f}" for w, f in smoothing["macro_f1_by_window"].items())
            + f". Best: window {smoothing['best_window']}. The window was chosen on the data evaluated here, so the "
              "smoothed score is optimistic for this data; choose the window on a validation split and apply it to "
              "a test split.", "", "![macro-F1 against window](smoothing.png)", ""]
    lines = [
        f"# Evaluation of `{model_name}`", "",
        f"Dataset: `{dataset}` ({metrics['split']}{videos}), {raw['num_frames']} labelled frames scored.", "",
        "| | macro-F1 | accuracy |", "| --- | --- | --- |",
        f"| raw (per frame) | {raw['macro_f1']:.4f} | {raw['accuracy']:.4f} |",
        f"| smoothed ({smoothing['mode']}, window {smoothing['best_window']}) | {best['macro_f1']:.4f} | "
        f"{best['accuracy']:.4f} |", "",
        "| class | F1 raw | F1 smoothed |", "| --- | --- | --- |",
        *[f"| {name} | {raw['per_class_f1'][name]:.4f} | {best['per_class_f1'][name]:.4f} |" for name in class_names],
        "",
        f"Frames without an image: {counts['missing_images']}; without a detected face: {counts['no_face']}; "
        f"unreadable: {counts['unreadable']}. Each carried the prediction of the nearest earlier frame with a face "
        f"and is scored, as in the ABAW challenge.", "",
        "## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", "",
        "## Per-class F1", "", "![per-class F1](per_class_f1.png)", "",
        "## Smoothing", "", *smoothing_text,
        "## Examples", "", "Frames beside the auxiliary view the model sees (eyes and mouth regions) and, for a model "
        "with a fusion block that attends (`attention`, `concat`), where its main-view queries looked in that view "
        "(`fusion_attentions`, averaged over heads and queries); red titles are errors of the smoothed prediction.",
        "", "![examples](examples.png)", "",
        "Files: `metrics.json` holds every number above.", "",
    ]
    (output / "report.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = command_parser("emotic evaluate", __doc__)
    parser.add_argument("model", help="an emotic model folder or Hub id")
    parser.add_argument("dataset", help="an Aff-Wild2 EXPR root, or an image folder with one sub-folder per class")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--split", default="Validation_Set", help="annotation sub-folder of an Aff-Wild2 root")
    parser.add_argument("--smooth-mode", choices=SMOOTHING_MODES, default=None,
                        help="default: the model's video_smoothing_mode")
    parser.add_argument("--windows", default=",".join(map(str, DEFAULT_WINDOWS)),
                        help="odd windows to try, comma-separated")
    parser.add_argument("--write-window", action="store_true",
                        help="store the best window and mode in the model folder's config (local folders only)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--geometry", choices=("auto", "detector", "template"), default=None,
                        help="default: the processor's; use template for aligned crops")
    parser.add_argument("--examples", type=int, default=6, help="frames shown in examples.png")
    parser.add_argument("--device", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        windows = sorted({int(w) for w in args.windows.split(",")})
    except ValueError:
        parser.error(f"--windows {args.windows!r}: expected odd integers separated by commas")
    if any(w < 1 or w % 2 == 0 for w in windows):
        parser.error(f"--windows {args.windows!r}: every window must be an odd integer >= 1 (centred)")
    if args.write_window and not Path(args.model).is_dir():
        parser.error(f"--write-window needs a local model folder; {args.model} is not one")
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        parser.error(f"{dataset}: no such folder")

    model, processor = load_model(args.model, args.device)
    mode = args.smooth_mode or model.config.video_smoothing_mode
    class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    try:
        predictor = FramePredictor(model, processor, args.batch_size, args.geometry).quiet()
        if (dataset / "annotations").is_dir():
            videos, split = list(affwild2_videos(dataset, args.split)), args.split
        else:  # an image folder: each image on its own, nothing to smooth
            images, _ = read_image_folder(dataset, model.config.label2id)
            videos = [("images", np.array(list(images["label"])), [Path(path) for path in images["image"]])]
            split, windows = "image folder", [1]
    except ValueError as error:
        parser.error(str(error))
    results, counts = predict_videos(predictor, videos, not args.quiet, sequential=split != "image folder")
    counts["videos"] = len(results) if split != "image folder" else 0
    if counts["missing_images"] + counts[UNREADABLE] == counts["frames"]:
        print(f"emotic evaluate: none of the {counts['frames']} annotated frames of {dataset} ({split}) has a readable "
              f"image ({counts['missing_images']} missing, {counts[UNREADABLE]} unreadable); nothing to score",
              file=sys.stderr)
        return 2

    by_window = sweep_windows(results, windows, mode, model.config.num_labels, class_names)
    best_window = max(windows, key=lambda w: (round(by_window[w]["macro_f1"], 10), -w))  # ties: the smaller
    raw = by_window[1] if 1 in by_window else sweep_windows(results, [1], mode, model.config.num_labels,
                                                            class_names)[1]
    metrics = {
        "model": str(args.model), "dataset": str(dataset.name), "split": split, "counts": counts,
        "raw": raw, "smoothed": by_window[best_window],
        "smoothing": {"mode": mode, "best_window": best_window,
                      "macro_f1_by_window": {str(w): by_window[w]["macro_f1"] for w in windows}},
    }
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))

    paths_by_video = {video: paths for video, _, paths in videos}
    smoothed = {video: smooth_probabilities(p, best_window, mode).argmax(1) for video, _, p in results}
    examples = pick_examples(results, paths_by_video, smoothed, class_names, args.examples)
    plot_report(output, metrics, class_names, examples, processor, args.geometry, model)
    write_report_md(output, metrics, Path(str(args.model)).name, dataset.name, class_names)

    if args.write_window:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(args.model)
        config.video_smoothing_window, config.video_smoothing_mode = best_window, mode
        config.save_pretrained(args.model)
        print(f"wrote video_smoothing_window={best_window}, video_smoothing_mode={mode!r} into {args.model}")
    print(f"macro-F1 raw {raw['macro_f1']:.4f}, smoothed {by_window[best_window]['macro_f1']:.4f} ({mode}, window "
          f"{best_window}); accuracy {raw['accuracy']:.4f} -> {by_window[best_window]['accuracy']:.4f}; "
          f"{raw['num_frames']} labelled frames; report in {output / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
