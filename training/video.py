"""Video inference: per-frame expression probabilities over videos, frame folders and images, smoothed over a
sliding window, written as a per-frame CSV and in the ABAW submission format.

    emotic predict MODEL INPUT... --output-dir predictions [--smooth-window 15 --smooth-mode mean]

INPUT is a video file (decoded with PyAV), a folder of frames (one video, frames in natural order), a folder of such
folders and/or videos (Aff-Wild2's `cropped_aligned`), or image files (each scored on its own, never smoothed).
Frames stream through in batches: memory does not grow with a video's length. Frames where the processor finds no
face, and unreadable frames, carry the prediction of the nearest earlier frame with a face (the first later one at
the start of a video) and are counted. Each finished video is written at once (an atomic rename), so a run that was
interrupted and started again with the same command skips the videos it already finished.

Outputs in `--output-dir`: `frames/<video>.csv` (per frame: location, status, raw and smoothed label, smoothed
probabilities), `submission.txt` (header `image_location,Neutral,...,Other`, then `video/00001.jpg,<label>`) and
`summary.json` (counts and what was skipped, with reasons).
"""

import argparse
import csv
import json
import logging
import os
import re
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emotic.cli import command_parser
from emotic.modeling.configuration_emotic import SMOOTHING_MODES
from emotic.training.data import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
# per-frame status in the CSV: a face was found (or the geometry is the aligned template), no face was found, the
# frame could not be decoded, or (evaluation) the annotated frame has no image
FACE, NO_FACE, UNREADABLE, MISSING = "face", "no_face", "unreadable", "missing"


# -- smoothing --------------------------------------------------------------------------------------------------------

def smoothing_kernel(window: int, mode: str) -> np.ndarray:
    """Weights of a centred window: uniform for `mean` and `mode`, a Gaussian with sigma = window / 4 for `gaussian`."""
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise ValueError(f"smoothing window={window!r}; expected an odd integer >= 1 (a window centred on the frame)")
    if mode not in SMOOTHING_MODES:
        raise ValueError(f"smoothing mode={mode!r}; expected one of {list(SMOOTHING_MODES)}")
    offsets = np.arange(window) - window // 2
    if mode == "gaussian":
        return np.exp(-0.5 * (offsets / (window / 4)) ** 2)
    return np.ones(window)


def smooth_probabilities(probabilities, window: int, mode: str = "mean") -> np.ndarray:
    """Smooth per-frame class probabilities `(frames, classes)` of one video over a centred sliding window.

    The window is clipped at the video's ends and the weights renormalised over the frames it covers (no padding:
    a constant sequence stays constant up to its first and last frame). `mean` averages probabilities, `gaussian`
    weights them by distance, `mode` returns each class's share of the per-frame votes (argmax) in the window,
    ties going to the class with the higher mean probability. Window 1 returns the input unchanged.
    """
    kernel = smoothing_kernel(window, mode)
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"probabilities: expected a (frames, classes) array, got shape {values.shape}")
    if window == 1 or len(values) == 0:
        return values.copy()

    def weighted(rows):
        total, norm = np.zeros_like(rows), np.zeros(len(rows))
        frames, radius = len(rows), window // 2
        for weight, offset in zip(kernel, range(-radius, radius + 1)):
            if abs(offset) >= frames:
                continue
            target = slice(max(0, -offset), frames - max(0, offset))
            source = slice(max(0, offset), frames - max(0, -offset))
            total[target] += weight * rows[source]
            norm[target] += weight
        return total / norm[:, None]

    if mode != "mode":
        return weighted(values)
    votes = np.zeros_like(values)
    votes[np.arange(len(values)), values.argmax(1)] = 1.0
    shares = weighted(votes) + 1e-6 * weighted(values)  # the mean probability only breaks ties
    return shares / shares.sum(1, keepdims=True)


class StreamingSmoother:
    """`smooth_probabilities` over a stream of row blocks, holding only `window` rows plus one block: `push` returns
    the rows that are final (their whole window has been seen), `finish` the rest. Equal to smoothing the whole
    sequence at once (tested)."""

    def __init__(self, window: int, mode: str):
        smoothing_kernel(window, mode)  # validates
        self.window, self.mode, self.radius = window, mode, window // 2
        self.buffer = None  # rows [start, start + len(buffer)) of the sequence
        self.start = self.emitted = 0

    def push(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        self.buffer = rows if self.buffer is None else np.concatenate([self.buffer, rows])
        ready = self.start + len(self.buffer) - self.radius
        if ready <= self.emitted:
            return self.buffer[:0]
        smoothed = smooth_probabilities(self.buffer, self.window, self.mode)
        out = smoothed[self.emitted - self.start:ready - self.start]
        self.emitted = ready
        keep_from = max(self.start, ready - self.radius)  # left context of the next rows
        self.buffer, self.start = self.buffer[keep_from - self.start:], keep_from
        return out

    def finish(self) -> np.ndarray:
        if self.buffer is None:
            return np.zeros((0, 0))
        out = smooth_probabilities(self.buffer, self.window, self.mode)[self.emitted - self.start:]
        self.emitted += len(out)
        self.buffer = self.buffer[:0]
        return out


class NeighbourFill:
    """Rows of frames without a usable face take the prediction of the nearest earlier frame with a face; those
    before the first face wait for it. If a video has no face at all, its frames keep their own predictions."""

    def __init__(self):
        self.last = None
        self.pending = []
        self.width = 0

    def push(self, rows: np.ndarray, has_face: np.ndarray) -> np.ndarray:
        self.width = rows.shape[1]
        out = []
        for row, ok in zip(rows, has_face):
            if ok:
                if self.pending:
                    out.extend([row] * len(self.pending))
                    self.pending = []
                self.last = row
                out.append(row)
            elif self.last is not None:
                out.append(self.last)
            else:
                self.pending.append(row)
        return np.array(out, dtype=np.float64).reshape(len(out), self.width)

    def finish(self) -> np.ndarray:
        out, self.pending = self.pending, []
        return np.array(out, dtype=np.float64).reshape(len(out), self.width)


# -- inputs -----------------------------------------------------------------------------------------------------------

class UnreadableInput(Exception):
    """A video or folder that yields no frames: reported, counted and skipped."""


@dataclass
class Source:
    """One unit of prediction: a video file, a folder of frames, or the loose images given on the command line."""

    name: str
    kind: str  # "video" | "frames" | "images"
    path: Path | None = None
    images: list = field(default_factory=list)

    @property
    def sequential(self) -> bool:  # frames of one video: neighbours may be used and smoothing applies
        return self.kind != "images"


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((entry for entry in folder.iterdir() if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: _natural_key(p.name))


def _has_images(folder: Path) -> bool:
    """Whether `folder` holds a frame image: stops at the first one (no full listing at start-up)."""
    return any(entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS for entry in folder.iterdir())


def collect_sources(inputs) -> list[Source]:
    """Sources in the order given; a folder of frames is one video, a folder of frame folders/videos is many."""
    sources, loose = [], []
    for text in inputs:
        path = Path(text)
        if path.is_file():
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                loose.append(path)
            else:  # a video by extension or not: PyAV reports what it cannot decode
                sources.append(Source(path.stem, "video", path))
        elif path.is_dir():
            if _has_images(path):
                sources.append(Source(path.name, "frames", path))
                continue
            children = sorted(path.iterdir(), key=lambda p: _natural_key(p.name))
            found = [Source(child.name, "frames", child) for child in children if child.is_dir() and _has_images(child)]
            found += [Source(child.stem, "video", child) for child in children
                      if child.is_file() and child.suffix.lower() in VIDEO_EXTENSIONS]
            if not found:
                raise ValueError(f"{path}: no frame images ({', '.join(IMAGE_EXTENSIONS)}), frame folders or videos "
                                 f"({', '.join(VIDEO_EXTENSIONS)}) in it")
            sources.extend(sorted(found, key=lambda s: _natural_key(s.path.name)))
        else:
            raise ValueError(f"{path}: no such file or folder")
    if loose:
        sources.append(Source("images", "images", images=loose))
    names = {}
    for source in sources:
        if source.name in names:
            raise ValueError(f"two inputs would both be written as {source.name!r}: {names[source.name]} and "
                             f"{source.path}; rename one or predict them in separate runs")
        names[source.name] = source.path or "the images given"
    return sources


def frame_files(source: Source) -> list[Path] | None:
    """The image files of an `images` or `frames` source, in order (one listing of a frame folder); None for a
    video."""
    if source.kind == "video":
        return None
    return source.images if source.kind == "images" else _images_in(source.path)


def iter_frames(source: Source, files: list[Path] | None = None, notes: dict | None = None):
    """(image_location, image or path) for each frame of a source, lazily (one decoded frame at a time). `files`:
    the source's `frame_files`, if already listed. For a video, `notes["declared_frames"]` receives the frame count
    its header declares (or its duration implies; 0 when neither is known), so that a file cut off mid-way is known
    as such."""
    if source.kind != "video":
        prefix = "" if source.kind == "images" else f"{source.name}/"
        for path in files if files is not None else frame_files(source):
            yield f"{prefix}{path.name}", path
    else:
        import av

        try:
            container = av.open(str(source.path))
        except av.FFmpegError as error:
            raise UnreadableInput(f"{source.path}: cannot be read as a video ({error})") from None
        with container:
            if not container.streams.video:
                raise UnreadableInput(f"{source.path}: contains no video frames (no video stream)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if notes is not None:
                notes["declared_frames"] = int(stream.frames or 0)
                if not notes["declared_frames"] and container.duration and stream.average_rate:
                    # no frame count in the header (Matroska): the duration's worth, less 5% for variable rates
                    notes["declared_frames"] = int(container.duration / 1e6 * float(stream.average_rate) * 0.95)
            index = 0
            try:
                for frame in container.decode(stream):
                    index += 1
                    yield f"{source.name}/{index:05d}.jpg", frame.to_image()
            except av.FFmpegError as error:
                raise UnreadableInput(f"{source.path}: decoding failed after {index} frames ({error})") from None


# -- the model over frames ------------------------------------------------------------------------------------------

class FramePredictor:
    """Batched inference through the model's image processor: (locations, statuses, probabilities) per batch."""

    def __init__(self, model, processor, batch_size: int = 32, geometry: str | None = None):
        from emotic.processing.image_processing_emotic import EmoticImageProcessor

        if not isinstance(processor, EmoticImageProcessor):
            raise ValueError(f"the model's image processor is a {type(processor).__name__}; expected an "
                             f"EmoticImageProcessor (an emotic model folder)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; expected an integer >= 1")
        self.model, self.processor = model.eval(), processor
        self.batch_size, self.geometry = batch_size, geometry
        self.device = next(model.parameters()).device

    def quiet(self):
        """Silence the processor's per-image "no face found" warning: the CLIs count and report those frames."""
        logging.getLogger(type(self.processor).__module__).setLevel(logging.ERROR)
        return self

    def __call__(self, frames):
        batch = []
        for item in frames:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield self._run(batch)
                batch = []
        if batch:
            yield self._run(batch)

    def _run(self, batch):
        locations, statuses, images = [], [], []
        for location, image in batch:
            locations.append(location)
            if image is None:
                statuses.append(MISSING)
                continue
            try:
                images.append(self.processor.to_rgb(image, location))
                statuses.append(FACE)
            except (ValueError, OSError):
                statuses.append(UNREADABLE)
        probabilities = np.full((len(batch), self.model.config.num_labels), 1.0 / self.model.config.num_labels)
        if images:
            inputs = self.processor(images, return_tensors="pt", return_regions=True, geometry=self.geometry)
            with torch.inference_mode():
                logits = self.model(pixel_values=inputs["pixel_values"].to(self.device),
                                    pixel_values_aux=inputs["pixel_values_aux"].to(self.device)).logits
            readable = [i for i, status in enumerate(statuses) if status == FACE]
            probabilities[readable] = logits.float().softmax(-1).cpu().numpy()
            for i, region in zip(readable, inputs["regions"]):
                if region["source"] == "full_image":
                    statuses[i] = NO_FACE
        return locations, statuses, probabilities


def load_model(model_name_or_path: str, device: str | None = None):
    """The classifier and its processor from a local folder or a Hub id (installed code; never remote code)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import emotic  # noqa: F401  (registers the emotic classes)

    model = AutoModelForImageClassification.from_pretrained(model_name_or_path)
    processor = AutoImageProcessor.from_pretrained(model_name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), processor


def predict_sequence(predictor: FramePredictor, frames, window: int, mode: str, sequential: bool = True,
                     progress=None):
    """Yield (location, status, raw probabilities, smoothed probabilities) per frame, in order, streaming."""
    fill = NeighbourFill() if sequential else None
    smoother = StreamingSmoother(window if sequential else 1, mode)
    waiting = deque()  # (location, status, raw) of rows not yet final
    for locations, statuses, probabilities in predictor(frames):
        if progress is not None:
            progress.update(len(locations))
        waiting.extend(zip(locations, statuses, probabilities))
        has_face = np.array([status == FACE for status in statuses])
        rows = fill.push(probabilities, has_face) if fill else probabilities
        for smoothed in smoother.push(rows) if len(rows) else ():
            yield *waiting.popleft(), smoothed
    tail = fill.finish() if fill else np.zeros((0, 0))
    if len(tail):
        for smoothed in smoother.push(tail):
            yield *waiting.popleft(), smoothed
    for smoothed in smoother.finish():
        yield *waiting.popleft(), smoothed


# -- emotic predict ---------------------------------------------------------------------------------------------------

def _write_source(source: Source, predictor, labels, window, mode, frames_dir: Path, show_progress: bool) -> dict:
    from tqdm.auto import tqdm

    counts, notes = _new_counts(), {}
    final = frames_dir / f"{source.name}.csv"
    partial = frames_dir / f"{source.name}.csv.{os.getpid()}.partial"  # this process's own, never another's
    files = frame_files(source)
    try:
        with open(partial, "w", newline="", encoding="utf-8") as handle, \
                tqdm(total=len(files) if files is not None else None, desc=source.name, unit="frame", disable=not show_progress, leave=False) as progress:
            writer = csv.writer(handle)
            writer.writerow(["image_location", "status", "raw_label", "label", *labels])
            frames = iter_frames(source, files, notes)
            for location, status, raw, smoothed in predict_sequence(predictor, frames, window, mode,
                                                                    source.sequential, progress):
                counts["frames"] += 1
                counts[status] += 1
                writer.writerow([location, status, int(np.argmax(raw)), int(np.argmax(smoothed)),
                                 *(f"{p:.6f}" for p in smoothed)])
        if counts["frames"] == 0:
            raise UnreadableInput(f"{source.path}: has no frames")
        if counts[UNREADABLE] == counts["frames"]:
            raise UnreadableInput(f"{source.path or source.name}: none of its {counts['frames']} frames could be "
                                  f"decoded as an image")
        declared = notes.get("declared_frames", 0)
        if declared > counts["frames"]:  # decoding ended early without an error: a file cut off mid-way
            counts["incomplete"] = (f"{source.path}: {counts['frames']} frames decoded where its header declares "
                                    f"{declared} or more (a truncated file?); predictions cover those frames only")
        os.replace(partial, final)  # only a finished video has a .csv: a restarted run skips it
    finally:
        partial.unlink(missing_ok=True)
    return counts


def _new_counts() -> dict:
    return {"frames": 0, FACE: 0, NO_FACE: 0, UNREADABLE: 0}


def _count_written(csv_path: Path) -> dict:
    counts = _new_counts()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            counts["frames"] += 1
            counts[row["status"]] += 1
    return counts


LOCK_NAME = ".emotic-predict.lock"


def _lock_output(output: Path):
    """An exclusive lock on the output folder, released when the process ends (also when it is killed), or None
    when another process holds it. Where `fcntl` is missing (Windows) no lock is taken."""
    try:
        import fcntl
    except ImportError:
        return open(os.devnull)
    handle = open(output / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _read_summary(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_submission(sources, frames_dir: Path, labels, path: Path) -> int:
    """The ABAW submission file from the per-video CSVs, streamed: header, then `location,label` per frame."""
    lines = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")  # quotes a location holding a comma ("interview, take 2")
        writer.writerow(["image_location", *labels])
        for source in sources:
            csv_path = frames_dir / f"{source.name}.csv"
            if not csv_path.is_file():
                continue
            with open(csv_path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    writer.writerow([row["image_location"], row["label"]])
                    lines += 1
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("emotic predict", __doc__)
    parser.add_argument("model", help="an emotic model folder or Hub id")
    parser.add_argument("inputs", nargs="+", help="videos, frame folders, folders of those, or images")
    parser.add_argument("--output-dir", default="predictions")
    parser.add_argument("--smooth-window", type=int, default=None,
                        help="odd number of frames (1 = no smoothing); default: the model's video_smoothing_window")
    parser.add_argument("--smooth-mode", choices=SMOOTHING_MODES, default=None,
                        help="default: the model's video_smoothing_mode")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--geometry", choices=("auto", "detector", "template"), default=None,
                        help="face geometry: template for aligned crops (Aff-Wild2 cropped_aligned), detector to find "
                             "faces in each frame; default: the processor's (auto)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--overwrite", action="store_true", help="redo videos already finished in --output-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sources = collect_sources(args.inputs)
    except ValueError as error:
        parser.error(str(error))
    model, processor = load_model(args.model, args.device)
    window = args.smooth_window if args.smooth_window is not None else model.config.video_smoothing_window
    mode = args.smooth_mode or model.config.video_smoothing_mode
    try:
        smoothing_kernel(window, mode)
        predictor = FramePredictor(model, processor, args.batch_size, args.geometry).quiet()
    except ValueError as error:
        parser.error(str(error))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    output = Path(args.output_dir)
    frames_dir = output / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_output(output)  # held until the process ends: one predict per output folder
    if lock is None:
        parser.error(f"{output} is in use by another `emotic predict` (lock {output / LOCK_NAME}); wait for it to "
                     f"finish or choose another --output-dir")
    for stale in frames_dir.glob("*.csv.*.partial"):  # left by a run that was killed mid-video (we hold the lock)
        stale.unlink()
    settings = {"model": str(args.model), "smooth_window": window, "smooth_mode": mode,
                "geometry": args.geometry or processor.geometry, "labels": labels}
    settings_path = output / "predict_settings.json"
    if settings_path.is_file() and not args.overwrite:
        previous = json.loads(settings_path.read_text())
        if previous != settings:
            changed = sorted(key for key in settings if previous.get(key) != settings[key])
            parser.error(f"{output} holds predictions made with other settings ({', '.join(changed)}); pass "
                         f"--overwrite to redo them or choose another --output-dir")
    settings_path.write_text(json.dumps(settings, indent=2))

    summary = {"settings": settings, "videos": {}, "skipped": {}, "incomplete": {}}
    summary_path = output / "summary.json"
    earlier = _read_summary(summary_path) if not args.overwrite else {}
    already = 0
    for source in sources:
        done = frames_dir / f"{source.name}.csv"
        if done.is_file() and not args.overwrite:
            summary["videos"][source.name] = _count_written(done)
            if source.name in earlier.get("incomplete", {}):  # still partial: say so again
                summary["incomplete"][source.name] = earlier["incomplete"][source.name]
            already += 1
            continue
        try:
            counts = _write_source(source, predictor, labels, window, mode, frames_dir, not args.quiet)
        except UnreadableInput as error:
            summary["skipped"][source.name] = str(error)
            print(f"skipped {source.name}: {error}", file=sys.stderr)
            continue
        if "incomplete" in counts:
            summary["incomplete"][source.name] = counts.pop("incomplete")
            print(f"incomplete {source.name}: {summary['incomplete'][source.name]}", file=sys.stderr)
        summary["videos"][source.name] = counts
    lines = write_submission(sources, frames_dir, labels, output / "submission.txt")
    totals = {key: sum(counts[key] for counts in summary["videos"].values())
              for key in ("frames", FACE, NO_FACE, UNREADABLE)}
    summary["totals"] = {**totals, "videos": len(summary["videos"]), "skipped_videos": len(summary["skipped"]),
                         "already_done": already}
    summary["totals"]["incomplete_videos"] = len(summary["incomplete"])
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"{len(summary['videos'])} of {len(sources)} inputs predicted ({already} already done), {totals['frames']} "
          f"frames: {totals[NO_FACE]} without a face and {totals[UNREADABLE]} unreadable carried a neighbour's "
          f"prediction; smoothing {mode} over {window} frames; {lines} lines in {output / 'submission.txt'}")
    if summary["skipped"]:
        print(f"{len(summary['skipped'])} inputs could not be read: {', '.join(summary['skipped'])} "
              f"(reasons in {summary_path})", file=sys.stderr)
    if summary["incomplete"]:
        print(f"{len(summary['incomplete'])} videos were predicted only in part: {', '.join(summary['incomplete'])} "
              f"(reasons in {summary_path})", file=sys.stderr)
    return 1 if summary["skipped"] or summary["incomplete"] else 0


if __name__ == "__main__":
    sys.exit(main())
