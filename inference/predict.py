"""Video inference: per-frame expression probabilities (or an action-unit model's unit probabilities, a
valence-arousal model's values) over videos, frame folders and images, smoothed over a sliding window, written as a
per-frame CSV and in the ABAW submission format of the model's track.

    emotic predict MODEL INPUT... --output_dir predictions [--smoothing_window 15 --smoothing_mode mean]

INPUT is a video file (decoded with PyAV), a folder of frames (one video, frames in natural order), a folder of such
folders and/or videos (Aff-Wild2's `cropped_aligned`), or image files (each scored on its own, never smoothed).
Frames stream through in batches: memory does not grow with a video's length. Frames where the processor finds no
face, and unreadable frames, carry the prediction of the nearest earlier frame with a face (the first later one at
the start of a video) and are counted. Each finished video is written at once (an atomic rename), so a run that was
interrupted and started again with the same command skips the videos it already finished.

On video files (and frame folders with `--faces all`) every face is tracked (`emotic.inference.tracking`): a row
per frame and person with the track id, face box, detector score, a quality record and a `reliable` flag, smoothing
within each person's track only, submission rows per person (`<video>_<track>`, or the `--subjects` names), the
tracks in `summary.json` and a timeline per person in `timelines/<video>.png`. `--faces largest` keeps one face.

With `--temporal_model TEMPORAL` (a temporal head from `emotic finetune-temporal`), MODEL gives each frame's
features and the head the predictions, from windows of frames (`emotic.inference.temporal`): the files are the same,
in the head's labels, thresholds and smoothing; each video's features are held while its windows run.

Outputs in `--output_dir`: `frames/<video>.csv` (per frame: location, frame, time, status, raw and smoothed label,
smoothed probabilities; see `frame_header` for the other tracks and tracked faces), `submission.txt` (header `image_location,Neutral,...,Other`,
then `video/00001.jpg,<label>`; `image_location,AU1,...,AU26` then 12 0/1 at the model's `label_thresholds`;
`image_location,valence,arousal` then the two values; a multi-task model's `image,valence,arousal,expression,AU1,...`
as ABAW7's multi-task challenge asks) and
`summary.json` (counts and what was skipped, with reasons); with `--compound_submission`, `submission_compound.txt`
(the 7 compound expressions, zero-shot from the expression probabilities: `emotic.inference.compound`).
"""

import argparse
import csv
import json
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from emotic.commands import command_parser
from emotic.inference.compound import check_compound_labels, write_compound_submission
from emotic.inference.processes import Processes, merge_shares, report_problems, work_share
from emotic.inference.smoothing import NeighbourFill, StreamingSmoother, smoothing_kernel
from emotic.inference.sources import Source, check_decoded, collect_sources, frame_files, iter_frames
from emotic.modeling.configuration_emotic import SmoothingMode
from emotic.modeling.heads_emotic import head_outputs, head_parts, head_track
from emotic.processing.image_processing_emotic import GEOMETRIES
from emotic.processing.image_files import open_image

# per-frame status in the CSV: a face was found (or the geometry is the aligned template), no face was found, the
# frame could not be decoded, or (evaluation) the annotated frame has no image
FACE, NO_FACE, UNREADABLE, MISSING = "face", "no_face", "unreadable", "missing"


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
        self.device = model.device
        self.parts = head_parts(model.config)  # what the head's outputs are: `head_outputs`

    def quiet(self):
        """Silence the processor's per-image "no face found" warning: the CLIs count and report those frames."""
        logging.getLogger(type(self.processor).__module__).setLevel(logging.ERROR)
        return self

    def __call__(self, frames):
        """(locations, statuses, probabilities) per batch of `frames` ((location, image or path) pairs), the next
        batch prepared while the model runs on this one (`pipelined`)."""
        return pipelined(frames, self.batch_size, self._prepare, self._infer)

    def _prepare(self, batch):
        """Decode a batch and build its views: (locations, statuses, processor output or None)."""
        locations, statuses, images = [], [], []
        for location, image in batch:
            locations.append(location)
            if image is None:
                statuses.append(MISSING)
                continue
            try:
                images.append(self.processor.to_rgb(open_image(image), location))
                statuses.append(FACE)
            except (ValueError, OSError):
                statuses.append(UNREADABLE)
        inputs = self.processor(images, return_tensors="pt", return_regions=True, geometry=self.geometry) \
            if images else None
        return locations, statuses, inputs

    def _placeholder(self, count: int) -> np.ndarray:
        """Rows for frames without an image (replaced by `NeighbourFill`): uniform probabilities, 0.5 per unit, 0."""
        rows = np.empty((count, self.model.config.num_labels))
        for track, span, _ in self.parts:
            rows[:, span] = {"expr": 1.0 / (span.stop - span.start), "au": 0.5, "va": 0.0}[track]
        return rows

    def _outputs(self, pixel_values, pixel_values_aux) -> torch.Tensor:
        """The head's outputs of one batch of views, as `head_outputs` gives them."""
        logits = self.model(pixel_values=pixel_values, pixel_values_aux=pixel_values_aux).logits
        return head_outputs(logits.float(), self.parts)

    def run(self, inputs) -> np.ndarray:
        """The head's outputs (`_outputs`) of a batch of the processor's views, as a float array."""
        with torch.inference_mode():
            outputs = self._outputs(inputs["pixel_values"].to(self.device), inputs["pixel_values_aux"].to(self.device))
        return outputs.float().cpu().numpy()

    def _infer(self, locations, statuses, inputs):
        """(locations, statuses, outputs): per frame, `_outputs`; frames without an image hold a placeholder that
        `NeighbourFill` replaces."""
        probabilities = self._placeholder(len(locations))
        if inputs is not None:
            readable = [i for i, status in enumerate(statuses) if status == FACE]
            probabilities[readable] = self.run(inputs)
            for i, region in zip(readable, inputs["regions"]):
                if region["geometry"] == "full_image":
                    statuses[i] = NO_FACE
        return locations, statuses, probabilities


def pipelined(items, batch_size: int, prepare, infer, name: str = "emotic-views"):
    """`infer(*prepare(batch))` per batch of `batch_size` items, the next batch prepared (decoded, tracked, turned
    into views) in a background thread while `infer` runs the model on this one: at most two batches are held,
    however long the stream."""
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    iterator = iter(items)

    def prepare_next():  # only the one worker thread advances the items
        batch = list(islice(iterator, batch_size))
        return prepare(batch) if batch else None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as worker:
        pending = worker.submit(prepare_next)
        while (prepared := pending.result()) is not None:
            pending = worker.submit(prepare_next)
            yield infer(*prepared)


def expression_parts(labels) -> list:
    """`head_parts` of an expression head with these labels: what the CSV writers assume unless told."""
    return [("expr", slice(0, len(labels)), slice(0, 1))]


FACES = ("auto", "all", "largest")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKENDS = ("pytorch", "onnxruntime")


def cpu_computes_bfloat16(flags: set | None = None) -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware (AMX-BF16 or AVX512-BF16), from /proc/cpuinfo's flags.
    Without it, bfloat16 on a CPU is emulated and many times slower than float32."""
    if flags is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                flags = next((set(line.split(":", 1)[1].split()) for line in handle if line.startswith("flags")), set())
        except OSError:
            flags = set()
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def resolve_dtype(dtype: str, device: str, flags: set | None = None) -> torch.dtype:
    """`auto`: bfloat16 on a CUDA GPU that supports it and on a CPU that computes it natively, float32 elsewhere."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"--dtype {dtype!r}; allowed: auto, {', '.join(DTYPES)}")
        return DTYPES[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device == "cpu" and cpu_computes_bfloat16(flags) else torch.float32


def load_model(model_name_or_path: str, device: str | None = None, dtype: str = "float32",
               quantize: str | None = None, backend: str = "pytorch"):
    """The classifier and its processor from a local folder or a Hub id (installed code; never remote code), on
    `device`, in `dtype` (`auto`: `resolve_dtype`), or with `quantize="int8"` (CPU only) every linear layer
    dynamically quantized to int8. The processor's float32 views are cast to the weights' dtype by the model.
    `backend="onnxruntime"`: the graph of an `emotic export-onnx` folder in ONNX Runtime on the CPU (float32)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if dtype != "float32" or quantize or (device or "cpu") != "cpu":
            raise ValueError("--backend onnxruntime runs the exported float32 graph on the CPU; leave --dtype, "
                             "--quantize and --device at their defaults")
        from emotic.hub_cards.export_onnx import OnnxRuntimeClassifier

        return OnnxRuntimeClassifier(model_name_or_path), AutoImageProcessor.from_pretrained(model_name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize {quantize!r}; allowed: int8")
    if quantize and device != "cpu":
        raise ValueError(f"--quantize int8 runs on the CPU (dynamic quantization); --device is {device}")
    torch_dtype = torch.float32 if quantize else resolve_dtype(dtype, device)
    model = AutoModelForImageClassification.from_pretrained(model_name_or_path, dtype=torch_dtype)
    processor = AutoImageProcessor.from_pretrained(model_name_or_path)
    model = model.to(device).eval()
    if quantize:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model, processor


def predict_sequence(predictor: FramePredictor, frames, window: int, mode: str, sequential: bool = True,
                     progress=None):
    """Yield (location, status, raw probabilities, smoothed probabilities) per frame, in order, streaming. Frames
    without a usable face carry the nearest face frame's outputs, unless the predictor gives every frame its own
    (`fills_frames`: a temporal head's outputs come from the frames around them)."""
    fill = NeighbourFill() if sequential and not getattr(predictor, "fills_frames", False) else None
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

# the columns of a tracked face (`--faces all`): its track id, box (the landmarks' bounding box, pixels), detector
# score (empty between detections), quality record and reliability flag (`emotic.inference.tracking.Quality`)
TRACK_COLUMNS = ["track", "x0", "y0", "x1", "y1", "score", "face_size", "yaw", "pitch", "sharpness", "reliable"]


def frame_header(labels, parts=None, tracked: bool = False) -> list[str]:
    """The columns of a per-frame CSV (`frames/<video>.csv`): location, frame (0-based index in the video) and time
    (seconds: the index over the frame rate; empty where the rate is not known), with `tracked` faces
    `TRACK_COLUMNS`, the status, then per part of the head (`head_parts`; an expression head without): for
    expressions the raw and smoothed label and the smoothed probabilities; for action units the units present
    (`AU6+AU12`) raw and smoothed and each unit's smoothed probability; for valence-arousal the raw and the smoothed
    values. A multi-task head has its parts' columns side by side."""
    columns = ["image_location", "frame", "time", *(TRACK_COLUMNS if tracked else ()), "status"]
    for track, span, _ in parts or expression_parts(labels):
        names = labels[span]
        columns += {"au": ["raw_units", "units", *names], "va": [*(f"raw_{name}" for name in names), *names],
                    "expr": ["raw_label", "label", *names]}[track]
    return columns


def frame_row(location: str, status: str, raw, smoothed, parts=None, labels=None, thresholds=None, frame=None,
              time=None, face=None, tracked: bool = False) -> list:
    """One frame's CSV row in the columns of `frame_header` (action units: present where a probability reaches its
    threshold, `thresholds` or 0.5 each). `tracked`: the columns of `face` (a `TrackedFace`; None for a frame
    without one, whose head columns are then empty too)."""
    row = [location, "" if frame is None else frame, "" if time is None else f"{time:.3f}"]
    if tracked:
        row += face_columns(face)
    row.append(status)
    if raw is None:
        return row + [""] * (len(frame_header(labels, parts)) - 4)
    for track, span, _ in parts or expression_parts(smoothed):
        part_raw, part_smoothed = raw[span], smoothed[span]
        if track == "au":
            present = units_present(labels[span], thresholds)
            row += [present(part_raw), present(part_smoothed), *(f"{p:.6f}" for p in part_smoothed)]
        elif track == "va":
            row += [*(f"{v:.6f}" for v in part_raw), *(f"{v:.6f}" for v in part_smoothed)]
        else:
            row += [int(np.argmax(part_raw)), int(np.argmax(part_smoothed)), *(f"{p:.6f}" for p in part_smoothed)]
    return row


def face_columns(face) -> list:
    """A tracked face's values in `TRACK_COLUMNS` (empty ones for no face)."""
    if face is None:
        return [""] * len(TRACK_COLUMNS)
    quality = face.quality
    return [face.track, *(f"{v:.1f}" for v in face.box), "" if face.score is None else f"{face.score:.3f}",
            f"{quality.face_size:.1f}", f"{quality.yaw:.1f}", f"{quality.pitch:.1f}", f"{quality.sharpness:.1f}",
            int(quality.reliable)]


def unit_thresholds(names, thresholds=None) -> np.ndarray:
    """Each action unit's decision threshold on its probability: the model's `label_thresholds`, or 0.5."""
    return np.asarray(thresholds if thresholds is not None else [0.5] * len(names), dtype=np.float64)


def units_present(names, thresholds=None):
    """`probabilities -> "AU6+AU12"`: the action units whose probability reaches their threshold (0.5 unless set)."""
    thresholds = unit_thresholds(names, thresholds)
    return lambda probabilities: "+".join(name for name, on in zip(names, np.asarray(probabilities) >= thresholds)
                                          if on)


def _write_source(source: Source, predictor, labels, window, mode, frames_dir: Path, show_progress: bool,
                  fps: float | None = None, subjects=()) -> dict:
    """Predict one source into `frames/<name>.csv` (renamed into place when finished): its counts for the summary.
    `fps`: the frame rate of a frame folder (a video's own header gives its rate). A `TrackedPredictor` writes a row
    per tracked face and records the video's tracks (`frames/<name>.json`, read back on a restart)."""
    from tqdm.auto import tqdm

    parts, thresholds = predictor.parts, getattr(predictor.model.config, "label_thresholds", None)
    tracked = getattr(predictor, "tracks_faces", False)
    counts, notes = _new_counts(tracked), {}
    final = frames_dir / f"{source.name}.csv"
    partial = frames_dir / f"{source.name}.csv.{os.getpid()}.partial"  # this process's own, never another's
    record = frames_dir / f"{source.name}.json"
    files = frame_files(source)
    try:
        with open(partial, "w", newline="", encoding="utf-8") as handle, \
                tqdm(total=len(files) if files is not None else None, desc=source.name, unit="frame",
                     disable=not show_progress, leave=False) as progress:
            writer = csv.writer(handle)
            writer.writerow(frame_header(labels, parts, tracked))
            frames = started(iter_frames(source, files, notes))  # a video's rate is known from its first frame
            known = notes.get("fps") or fps  # the time column stays empty without a known rate
            if tracked:
                from emotic.inference.tracking import predict_tracks

                rows = predict_tracks(predictor, frames, known or DEFAULT_FPS, window, mode, progress)
                last = None
                for location, frame, time, status, face, raw, smoothed in rows:
                    if frame != last:
                        counts["frames"] += 1
                        counts[status] += 1
                        last = frame
                    counts["faces"] += face is not None
                    counts["reliable"] += bool(face is not None and face.quality.reliable)
                    writer.writerow(frame_row(location, status, raw, smoothed, parts, labels, thresholds, frame,
                                              time if known else None, face, tracked=True))
                counts["fps"], counts["dropped_faces"] = known, predictor.dropped
                counts["tracks"] = track_records(predictor.seen, source.name, subjects)
            else:
                for index, (location, status, raw, smoothed) in enumerate(predict_sequence(
                        predictor, frames, window, mode, source.sequential, progress)):
                    counts["frames"] += 1
                    counts[status] += 1
                    writer.writerow(frame_row(location, status, raw, smoothed, parts, labels, thresholds,
                                              index if source.sequential else None,
                                              index / known if known and source.sequential else None))
        incomplete = check_decoded(source, counts["frames"], counts[UNREADABLE], notes, "predictions")
        if incomplete:
            counts["incomplete"] = incomplete
        if tracked:  # before the CSV: a video with its CSV always has its record
            record.write_text(json.dumps({key: value for key, value in counts.items() if key != "incomplete"},
                                         indent=2))
        else:
            record.unlink(missing_ok=True)  # a tracked run's record of this video, redone (--overwrite)
        os.replace(partial, final)  # only a finished video has a .csv: a restarted run skips it
    finally:
        partial.unlink(missing_ok=True)
    return counts


DEFAULT_FPS = 30.0  # the frame rate assumed for a frame folder without --fps (Aff-Wild2's videos are 30 fps)


def started(frames):
    """`frames` with its first item decoded before it is handed on (a video's notes, such as its rate, are filled by
    then)."""
    from itertools import chain

    iterator = iter(frames)
    first = next(iterator, None)
    return iter(()) if first is None else chain([first], iterator)


def track_records(seen: dict, video: str, subjects=()) -> list[dict]:
    """The tracks of a video for its summary and submission: per track its id, `name` (the submission's
    `<video>_<name>`: the id, or with `subjects` the given names, by the horizontal position of the first box,
    left to right, for the tracks seen in the most frames), first and last frame, frames seen and first box."""
    records = [{"track": track, "name": str(track), **info} for track, info in sorted(seen.items())]
    if subjects:
        named = sorted(records, key=lambda r: -r["frames"])[:len(subjects)]
        for name, record in zip(subjects, sorted(named, key=lambda r: r["first_box"][0] + r["first_box"][2])):
            record["name"] = name
    for record in records:
        record["submission_name"] = f"{video}_{record['name']}"
    return records


def _new_counts(tracked: bool = False) -> dict:
    counts = {"frames": 0, FACE: 0, NO_FACE: 0, UNREADABLE: 0}
    return {**counts, "faces": 0, "reliable": 0} if tracked else counts


def _count_written(csv_path: Path) -> dict:
    """The counts of a video finished by an earlier run: its record (tracked faces), else counted from its CSV."""
    record = csv_path.with_suffix(".json")
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    counts = _new_counts()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            counts["frames"] += 1
            counts[row["status"]] += 1
    return counts


LOCK_NAME = ".emotic-predict.lock"
MODEL_HELP = "a model folder (the --output_dir of `emotic finetune`) or a Hub id"


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


def claim_output(output: Path, files_dir: Path, partial_files: str, settings_file: str, settings: dict,
                 overwrite: bool, parser, what: str, command: str):
    """The main process's claim on an output folder, before any process works in it: its lock (returned: hold it
    until the end; another run is refused), the partial files (`partial_files` in `files_dir`) a killed run left,
    removed, and the run's settings kept (`keep_settings`)."""
    files_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_output(output)
    if lock is None:
        parser.error(f"{output} is in use by another {command} (lock {output / LOCK_NAME}); wait for it to finish or "
                     f"choose another --output_dir")
    for stale in files_dir.glob(partial_files):  # left by a run that was killed mid-video (we hold the lock)
        stale.unlink()
    keep_settings(output / settings_file, settings, overwrite, parser, what)
    return lock


def keep_settings(path: Path, settings: dict, overwrite: bool, parser, what: str) -> None:
    """Record the settings of a run in `path`; a folder holding `what` made with other settings is refused (unless
    `overwrite`), naming the settings that changed, so that one folder never mixes two runs."""
    if path.is_file() and not overwrite:
        previous = json.loads(path.read_text())
        if previous != settings:
            changed = sorted(key for key in settings if previous.get(key) != settings[key])
            parser.error(f"{path.parent} holds {what} made with other settings ({', '.join(changed)}); pass "
                         f"--overwrite to redo them or choose another --output_dir")
    path.write_text(json.dumps(settings, indent=2))


def _read_summary(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def submission_header(labels, parts=None) -> list[str]:
    """The header of the track's ABAW submission: `image_location,Neutral,...,Other` (expressions),
    `image_location,AU1,...,AU26`, `image_location,valence,arousal`; a multi-task head's (ABAW7)
    `image,valence,arousal,expression,AU1,...,AU26`."""
    parts = parts or expression_parts(labels)
    if len(parts) == 1:
        return ["image_location", *labels]
    return ["image", *(name for track, span, _ in parts for name in (["expression"] if track == "expr"
                                                                     else labels[span]))]


def submission_values(row: dict, labels, parts=None, thresholds=None) -> list:
    """One frame's values in a submission, from its per-frame CSV row: the smoothed expression label, 0/1 per action
    unit (at `thresholds` or 0.5), valence and arousal clipped to [-1, 1]; a multi-task head's side by side."""
    values = []
    for track, span, _ in parts or expression_parts(labels):
        names = labels[span]
        if track == "au":
            values += [int(float(row[name]) >= t) for name, t in zip(names, unit_thresholds(names, thresholds))]
        elif track == "va":
            values += [f"{min(max(float(row[name]), -1.0), 1.0):.6f}" for name in names]
        else:
            values.append(row["label"])
    return values


def write_submission(sources, frames_dir: Path, labels, path: Path, parts=None, thresholds=None) -> int:
    """The ABAW submission file of the head's track (`head_parts`; an expression head without) from the per-video
    CSVs, streamed: `submission_header`, then per frame its location and `submission_values`. A video of tracked
    faces has rows per track, `<video>_<name>/<frame>` for every frame of the video (`tracked_rows`)."""
    lines = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")  # quotes a location holding a comma ("interview, take 2")
        writer.writerow(submission_header(labels, parts))
        for source in sources:
            csv_path = frames_dir / f"{source.name}.csv"
            if not csv_path.is_file():
                continue
            for location, row in submission_rows(csv_path):
                writer.writerow([location, *submission_values(row, labels, parts, thresholds)])
                lines += 1
    return lines


def tracked_rows(csv_path: Path, track: dict):
    """`(location, row)` of one track for every frame of its video, in order, from the tracked CSV: the location's
    video part renamed `<video>_<name>` (as Aff-Wild2 names a video's subjects), the track's own CSV row where it is
    seen, elsewhere that of its nearest earlier frame (before its first, its first). Streams the CSV."""
    key = str(track["track"])

    def frames():  # (location, the track's row or None) per frame: the CSV's rows are in frame order
        current = location = mine = None
        with open(csv_path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["frame"] != current:
                    if current is not None:
                        yield location, mine
                    current, location, mine = row["frame"], row["image_location"], None
                if row["track"] == key:
                    mine = row
        if current is not None:
            yield location, mine

    def renamed(location):
        return f"{track['submission_name']}/{location.rpartition('/')[2]}"

    waiting, last = [], None  # the frames before the track's first
    for location, row in frames():
        if row is None and last is None:
            waiting.append(location)
            continue
        if row is not None:
            for early in waiting:
                yield renamed(early), row
            waiting, last = [], row
        yield renamed(location), last


def submission_rows(csv_path: Path):
    """`(location, row)` per line of a video's submission from its per-frame CSV: each frame's row, or for tracked
    faces each track's rows in turn (`tracked_rows`)."""
    record = csv_path.with_suffix(".json")
    if record.is_file():
        for track in json.loads(record.read_text(encoding="utf-8"))["tracks"]:
            yield from tracked_rows(csv_path, track)
        return
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            yield row["image_location"], row


def precision_of(model, quantize: str | None) -> str:
    """What the model computes in, for the records: `float32`, `bfloat16`, `float16`, `int8 (dynamic)` or
    `float32 (onnxruntime)`."""
    if quantize:
        return "int8 (dynamic)"
    return getattr(model, "precision", None) or str(model.dtype).removeprefix("torch.")


def add_precision_options(parser) -> None:
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="float32",
                        help="weights and compute: auto = bfloat16 on GPUs and on CPUs with AMX-BF16 or AVX512-BF16 "
                             "(faster there), float32 elsewhere")
    parser.add_argument("--quantize", choices=("int8",), default=None,
                        help="int8: every linear layer dynamically quantized (CPU)")
    parser.add_argument("--backend", choices=BACKENDS, default="pytorch",
                        help="onnxruntime: MODEL is a folder written by `emotic export-onnx` (CPU, float32)")


def draw_timelines(summary: dict, frames_dir: Path, folder: Path, labels) -> None:
    """`timelines/<video>.png` for each tracked video with people in it (`report.plot_tracks`), unless already drawn
    from its CSV as it is now."""
    from emotic.inference.report import plot_tracks

    for name, counts in summary["videos"].items():
        csv_path, path = frames_dir / f"{name}.csv", folder / f"{name}.png"
        if not counts.get("tracks") or (path.is_file() and path.stat().st_mtime >= csv_path.stat().st_mtime):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        plot_tracks(path, csv_path, labels, counts["tracks"])


def tracked_sources(sources, faces: str, geometry: str, temporal_model=None) -> set:
    """The names of the sources whose faces are all tracked (`--faces`): with `all`, every video and frame folder;
    with `auto`, the video files, unless the frames are aligned crops (`--geometry template`). Separate images are
    never tracked."""
    if faces not in FACES:
        raise ValueError(f"--faces {faces!r}; allowed: {', '.join(FACES)}")
    if faces == "largest" or (faces == "auto" and (geometry == "template" or temporal_model)):
        return set()
    if faces == "all" and geometry == "template":
        raise ValueError("--faces all finds faces with the detector; --geometry template says the frames are aligned "
                         "crops of one face: drop one of the two")
    if faces == "all" and temporal_model:
        raise ValueError("--temporal_model predicts one face per frame from its neighbours; with a temporal head "
                         "use --faces largest")
    from emotic.processing.face_geometry import detector_available

    kinds = ("video",) if faces == "auto" else ("video", "frames")
    chosen = {source.name for source in sources if source.kind in kinds}
    if chosen and not detector_available():
        if faces == "auto":
            return set()  # nothing to find faces with: the largest-face behaviour, as the processor's template
        raise ImportError("--faces all needs the face detector and landmark models: pip install 'emotic[faces]'")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("emotic predict", __doc__)
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("inputs", nargs="+", help="videos, frame folders, folders of those, or images")
    parser.add_argument("--output_dir", default="predictions")
    parser.add_argument("--smoothing_window", type=int, default=None,
                        help="odd number of frames (1 = no smoothing); default: the model's smoothing_window")
    parser.add_argument("--smoothing_mode", choices=get_args(SmoothingMode), default=None,
                        help="default: the model's smoothing_mode")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--geometry", choices=GEOMETRIES, default=None,
                        help="face geometry: template for aligned crops (Aff-Wild2 cropped_aligned), detector to find "
                             "faces in each frame; default: the processor's (auto)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    add_precision_options(parser)
    parser.add_argument("--temporal_model", default=None, metavar="TEMPORAL",
                        help="a temporal head (`emotic finetune-temporal`) over MODEL's features: MODEL gives each "
                             "frame's features, the head the predictions, from windows of frames (videos and frame "
                             "folders only)")
    parser.add_argument("--faces", choices=FACES, default="auto",
                        help="all: every face of each frame, tracked with stable ids (a row per frame and face; "
                             "smoothing within each person; submissions per person); largest: the largest face only; "
                             "auto: all for video files, largest for frame folders, images and --geometry template")
    parser.add_argument("--max_faces", type=int, default=8, help="--faces all: the largest faces kept per frame")
    parser.add_argument("--max_gap", type=float, default=2.0,
                        help="--faces all: seconds a person may be out of sight and keep their id on return")
    parser.add_argument("--detect_every", type=int, default=1,
                        help="--faces all: detect faces on every n-th frame, follow them by landmarks in between "
                             "(faster; see docs/inference.md)")
    parser.add_argument("--subjects", default=None, metavar="NAMES",
                        help="--faces all: names for a video's people by where they first appear, left to right "
                             "(e.g. left,right as Aff-Wild2 names two subjects): submission rows <video>_<name>")
    parser.add_argument("--fps", type=float, default=None,
                        help=f"the frame rate of frame folders: fills their time column (empty without it) and "
                             f"sets --max_gap in frames ({DEFAULT_FPS:g} fps assumed without it); a video's own header "
                             f"gives its rate")
    parser.add_argument("--compound_submission", action="store_true",
                        help="also write submission_compound.txt: the 7 compound expressions of the ABAW compound "
                             "track, zero-shot from the expression probabilities (emotic.inference.compound)")
    parser.add_argument("--overwrite", action="store_true", help="redo videos already finished in --output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sources = collect_sources(args.inputs)
    except ValueError as error:
        parser.error(str(error))
    processes = Processes()  # under `accelerate launch`, this process's share of the inputs
    try:
        model, processor = load_model(args.model, args.device or processes.device, args.dtype, args.quantize,
                                      args.backend)
    except ValueError as error:
        parser.error(str(error))
    try:
        if args.temporal_model:
            separate = [source.name for source in sources if not source.sequential]
            if separate:
                raise ValueError(f"--temporal_model predicts each frame from the frames around it: it takes videos "
                                 f"and frame folders only, not separate images ({', '.join(separate[:3])})")
        from emotic.inference.temporal import make_predictor  # (it builds on this module)

        predictor = make_predictor(model, processor, args.temporal_model, args.backend, args.batch_size,
                                   args.geometry)
        head = predictor.model.config  # whose outputs are written: the frame model's, or the temporal head's
        window = args.smoothing_window if args.smoothing_window is not None else head.smoothing_window
        mode = args.smoothing_mode or head.smoothing_mode
        smoothing_kernel(window, mode)
    except ValueError as error:
        parser.error(str(error))
    labels = [head.id2label[i] for i in range(head.num_labels)]
    track = head_track(head)
    if track != "expr" and mode == "mode":
        parser.error(f"--smoothing_mode mode is a majority vote of expression labels; this {track.upper()} model's "
                     f"outputs are smoothed with mean or gaussian")
    if args.compound_submission:
        try:
            check_compound_labels(labels)
        except ValueError as error:
            parser.error(f"--compound_submission: {error}")

    try:
        tracked = tracked_sources(sources, args.faces, args.geometry or processor.geometry, args.temporal_model)
        subjects = [name.strip() for name in args.subjects.split(",")] if args.subjects else []
        if subjects and (len(set(subjects)) != len(subjects) or not all(subjects)
                         or any("/" in name for name in subjects)):
            raise ValueError(f"--subjects {args.subjects!r}: expected distinct names separated by commas, e.g. "
                             f"left,right")
        if args.fps is not None and not args.fps > 0:
            raise ValueError(f"--fps {args.fps}: expected a frame rate > 0")
        tracker = {"max_faces": args.max_faces, "max_gap": args.max_gap, "detect_every": args.detect_every}
        if tracked:
            from emotic.inference.tracking import tracked_predictor

            people = tracked_predictor(model, processor, args.batch_size, tracker)
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    output = Path(args.output_dir)
    frames_dir = output / "frames"
    settings = {"model": str(args.model), "temporal_model": args.temporal_model and str(args.temporal_model),
                "precision": precision_of(model, args.quantize),
                "smoothing_window": window, "smoothing_mode": mode,
                "geometry": args.geometry or processor.geometry, "labels": labels, "fps": args.fps,
                "faces": {"faces": args.faces, **(tracker if tracked else {}), "subjects": subjects}}
    if processes.is_main:  # held until the process ends: one predict per output folder
        lock = claim_output(output, frames_dir, "*.csv.*.partial", "predict_settings.json", settings, args.overwrite,
                            parser, "predictions", "`emotic predict`")
    processes.wait()

    summary_path = output / "summary.json"
    earlier = _read_summary(summary_path) if not args.overwrite else {}
    mine = work_share(processes, sources, lambda source: frames_dir / f"{source.name}.csv", _count_written,
                      lambda source: _write_source(source, people if source.name in tracked else predictor,
                                                   labels, window, mode, frames_dir, not args.quiet, args.fps,
                                                   subjects), earlier, args.overwrite)
    summary = merge_shares(processes.gather(mine), sources, settings,
                           ("frames", FACE, NO_FACE, UNREADABLE, "faces", "reliable", "dropped_faces"))
    totals, already = summary["totals"], summary["totals"]["already_done"]
    code = 1 if summary["skipped"] or summary["incomplete"] else 0
    if not processes.is_main:
        processes.close()
        return code
    lines = write_submission(sources, frames_dir, labels, output / "submission.txt", predictor.parts,
                             getattr(head, "label_thresholds", None))
    if args.compound_submission:
        finished = [frames_dir / f"{source.name}.csv" for source in sources if source.name in summary["videos"]]
        write_compound_submission(finished, labels, output / "submission_compound.txt", submission_rows)
    if track == "expr":
        draw_timelines(summary, frames_dir, output / "timelines", labels)
    summary_path.write_text(json.dumps(summary, indent=2))
    people_line = ""
    if tracked:
        found = [counts for name, counts in summary["videos"].items() if "tracks" in counts]
        people_line = (f"; faces tracked in {len(found)} videos: {totals['faces']} faces in "
                       f"{sum(len(counts['tracks']) for counts in found)} tracks, {totals['reliable']} reliable"
                       + (f", {totals['dropped_faces']} beyond --max_faces {args.max_faces} left out"
                          if totals["dropped_faces"] else ""))
    print(f"{len(summary['videos'])} of {len(sources)} inputs predicted ({already} already done"
          + (f", {processes.count} processes" if processes.count > 1 else "") + f"), {totals['frames']} "
          f"frames: {totals[NO_FACE]} without a face and {totals[UNREADABLE]} unreadable"
          + (" (one-face inputs: carried a neighbour's prediction)" if len(tracked) < len(sources) else "")
          + f"{people_line}; smoothing {mode} over {window} frames; {lines} lines in {output / 'submission.txt'}")
    report_problems(summary, summary_path, "predicted only in part")
    processes.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
