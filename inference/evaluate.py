"""Evaluate a model on a labelled dataset for its ABAW track and write a report people can look at.

    emotic evaluate MODEL DATASET --output_dir report [--split Validation_Set] [--save_smoothing]

For an expression model, DATASET is an Aff-Wild2 EXPR root (`EXPR_Recognition_Challenge/<split>/<video>.txt`,
ABAW5's `EXPR_Classification_Challenge/` or `emotic synth`'s `annotations/`, and `cropped_aligned/<video>/*.jpg`),
an image folder with one sub-folder per class, or a `datasets` dataset (a Hub id or a folder `datasets.load_dataset`
reads; labels matched to the model's by name: see `--label_set`, `--label_map`). An action-unit or valence-arousal
model is scored on an Aff-Wild2 root's `AU_Detection_Challenge/<split>` or `VA_Estimation_Challenge/<split>`, a
multi-task model on ABAW7's `training_set_annotations.txt` / `validation_set_annotations.txt` beside
`cropped_aligned` (`--split Train_Set` or `Validation_Set`; each video's listed frames in order). On videos, every
labelled frame is scored as in the ABAW challenge: frames without an image (and frames where no face is found) carry
the nearest earlier frame's prediction. Per-frame outputs (probabilities, or valence and arousal) are smoothed over
each video with every window of `--smoothing_windows`; the best window by the track's score (macro-F1, mean AU F1,
mean CCC, or P_VA + P_EXPR + P_AU) is reported beside the raw score and, with `--save_smoothing`, stored in the model
folder's config so that `emotic predict` uses it by default. The window is chosen on the data evaluated here:
choose it on a validation split, then apply it to a test split. With `--videos_dir VIDEOS` the annotations are
scored against raw videos (`VIDEOS/<video>.mp4`), every face tracked: `<video>_left` / `<video>_right` are the
people of those `--subjects` names, `<video>` the person seen most (`tracked_videos`). Beside every score, the score
on the frames whose face is reliable (`emotic.inference.tracking.Quality`; `--no_reliability` skips it). With
`--temporal_model TEMPORAL` (a temporal head from `emotic finetune-temporal` over MODEL's features) the head's outputs
are scored instead, on the same frames, and `--save_smoothing` writes into its folder.

The report folder holds `metrics.json`, `smoothing.png` (the score against window, best marked) and `report.md`
tying the figures together; per track: `confusion_matrix.png`, `per_class_f1.png` and `examples.png` (frames beside
their auxiliary views, true and predicted labels, and where the model has one, the fusion block's attention drawn
over the auxiliary view) for expressions; `per_au_f1.png` for action units; `va_scatter.png` (predicted against
annotated valence and arousal) for valence-arousal; all of `per_class_f1.png`, `per_au_f1.png` and `va_scatter.png`
for a multi-task model.

Every frame is run through the one loop of `emotic predict` (`emotic.inference.stream`): the largest face of each
frame, or with `--videos_dir` every face tracked.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotic.inference.arguments import (
    MODEL_HELP,
    HeadInputsArguments,
    CommandParser,
    FramesArguments,
    PrecisionArguments,
    ProgressArguments,
    TrackerArguments,
    check_number,
)
from emotic.inference.faces import OneFace, TrackedFaces, frame_reliability
from emotic.inference.report import (
    plot_confusion_matrices,
    plot_examples,
    plot_per_class_f1,
    plot_smoothing,
    plot_valence_arousal,
    reliable_text,
    write_affect_report_md,
    write_report_md,
)
from emotic.inference.results import MISSING, NO_FACE, UNREADABLE
from emotic.inference.runtime import Runtime
from emotic.inference.smoothing import NeighbourFill, smooth_probabilities
from emotic.inference.sources import VIDEO_EXTENSIONS, Frames, Source, open_frames
from emotic.inference.stream import stream
from emotic.inference.transcripts import TranscriptRefused
from emotic.inference.writers import track_records
from emotic.modeling.configuration_emotic import SmoothingMode, check_smoothing_window
from emotic.modeling.heads_emotic import head_parts
from emotic.processing.image_files import IMAGE_EXTENSIONS
from emotic.tracks import EXPRESSION, OUTPUTS, TRACKS, track_of
from emotic.training.affwild2 import (
    affwild2_annotations,
    annotations_by_video,
    iter_affwild2_videos,
    read_multitask_annotations,
)
from emotic.training.image_datasets import dataset_label, read_dataset, read_image_folder
from emotic.training.labels import LabelSet, read_label_map
from emotic.training.metrics import track_metrics
from emotic.training.synthetic import is_generated

SMOOTHING_WINDOWS = (1, 3, 5, 9, 15, 21, 31, 45, 61)  # tried by default


@dataclass
class EvaluateArguments:
    output_dir: str = field(metadata={"help": "the report's folder"})
    split: str | None = field(default=None, metadata={
        "help": "the annotation sub-folder of an Aff-Wild2 root (default Validation_Set), or the split of a "
                "`datasets` dataset (default validation)"})
    dataset_config_name: str | None = None
    image_column: str = "image"
    label_column: str = "label"
    label_set: LabelSet | None = field(default=None, metadata={"help": "the label set of bare-number labels"})
    label_map: str | None = field(default=None, metadata={
        "help": "JSON (or a JSON file) from dataset labels to model labels"})
    drop_unmapped_labels: bool = field(default=False, metadata={
        "help": "drop (and count) images of classes the model has no label for"})
    smoothing_mode: SmoothingMode | None = field(default=None, metadata={"help": "default: the model's smoothing_mode"})
    smoothing_windows: str = field(default=",".join(map(str, SMOOTHING_WINDOWS)), metadata={
        "help": "odd smoothing windows to try, comma-separated"})
    save_smoothing: bool = field(default=False, metadata={
        "help": "store the best smoothing window and mode in the model folder's config (a local folder)"})
    temporal_model: str | None = field(default=None, metadata={
        "metavar": "TEMPORAL",
        "help": "score a temporal head (`emotic finetune-temporal`) over MODEL's features instead of MODEL alone, on "
                "the same frames (Aff-Wild2 videos)"})
    videos_dir: str | None = field(default=None, metadata={
        "metavar": "DIR",
        "help": "score raw videos (DIR/<video>.mp4, ...) instead of the root's cropped_aligned frames: every face "
                "tracked, each annotated <video>_<subject> the person of that --subjects name, an annotated <video> "
                "the person seen most"})
    subjects: str = field(default="left,right", metadata={
        "help": "with --videos_dir: the names of a video's people by where they first appear, left to right "
                "(Aff-Wild2: left,right)"})
    no_reliability: bool = field(default=False, metadata={
        "help": "skip the score on reliable frames (it runs the face detector on every frame to judge each face's "
                "size, pose and sharpness)"})
    examples: int = field(default=6, metadata={"help": "frames shown in examples.png"})

    def check(self) -> None:
        check_number("--examples", self.examples, 0, 1000, integer=True)


def is_class_folder(root: Path) -> bool:
    """Whether `root` is a local folder of class folders holding images (`root/<class>/*.jpg`)."""
    return root.is_dir() and any(child.is_dir() and any(entry.suffix.lower() in IMAGE_EXTENSIONS
                                                        for entry in child.iterdir()) for child in root.iterdir())


def affwild2_videos(root: Path, split: str, track: str = EXPRESSION):
    """(video, labels, frame paths or None where the annotated frame has no image) per annotated video of the
    track's annotations: expression indices (-1: not annotated), or values per frame (NaN: not annotated)."""
    if TRACKS[track].annotation_files:  # the multi-task track's file of sampled frames
        yield from multitask_videos(root, split, track)
        return
    annotations = affwild2_annotations(root, track, split)  # e.g. EXPR_Recognition_Challenge/<split>
    for video, video_dir, labels, present in iter_affwild2_videos(annotations, root / "cropped_aligned", track):
        names = [f"{i + 1:05d}.jpg" for i in range(len(labels))]
        yield video, np.array(labels, dtype=np.int64 if TRACKS[track].single_label else np.float64), \
            [video_dir / name if name in present else None for name in names]


def multitask_videos(root: Path, split: str, track: str):
    """ABAW7's multi-task file of `split` as videos: each video's listed frames in name order, with their 15
    labels. Rows without an image are left out (the reader counts them): the file lists sampled frames."""
    dataset, _ = read_multitask_annotations(affwild2_annotations(root, track, split), root / "cropped_aligned")
    by_video = {}
    for video, frame, image, label in zip(dataset["video"], dataset["frame"], dataset["image"], dataset["label"]):
        by_video.setdefault(video, []).append((frame, image, label))
    for video, rows in sorted(by_video.items()):
        rows.sort()
        yield video, np.array([label for _, _, label in rows], dtype=np.float64), [Path(image) for _, image, _ in rows]


def predict_videos(runtime: Runtime, faces: OneFace, videos, show_progress: bool = True, sequential: bool = True):
    """Per-frame outputs of each video (the loop's smoothed rows at window 1: frames without a usable face filled
    from their neighbours, as in `emotic predict`; `sequential=False`: independent images, each its own), and the
    frames counted by status."""
    from tqdm.auto import tqdm

    results, counts = [], {"frames": 0, "missing_images": 0, NO_FACE: 0, UNREADABLE: 0}
    for video, labels, paths in tqdm(list(videos), desc="videos", unit="video", disable=not show_progress):
        frames = Frames(video, ((f"{video}/{i + 1:05d}.jpg", path) for i, path in enumerate(paths)),
                        sequential=sequential)
        rows = list(stream(frames, runtime, faces))
        statuses = [row.status for row in rows]
        counts["frames"] += len(rows)
        counts["missing_images"] += statuses.count(MISSING)
        counts[NO_FACE] += statuses.count(NO_FACE)
        counts[UNREADABLE] += statuses.count(UNREADABLE)
        results.append((video, labels, np.stack([row.smoothed for row in rows])))
    return results, counts


def person_outputs(rows, frames: int, track: int | None, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One person's outputs over every frame of a video, from a tracked stream's results (window 1): `(frames,
    width)` outputs, each frame without the person carrying their nearest earlier frame's (before their first, their
    first; a person never seen: NaN), and per frame whether their face was seen and reliable."""
    outputs, reliable = np.full((frames, width), np.nan), np.zeros(frames, dtype=bool)
    seen = np.zeros(frames, dtype=bool)
    for row in rows:
        if row.face is not None and row.track == track and row.frame < frames:
            outputs[row.frame], seen[row.frame], reliable[row.frame] = row.raw, True, row.face.quality.reliable
    fill = NeighbourFill()  # the rule `emotic predict` fills frames without a face by
    return np.concatenate([fill.push(outputs, seen), fill.finish()]), reliable


def subject_of(name: str, subjects) -> tuple[str, str | None]:
    """(video, subject) of an annotation's name: `<video>_<subject>` for a name that ends with one of `subjects`
    (matched whole, the longest first, so that a subject may hold `_` itself), else `(name, None)`."""
    for subject in sorted(subjects, key=len, reverse=True):
        if name.endswith(f"_{subject}") and len(name) > len(subject) + 1:
            return name[:-len(subject) - 1], subject
    return name, None


def tracked_videos(runtime: Runtime, people: TrackedFaces, annotations: dict, videos_dir: Path, subjects,
                   show_progress: bool = True):
    """Raw videos scored against Aff-Wild2 annotations, every face tracked (`TrackedFaces`): each annotated
    `<video>_<subject>` (`--subjects`, as Aff-Wild2 names a two-subject video's people, by position at first
    appearance) is the person of that name in `videos_dir/<video>.<ext>`, an annotated `<video>` the person seen
    in the most frames. Per annotation: `(name, labels, outputs)` (a frame without the person carries their nearest
    earlier frame's outputs), its reliable flags, and the counts (videos without a file, people not found)."""
    from tqdm.auto import tqdm

    results, flags, cache = [], [], {}
    width = runtime.frame.width
    counts = {"frames": 0, "missing_images": 0, NO_FACE: 0, UNREADABLE: 0, "missing_videos": [],
              "people_not_found": []}
    for name, labels in tqdm(sorted(annotations.items()), desc="videos", unit="video", disable=not show_progress):
        base, subject = subject_of(name, subjects)
        if base not in cache:
            files = [videos_dir / f"{base}{ext}" for ext in VIDEO_EXTENSIONS if (videos_dir / f"{base}{ext}").is_file()]
            if not files:
                cache[base] = None
            else:
                rows = list(stream(open_frames(Source(base, "video", files[0])), runtime, people))
                cache[base] = (rows, track_records(people.seen, base, subjects) if rows else [])
        if cache[base] is None:
            counts["missing_videos"].append(name)
            continue
        rows, tracks = cache[base]
        named = [t for t in tracks if t["name"] == subject] if subject else sorted(tracks, key=lambda t: -t["frames"])
        track = named[0]["track"] if named else None
        outputs, reliable = person_outputs(rows, len(labels), track, width)  # past the video's end: its last
        if track is None:
            counts["people_not_found"].append(name)
            outputs = np.tile(runtime.frame.no_face(), (len(labels), 1))
        counts["frames"] += len(labels)
        counts[NO_FACE] += len(labels) - sum(1 for row in rows if row.face is not None and row.track == track
                                             and row.frame < len(labels))
        results.append((name, np.asarray(labels), outputs))
        flags.append(reliable)
    return results, flags, counts


def sweep_windows(results, windows, mode: str, class_names, track: str = EXPRESSION, thresholds=None) -> dict:
    """Metrics of the smoothed predictions for each window (annotated frames only)."""
    labels = np.concatenate([video_labels for _, video_labels, _ in results])
    return {window: track_metrics(track, np.concatenate([smooth_probabilities(p, window, mode) for _, _, p in results]),
                                  labels, class_names, thresholds)
            for window in windows}


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


def write_affect_figures(output: Path, metrics: dict, results, window: int, mode: str, model_name: str, head):
    """The figures and `report.md` of an action-unit, valence-arousal or multi-task evaluation: per part of the
    head, the F1 of each unit, of each expression (in a multi-task head) and predicted against annotated values."""
    track = TRACKS[metrics["track"]]
    figures = ["smoothing.png"]
    plot_smoothing(output / "smoothing.png", metrics, track.score_name)
    raw, best = metrics["raw"], metrics["smoothed"]

    def part(result, kind):  # a multi-task head's metrics hold each track's own under its name
        return result[kind] if track.multitask else result

    parts = sorted(head_parts(head), key=lambda p: (not OUTPUTS[p[0]].thresholded, not OUTPUTS[p[0]].single_label))
    for kind, span, columns in parts:
        outputs = OUTPUTS[kind]
        if outputs.thresholded:
            plot_per_class_f1(output / "per_au_f1.png", {"raw": part(raw, kind), "smoothed": part(best, kind),
                                                          "smoothing": metrics["smoothing"]},
                              list(part(raw, kind)["per_au_f1"]), key="per_au_f1", title="Per-action-unit F1")
            figures.append("per_au_f1.png")
        elif outputs.single_label:
            plot_per_class_f1(output / "per_class_f1.png", {"raw": part(raw, kind), "smoothed": part(best, kind),
                                                             "smoothing": metrics["smoothing"]},
                              list(part(raw, kind)["per_class_f1"]), title="Per-expression F1")
            figures.append("per_class_f1.png")
        else:
            labels = np.concatenate([video_labels for _, video_labels, _ in results])[:, columns]
            predicted = np.concatenate([smooth_probabilities(p, window, mode) for _, _, p in results])[:, span]
            plot_valence_arousal(output / "va_scatter.png", predicted, labels, window)
            figures.append("va_scatter.png")
    write_affect_report_md(output / "report.md", metrics, model_name, figures)


def reliable_scores(results, videos, processor, window: int, mode: str, class_names, track: str, thresholds,
                    skip: bool = False, flags=None) -> dict:
    """The track's score raw and smoothed (at `window`) on the frames whose face is reliable
    (`emotic.inference.faces.frame_reliability`: found by the detector, large, frontal and sharp enough), beside
    the score on all frames; the smoothing still runs over every frame. `flags`: each video's, already known (tracked
    faces). `{"computed": False, "why": ...}` when skipped (`--no_reliability`, a `datasets` dataset's in-memory
    images) or without the face detector."""
    from emotic.processing.face_geometry import detector_available

    if skip:
        return {"computed": False, "why": "skipped (--no_reliability, or images held in memory)"}
    if not detector_available():
        return {"computed": False, "why": "no face detector installed (pip install 'emotic[faces]')"}
    paths = {video: paths for video, _, paths in videos}
    flags = np.concatenate(flags if flags is not None else
                           [frame_reliability(paths[video], processor) for video, _, _ in results])
    labels = np.concatenate([video_labels for _, video_labels, _ in results])
    outputs = {"raw": np.concatenate([p for _, _, p in results]),
               "smoothed": np.concatenate([smooth_probabilities(p, window, mode) for _, _, p in results])}
    record = {"computed": True, "frames": int(flags.sum()), "of_frames": int(len(flags)), "window": window}
    for name, values in outputs.items():
        record[name] = track_metrics(track, values[flags], labels[flags], class_names, thresholds) \
            if flags.any() else None
    return record


def save_smoothing(args, model: str, window: int, mode: str) -> None:
    """With `--save_smoothing`, the best window and the mode into the config of the model whose outputs were
    smoothed: the model folder's, or the temporal head's (`--temporal_model`)."""
    if not args.save_smoothing:
        return
    from transformers import AutoConfig

    folder = args.temporal_model or model
    config = AutoConfig.from_pretrained(folder)
    config.smoothing_window, config.smoothing_mode = window, mode
    config.save_pretrained(folder)
    print(f"wrote smoothing_window={window}, smoothing_mode={mode!r} into {folder}")


def build_parser() -> CommandParser:
    return CommandParser("emotic evaluate", __doc__, (EvaluateArguments, FramesArguments, PrecisionArguments,
                                                      TrackerArguments, ProgressArguments, HeadInputsArguments),
                         positionals=[(("model",), {"metavar": "MODEL", "help": MODEL_HELP}),
                                      (("dataset",), {"help": "an Aff-Wild2 EXPR root, an image folder with one "
                                                              "sub-folder per class, or a `datasets` dataset (a Hub "
                                                              "id, or a folder `datasets.load_dataset` reads)"})])


def main(argv=None) -> int:
    parser = build_parser()
    inputs, args, frames_args, precision, tracker, progress, head_inputs = parser.parse(argv)
    try:
        windows = sorted({check_smoothing_window(int(w) if w.strip().isdigit() else w.strip(), "--smoothing_windows")
                          for w in args.smoothing_windows.split(",")})
    except ValueError as error:
        parser.error(f"{error}; give odd integers separated by commas")
    if args.save_smoothing and not Path(args.temporal_model or inputs.model).is_dir():
        parser.error(f"--save_smoothing needs a local model folder; {args.temporal_model or inputs.model} is not one")
    dataset = Path(inputs.dataset)

    try:
        runtime = Runtime.load(inputs.model, precision.device, precision.dtype, precision.quantize, precision.backend,
                               frames_args.batch_size, temporal_model=args.temporal_model,
                               head_inputs=head_inputs)
        head = runtime.head  # whose outputs are scored: the frame model's, or the temporal head's
    except ValueError as error:
        parser.error(str(error))
    track = track_of(head)
    is_affwild2 = any((dataset / folder).is_dir() for folder in TRACKS[EXPRESSION].annotation_folders)
    if args.temporal_model and track.single_label and not is_affwild2:
        parser.error(f"--temporal_model scores videos: {dataset} is not an Aff-Wild2 root with annotated videos")
    if track.single_label:
        kind = "affwild2" if is_affwild2 else "image folder" if is_class_folder(dataset) else "datasets"
    else:  # the other tracks' annotations come in Aff-Wild2's layouts only
        kind = "affwild2"
        if not dataset.is_dir():
            parser.error(f"{inputs.model} serves the {track.name.upper()} track: evaluate it on an Aff-Wild2 root "
                         f"with its annotations; {dataset} is not a folder")
    mode = args.smoothing_mode or head.smoothing_mode
    try:
        track.check_smoothing_mode(mode)
    except ValueError as error:
        parser.error(str(error))
    thresholds = getattr(head, "label_thresholds", None)
    class_names = runtime.labels
    flags = None
    if args.videos_dir:
        if kind != "affwild2" or track.multitask or args.temporal_model:
            parser.error("--videos_dir scores raw videos against an Aff-Wild2 root's EXPR, AU or VA annotations, with "
                         "the frame model alone (no --temporal_model)")
        if not Path(args.videos_dir).is_dir():
            parser.error(f"--videos_dir {args.videos_dir}: no such folder")
        split = args.split or "Validation_Set"
        try:
            annotations = annotations_by_video(dataset, track.name, split)
            people = TrackedFaces(runtime.processor, **tracker.options())
        except (ValueError, ImportError) as error:
            parser.error(str(error))
        subjects = [name.strip() for name in args.subjects.split(",") if name.strip()]
        results, flags, counts = tracked_videos(runtime, people, annotations, Path(args.videos_dir), subjects,
                                                not progress.quiet)
        if not results:
            parser.error(f"none of the {len(annotations)} annotated videos of {dataset} ({split}) has a video file in "
                         f"{args.videos_dir} (looked for <video>.mp4 and the other video extensions)")
        videos = [(name, labels, [None] * len(labels)) for name, labels, _ in results]  # no frame images to show
        sequential = True
        counts["videos"] = len(results)
    else:
        try:
            if kind == "affwild2":
                split = args.split or "Validation_Set"
                videos = list(affwild2_videos(dataset, split, track.name))
            elif kind == "image folder":  # each image on its own, nothing to smooth
                images, _ = read_image_folder(dataset, runtime.model.config.label2id, read_label_map(args.label_map),
                                              args.drop_unmapped_labels)
                videos = [("images", np.array(list(images["label"])), [Path(path) for path in images["image"]])]
                split, windows = "image folder", [1]
            else:  # a `datasets` dataset: labels matched by name, each image on its own
                split = args.split or "validation"
                images, _ = read_dataset(inputs.dataset, split, runtime.model.config.label2id,
                                         args.dataset_config_name, args.image_column, args.label_column,
                                         args.label_set, read_label_map(args.label_map), args.drop_unmapped_labels)
                images = images.with_format(None)
                videos = [("images", np.array(images["label"]), list(images["image"]))]
                windows = [1]
        except ValueError as error:
            parser.error(str(error))
        sequential = kind == "affwild2"
        try:
            results, counts = predict_videos(runtime, OneFace(runtime.processor, frames_args.geometry), videos,
                                             not progress.quiet, sequential=sequential)
        except TranscriptRefused as error:  # a head that reads, and a garbled subtitle file: nothing is scored
            parser.error(str(error))
        counts["videos"] = len(results) if sequential else 0
    if runtime.temporal is not None and runtime.temporal.audio is not None:  # a head that hears: which it could not
        counts["videos_without_audio"] = list(runtime.temporal.without_audio)
        if counts["videos_without_audio"]:
            print(f"emotic evaluate: {len(counts['videos_without_audio'])} videos had no sound to hear (no video of "
                  f"their name in --audio_dir {head_inputs.audio_dir}, or none with sound): the temporal head ran on "
                  f"its missing-audio token there", file=sys.stderr)
    if runtime.temporal is not None and runtime.temporal.text is not None:  # a head that reads: where no words were
        counts["videos_without_text"] = list(runtime.temporal.without_text)
        if counts["videos_without_text"]:
            print(f"emotic evaluate: {len(counts['videos_without_text'])} videos had no words (no transcript, or "
                  f"nothing recognised): the temporal head ran on its missing-text token there", file=sys.stderr)
    if counts["missing_images"] + counts[UNREADABLE] == counts["frames"]:
        print(f"emotic evaluate: none of the {counts['frames']} annotated frames of {dataset} ({split}) has a readable "
              f"image ({counts['missing_images']} missing, {counts[UNREADABLE]} unreadable); nothing to score",
              file=sys.stderr)
        return 2

    if not any(track.annotated(labels).any() for _, labels, _ in results):  # as training refuses such a split
        print(f"emotic evaluate: none of the {counts['frames']} frames of {dataset} ({split}) is annotated for the "
              f"{track.name.upper()} track (every label says \"not annotated\"); nothing to score", file=sys.stderr)
        return 2
    for key, what in (("missing_videos", "have no video file there and were not scored"),
                      ("people_not_found", "have nobody of their name in the video: scored on uniform outputs")):
        if counts.get(key):
            print(f"emotic evaluate: {len(counts[key])} annotated videos {what} ({args.videos_dir}): "
                  f"{', '.join(counts[key][:5])}{' ...' if len(counts[key]) > 5 else ''}", file=sys.stderr)
    score = track.score
    by_window = sweep_windows(results, windows, mode, class_names, track.name, thresholds)
    best_window = max(windows, key=lambda w: (round(by_window[w][score], 10), -w))  # ties: the smaller
    raw = by_window[1] if 1 in by_window else \
        sweep_windows(results, [1], mode, class_names, track.name, thresholds)[1]
    metrics = {
        "model": str(inputs.model), "temporal_model": args.temporal_model and str(args.temporal_model),
        "precision": runtime.precision,
        "dataset": dataset_label(inputs.dataset), "synthetic": is_generated(dataset),
        "track": track.name, "score": score, "split": split, "counts": counts,
        "raw": raw, "smoothed": by_window[best_window],
        "smoothing": {"mode": mode, "window": best_window,
                      f"{score}_by_window": {str(w): by_window[w][score] for w in windows}},
    }
    metrics["reliable"] = reliable_scores(results, videos, runtime.processor, best_window, mode, class_names,
                                          track.name, thresholds,
                                          args.no_reliability or not sequential and kind != "image folder", flags)
    if track.has_values:  # each CCC over the windows too
        metrics["smoothing"]["components"] = {name: [by_window[w][name] for w in windows]
                                              for name in ("ccc_valence", "ccc_arousal")}
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model_name = Path(str(inputs.model)).name + (f" + {Path(str(args.temporal_model)).name}"
                                                 if args.temporal_model else "")
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if not track.single_label:
        write_affect_figures(output, metrics, results, best_window, mode, model_name, head)
        save_smoothing(args, inputs.model, best_window, mode)
        print(f"{track.score_name} raw {raw[score]:.4f}, smoothed {by_window[best_window][score]:.4f} ({mode}, "
              f"window {best_window}); {reliable_line(metrics, track.score_name)}report in "
              f"{output / 'report.md'}")
        return 0

    paths_by_video = {video: paths for video, _, paths in videos}
    smoothed = {video: smooth_probabilities(p, best_window, mode).argmax(1) for video, _, p in results}
    examples = pick_examples(results, paths_by_video, smoothed, class_names, args.examples)
    plot_confusion_matrices(output / "confusion_matrix.png", metrics, class_names)
    plot_per_class_f1(output / "per_class_f1.png", metrics, class_names)
    plot_smoothing(output / "smoothing.png", metrics)
    if examples:
        plot_examples(output / "examples.png", examples, runtime.processor, frames_args.geometry, runtime.model)
    write_report_md(output / "report.md", metrics, model_name, metrics["dataset"], class_names)

    save_smoothing(args, inputs.model, best_window, mode)
    print(f"macro-F1 raw {raw['macro_f1']:.4f}, smoothed {by_window[best_window]['macro_f1']:.4f} ({mode}, window "
          f"{best_window}); accuracy {raw['accuracy']:.4f} -> {by_window[best_window]['accuracy']:.4f}; "
          f"{raw['num_frames']} labelled frames; {reliable_line(metrics, 'macro-F1')}report in "
          f"{output / 'report.md'}")
    return 0


def reliable_line(metrics: dict, score_name: str) -> str:
    """`on the N of M frames with a reliable face: <score> raw x, smoothed y; ` (empty when not computed)."""
    text = reliable_text(metrics, score_name)
    return f"{text}; " if text else ""


if __name__ == "__main__":
    sys.exit(main())
