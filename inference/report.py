"""The report of `emotic evaluate`: one function per figure, and `report.md` tying them together."""

from pathlib import Path

import numpy as np

from emotic.processing.image_files import open_image
from emotic.tracks import TRACKS


def denormalise(view, processor) -> np.ndarray:
    """A normalised `(3, H, W)` view of `processor` back to an `(H, W, 3)` image in [0, 1]."""
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


def pyplot():
    """matplotlib's pyplot, drawing to files only, its text never read as markup: a video or folder name such as
    `steak_$5_vs_$500` is written as it is, not parsed as mathtext (every figure of emotic is made through here)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path) -> None:
    """Lay out, write as PNG and close."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)


def plot_confusion_matrices(path: Path, metrics: dict, class_names) -> None:
    """Raw and smoothed confusion matrices side by side (colour: share of the true class; numbers: frames)."""
    raw, best = metrics["raw"], metrics["smoothed"]
    window, mode = metrics["smoothing"]["window"], metrics["smoothing"]["mode"]
    figure, axes = pyplot().subplots(1, 2, figsize=(13, 5.5))
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
    save_figure(figure, path)


def plot_per_class_f1(path: Path, metrics: dict, class_names, key: str = "per_class_f1",
                      title: str = "Per-class F1") -> None:
    """F1 of each class (or action unit: `key="per_au_f1"`), raw beside smoothed."""
    raw, best = metrics["raw"], metrics["smoothed"]
    figure, axis = pyplot().subplots(figsize=(9, 4.5))
    positions = np.arange(len(class_names))
    axis.bar(positions - 0.2, [raw[key][name] for name in class_names], 0.4, label="raw")
    axis.bar(positions + 0.2, [best[key][name] for name in class_names], 0.4,
             label=f"smoothed (window {metrics['smoothing']['window']})")
    axis.set_xticks(positions, class_names, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("F1")
    axis.set_title(title)
    axis.legend()
    save_figure(figure, path)


def plot_smoothing(path: Path, metrics: dict, score_name: str = "macro-F1") -> None:
    """The track's score (`metrics["score"]`, macro-F1 for expressions) against the smoothing window, the best one
    marked, the raw score as a line; for valence-arousal also the CCC of each."""
    score = metrics.get("score", "macro_f1")
    raw, best = metrics["raw"], metrics["smoothed"]
    window, mode = metrics["smoothing"]["window"], metrics["smoothing"]["mode"]
    curve = metrics["smoothing"][f"{score}_by_window"]
    windows = [int(w) for w in curve]
    figure, axis = pyplot().subplots(figsize=(7, 4.5))
    axis.plot(windows, list(curve.values()), marker="o", label=f"{mode} smoothing")
    for name in ("ccc_valence", "ccc_arousal"):
        if name in (metrics["smoothing"].get("components") or {}):
            axis.plot(windows, metrics["smoothing"]["components"][name], marker=".", linestyle=":",
                      label=name.replace("ccc_", "CCC "))
    axis.scatter([window], [best[score]], s=160, marker="*", color="crimson", zorder=3,
                 label=f"best: window {window}, {score_name} {best[score]:.3f}")
    axis.axhline(raw[score], linestyle="--", color="grey", label=f"raw {raw[score]:.3f}")
    axis.set_xlabel("window (frames)")
    axis.set_ylabel(score_name)
    axis.set_title(f"{score_name[0].upper()}{score_name[1:]} against smoothing window")
    axis.legend()
    save_figure(figure, path)


def plot_valence_arousal(path: Path, predicted, annotated, window: int) -> None:
    """Predicted against annotated valence and arousal (annotated frames), one panel each, with their CCC."""
    from emotic.training.metrics import valence_arousal_metrics

    scores = valence_arousal_metrics(predicted, annotated)
    figure, axes = pyplot().subplots(1, 2, figsize=(10, 4.8))
    for column, (axis, name) in enumerate(zip(axes, ("valence", "arousal"))):
        keep = np.isfinite(annotated[:, column]) & (annotated[:, column] != -5)
        axis.scatter(annotated[keep, column], predicted[keep, column], s=6, alpha=0.4)
        axis.plot([-1, 1], [-1, 1], linestyle="--", color="grey", label="prediction = annotation")
        axis.set_xlim(-1.05, 1.05)
        axis.set_ylim(-1.05, 1.05)
        axis.set_aspect("equal")
        axis.set_xlabel(f"annotated {name}")
        axis.set_ylabel(f"predicted {name}" + (f" (smoothed, window {window})" if window > 1 else ""))
        axis.set_title(f"{name}: CCC {scores[f'ccc_{name}']:.3f} over {int(keep.sum())} frames")
        axis.legend(loc="upper left")
    save_figure(figure, path)


def plot_examples(path: Path, examples, processor, geometry, model) -> None:
    """Each example frame (path, true label, predicted label) beside its auxiliary view and, for a model whose
    fusion block attends, where the main view's queries looked in that view."""
    views = processor([open_image(image) for image, _, _ in examples], return_tensors="pt", geometry=geometry)
    maps = fusion_maps(model, views)
    columns = 2 if maps is None else 3
    figure, axes = pyplot().subplots(len(examples), columns, figsize=(2.5 * columns, 2.4 * len(examples)),
                                     squeeze=False)
    for row, ((image, truth, predicted), main, aux) in enumerate(zip(examples, views["pixel_values"].numpy(),
                                                                     views["pixel_values_aux"].numpy())):
        axes[row, 0].imshow(denormalise(main, processor))
        axes[row, 1].imshow(denormalise(aux, processor))
        name = image if isinstance(image, (str, Path)) else (image or {}).get("path") or f"image {row + 1}"
        axes[row, 0].set_title(f"{Path(name).parent.name}/{Path(name).name}", fontsize=8)
        axes[row, 1].set_title(f"true {truth} | predicted {predicted}", fontsize=8,
                               color="black" if truth == predicted else "crimson")
        if maps is not None:  # where the fusion block's main queries looked in the auxiliary view
            height, width = aux.shape[-2:]
            axes[row, 2].imshow(denormalise(aux, processor))
            axes[row, 2].imshow(maps[row], cmap="inferno", alpha=0.55, interpolation="bilinear",
                                extent=(-0.5, width - 0.5, height - 0.5, -0.5))
            axes[row, 2].set_title("fusion attention", fontsize=8)
        for axis in axes[row]:
            axis.axis("off")
    figure.suptitle("Main view | auxiliary view" + (" | fusion attention over it" if maps is not None else ""),
                    fontsize=10)
    save_figure(figure, path)


AFFECT_FIGURES = {
    "smoothing.png": ("Smoothing", "The score against the smoothing window (best marked). The window was chosen on "
                                   "the data evaluated here: choose it on a validation split, apply it to a test "
                                   "split."),
    "per_au_f1.png": ("Per-action-unit F1", "F1 of each action unit at the model's thresholds (0.5 unless "
                                             "`label_thresholds` are stored), raw beside smoothed."),
    "per_class_f1.png": ("Per-expression F1", "F1 of each expression, raw beside smoothed."),
    "va_scatter.png": ("Valence and arousal", "Predicted (smoothed at the best window) against annotated values of "
                                              "the annotated frames."),
}


def write_affect_report_md(path: Path, metrics: dict, model_name: str, figures) -> None:
    """`report.md` of an action-unit, valence-arousal or multi-task evaluation: the scores raw and smoothed, the
    smoothing sweep, per-unit F1 where there are units, the counts and the figures."""
    raw, best, smoothing, counts = metrics["raw"], metrics["smoothed"], metrics["smoothing"], metrics["counts"]
    score = metrics["score"]
    keys = TRACKS[metrics["track"]].report_scores
    units = raw.get("per_au_f1") or (raw.get("au") or {}).get("per_au_f1")
    best_units = best.get("per_au_f1") or (best.get("au") or {}).get("per_au_f1")
    lines = [
        f"# Evaluation of `{model_name}` ({metrics['track'].upper()} track)", "",
        f"Dataset: `{metrics['dataset']}` ({metrics['split']}, {counts['videos']} videos), {counts['frames']} "
        f"annotated frames; each score is over the frames annotated for it.", "",
        f"| | {' | '.join(keys)} |", f"| --- |{' --- |' * len(keys)}",
        f"| raw (per frame) | {' | '.join(f'{raw[k]:.4f}' for k in keys)} |",
        f"| smoothed ({smoothing['mode']}, window {smoothing['window']}) | "
        f"{' | '.join(f'{best[k]:.4f}' for k in keys)} |", "",
        f"`{score}` for each window: " + ", ".join(f"{w}: {v:.4f}" for w, v in smoothing[f"{score}_by_window"].items())
        + ".", "",
        *_reliable_lines(metrics, score),
    ]
    if units:
        lines += ["| action unit | F1 raw | F1 smoothed |", "| --- | --- | --- |",
                  *[f"| {name} | {value:.4f} | {best_units[name]:.4f} |" for name, value in units.items()], ""]
    lines += [f"Frames without an image: {counts['missing_images']}; without a detected face: {counts['no_face']}; "
              f"unreadable: {counts['unreadable']}. Each carried the prediction of the nearest earlier frame with a "
              f"face and is scored, as in the ABAW challenge.", ""]
    for figure in figures:
        title, text = AFFECT_FIGURES[figure]
        lines += [f"## {title}", "", text, "", f"![{title}]({figure})", ""]
    lines += ["Files: `metrics.json` holds every number above.", ""]
    path.write_text("\n".join(lines))


def _reliable_lines(metrics: dict, score_name: str) -> list[str]:
    text = reliable_text(metrics, score_name)
    if not text:
        return []
    from emotic.inference.tracking import MAX_PITCH, MAX_YAW, MIN_FACE_SIZE

    return [f"Reliable frames (a face the detector finds, at least {MIN_FACE_SIZE} pixels, turned at most "
            f"{MAX_YAW:g}° yaw and {MAX_PITCH:g}° pitch, sharp): {text}.", ""]


def reliable_text(metrics: dict, score_name: str) -> str | None:
    """The score on reliable frames in words, or why it was not computed; None for a metrics record without it."""
    record = metrics.get("reliable")
    if not record:
        return None
    if not record["computed"]:
        return f"score on reliable frames not computed: {record['why']}"
    if record["raw"] is None:
        return f"none of the {record['of_frames']} frames has a reliable face"
    score = metrics["score"]
    return (f"on the {record['frames']} of {record['of_frames']} frames with a reliable face: {score_name} raw "
            f"{record['raw'][score]:.4f}, smoothed {record['smoothed'][score]:.4f}")


def write_report_md(path: Path, metrics: dict, model_name: str, dataset: str, class_names) -> None:
    """`report.md`: the scores, the counts of what was filled or skipped, and the figures."""
    raw, best = metrics["raw"], metrics["smoothed"]
    smoothing, counts = metrics["smoothing"], metrics["counts"]
    videos = f", {counts['videos']} videos" if counts["videos"] else ""
    if not counts["videos"]:  # images, each on its own
        smoothing_text = ["Images are scored one by one: there is nothing to smooth.", ""]
    else:
        smoothing_text = [
            f"Macro-F1 for each window of {smoothing['mode']} smoothing: "
            + ", ".join(f"{w}: {f:.4f}" for w, f in smoothing["macro_f1_by_window"].items())
            + f". Best: window {smoothing['window']}. The window was chosen on the data evaluated here, so the "
              "smoothed score is optimistic for this data; choose the window on a validation split and apply it to "
              "a test split.", "", "![macro-F1 against window](smoothing.png)", ""]
    lines = [
        f"# Evaluation of `{model_name}`", "",
        f"Dataset: `{dataset}` ({metrics['split']}{videos}), {raw['num_frames']} labelled frames scored.", "",
        "| | macro-F1 | accuracy |", "| --- | --- | --- |",
        f"| raw (per frame) | {raw['macro_f1']:.4f} | {raw['accuracy']:.4f} |",
        f"| smoothed ({smoothing['mode']}, window {smoothing['window']}) | {best['macro_f1']:.4f} | "
        f"{best['accuracy']:.4f} |", "",
        *_reliable_lines(metrics, "macro-F1"),
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
    path.write_text("\n".join(lines))


def plot_tracks(path: Path, csv_path: Path, labels, tracks: list[dict]) -> None:
    """`tracks_figure` written to `path`."""
    save_figure(tracks_figure(csv_path, labels, tracks), path)


def tracks_figure(csv_path: Path, labels, tracks: list[dict]):
    """One timeline per person of a tracked video (`emotic predict --faces all`): each track's smoothed expression
    label over time (seconds, or frames where the rate is not known), hollow where the face is not `reliable`, from
    its per-frame CSV; `tracks` the video's records (their names label the rows)."""
    import csv

    plt = pyplot()
    rows = {str(track["track"]): ([], [], []) for track in tracks}
    timed = True
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["track"] in rows:
                timed = timed and row["time"] != ""
                when = float(row["time"]) if row["time"] else float(row["frame"])
                for values, value in zip(rows[row["track"]], (when, int(row["label"]), row["reliable"] == "1")):
                    values.append(value)
    figure, axes = plt.subplots(max(len(tracks), 1), 1, figsize=(9, 1.6 * max(len(tracks), 1) + 0.6), sharex=True,
                                squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, track in zip(axes[:, 0], tracks):
        when, label, reliable = (np.asarray(values) for values in rows[str(track["track"])])
        if len(when):
            colour = colours(label % 10)  # (points, 4) RGBA
            axis.scatter(when[reliable], label[reliable], c=colour[reliable], s=12)
            axis.scatter(when[~reliable], label[~reliable], facecolors="none", edgecolors=colour[~reliable], s=12)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_ylim(-0.5, len(labels) - 0.5)
        axis.set_ylabel(f"person {track['name']}", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)" if timed else "frame")
    figure.suptitle(f"{csv_path.stem}: smoothed expression per person (hollow: not reliable)", fontsize=9)
    figure.tight_layout()
    return figure
