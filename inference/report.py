"""The report of `emotic evaluate`: one function per figure, and `report.md` tying them together."""

from pathlib import Path

import numpy as np

from emotic.training.transforms import open_image


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
    """matplotlib's pyplot, drawing to files only."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
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


def plot_per_class_f1(path: Path, metrics: dict, class_names) -> None:
    """F1 of each class, raw beside smoothed."""
    raw, best = metrics["raw"], metrics["smoothed"]
    figure, axis = pyplot().subplots(figsize=(9, 4.5))
    positions = np.arange(len(class_names))
    axis.bar(positions - 0.2, [raw["per_class_f1"][name] for name in class_names], 0.4, label="raw")
    axis.bar(positions + 0.2, [best["per_class_f1"][name] for name in class_names], 0.4,
             label=f"smoothed (window {metrics['smoothing']['window']})")
    axis.set_xticks(positions, class_names, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("F1")
    axis.set_title("Per-class F1")
    axis.legend()
    save_figure(figure, path)


def plot_smoothing(path: Path, metrics: dict) -> None:
    """Macro-F1 against the smoothing window, the best one marked, the raw score as a line."""
    raw, best = metrics["raw"], metrics["smoothed"]
    window, mode = metrics["smoothing"]["window"], metrics["smoothing"]["mode"]
    curve = metrics["smoothing"]["macro_f1_by_window"]
    windows = [int(w) for w in curve]
    figure, axis = pyplot().subplots(figsize=(7, 4.5))
    axis.plot(windows, list(curve.values()), marker="o", label=f"{mode} smoothing")
    axis.scatter([window], [best["macro_f1"]], s=160, marker="*", color="crimson", zorder=3,
                 label=f"best: window {window}, macro-F1 {best['macro_f1']:.3f}")
    axis.axhline(raw["macro_f1"], linestyle="--", color="grey", label=f"raw {raw['macro_f1']:.3f}")
    axis.set_xlabel("window (frames)")
    axis.set_ylabel("macro-F1")
    axis.set_title("Macro-F1 against smoothing window")
    axis.legend()
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
