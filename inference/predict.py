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

A live source (`-`: a stream on standard input; `rtsp://`, `http(s)://`, `udp://`, `srt://`; a capture device such as
`/dev/video0`) is read until it ends, or until Ctrl-C or SIGTERM, which end it as if it had ended: its files are then
complete for the frames read (`emotic.inference.live`). Decoding runs in a thread of its own; a frame the model would
take more than `--max_latency` seconds after it was decoded is dropped (a row with status `dropped`, counted) unless
`--no_drop`; faces are detected on every fifth frame unless `--detect_every` is given; rows are flushed as they
become final (`frames/<name>.csv.<pid>.partial` can be followed with `tail -f` until the stream ends), and
`summary.json` gives the latency from decoding to row (p50, p95).

On video files and live sources (and frame folders with `--faces all`) every face is tracked
(`emotic.inference.tracking`): a row per frame and person with the track id, face box, detector score, a quality
record and a `reliable` flag, smoothing within each person's track only, submission rows per person
(`<video>_<track>`, or the `--subjects` names), the tracks in `summary.json` and a timeline per person in
`timelines/<video>.png`. `--faces largest` keeps one face.

With `--temporal_model TEMPORAL` (a temporal head from `emotic finetune-temporal`), MODEL gives each frame's
features and the head the predictions, from windows of frames (`emotic.inference.runtime.TemporalHead`): the files
are the same, in the head's labels, thresholds and smoothing; each video's features are held while its windows run.

Outputs in `--output_dir`: `frames/<video>.csv` (per frame: location, frame, time, status, raw and smoothed label,
smoothed probabilities; see `emotic.inference.writers.frame_header` for the other tracks and tracked faces),
`submission.txt` (header `image_location,Neutral,...,Other`, then `video/00001.jpg,<label>`;
`image_location,AU1,...,AU26` then 12 0/1 at the model's `label_thresholds`; `image_location,valence,arousal` then
the two values; a multi-task model's `image,valence,arousal,expression,AU1,...` as ABAW7's multi-task challenge
asks) and `summary.json` (counts and what was skipped, with reasons); with `--compound_submission`,
`submission_compound.txt` (the 7 compound expressions, zero-shot from the expression probabilities:
`emotic.inference.compound`).

The command composes the inference layer: sources -> faces -> runtime -> the one loop (`stream`) -> writers, in an
output folder claimed by one run (`outputs`); `accelerate launch -m emotic.inference.predict` shares the inputs
among processes (`processes`).
"""

import contextlib
import csv
import json
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from emotic.inference.arguments import (
    MAX_FPS,
    MODEL_HELP,
    HeadInputsArguments,
    CommandParser,
    Faces,
    FramesArguments,
    OutputArguments,
    PrecisionArguments,
    ProgressArguments,
    TrackerArguments,
    check_number,
)
from emotic.inference.compound import check_compound_labels
from emotic.inference.faces import OneFace, TrackedFaces, tracked_sources
from emotic.inference.live import LiveFrames, LiveOptions, latency_summary
from emotic.inference.outputs import (
    OutputRefused,
    claim_output,
    merge_shares,
    read_summary,
    report_problems,
    work_share,
    written_when_complete,
)
from emotic.inference.processes import Processes
from emotic.inference.results import DROPPED, FACE, MISSING, NO_FACE, STATUSES, UNREADABLE
from emotic.inference.runtime import Runtime
from emotic.inference.smoothing import smoothing_kernel
from emotic.inference.sources import (
    DEFAULT_FPS,
    UnreadableInput,
    check_decoded,
    collect_sources,
    frame_files,
    open_frames,
)
from emotic.inference.stream import stream
from emotic.inference.transcripts import TranscriptRefused
from emotic.inference.writers import (
    FrameCsv,
    draw_timelines,
    track_records,
    write_compound,
    write_submission,
    write_tracks_record,
)
from emotic.modeling.configuration_emotic import SmoothingMode
from emotic.tracks import track_of


@dataclass
class PredictArguments:
    output_dir: str = field(default="predictions")
    smoothing_window: int | None = field(default=None, metadata={
        "help": "odd number of frames (1 = no smoothing); default: the model's smoothing_window"})
    smoothing_mode: SmoothingMode | None = field(default=None, metadata={"help": "default: the model's smoothing_mode"})
    temporal_model: str | None = field(default=None, metadata={
        "metavar": "TEMPORAL",
        "help": "a temporal head (`emotic finetune-temporal`) over MODEL's features: MODEL gives each frame's "
                "features, the head the predictions, from windows of frames (videos and frame folders only)"})
    faces: Faces = field(default="auto", metadata={
        "help": "all: every face of each frame, tracked with stable ids (a row per frame and face; smoothing within "
                "each person; submissions per person); largest: the largest face only; auto: all for video files, "
                "largest for frame folders, images and --geometry template"})
    subjects: str | None = field(default=None, metadata={
        "metavar": "NAMES",
        "help": "tracked faces: names for a video's people by where they first appear, left to right (e.g. "
                "left,right as Aff-Wild2 names two subjects): submission rows <video>_<name>"})
    fps: float | None = field(default=None, metadata={
        "help": f"the frame rate of frame folders: fills their time column (empty without it) and sets --max_gap in "
                f"frames ({DEFAULT_FPS:g} fps assumed without it); a video's own header gives its rate"})
    jsonl: str | None = field(default=None, metadata={
        "metavar": "PATH",
        "help": "also write every row as a JSON line (the CSV's columns and the video's name) to PATH, flushed line by "
                "line; - for standard output (the command's own messages then go to standard error)"})
    compound_submission: bool = field(default=False, metadata={
        "help": "also write submission_compound.txt: the 7 compound expressions of the ABAW compound track, "
                "zero-shot from the expression probabilities (emotic.inference.compound)"})

    def check(self) -> None:
        check_number("--fps", self.fps, 0, MAX_FPS, low_open=True)


@dataclass
class LiveArguments:
    """Live sources (`-`, `rtsp://`, `http(s)://`, `/dev/video0`): `emotic.inference.live`."""

    max_latency: float = field(default=2.0, metadata={
        "metavar": "S",
        "help": "live sources: a frame the model would take more than S seconds after it was decoded is dropped (a "
                "row with status dropped, counted), so the model never falls further behind"})
    no_drop: bool = field(default=False, metadata={
        "help": "live sources: drop nothing (a recorded stream that must be complete); the reader waits for the "
                "model"})
    source_format: str | None = field(default=None, metadata={
        "metavar": "FORMAT",
        "help": "live sources: FFmpeg's input format (mpegts, v4l2, ...); default: probed from the data"})
    reconnect: int = field(default=0, metadata={
        "metavar": "N",
        "help": "live network sources: a stream that ends or breaks off is opened again, up to N times in a row "
                "(pauses of 0.5 s doubling to 8 s); the gap's frames are rows with status missing, and people "
                "keep their ids across a gap shorter than --max_gap"})

    def check(self) -> None:
        check_number("--max_latency", self.max_latency, 0, 3600, low_open=True)
        check_number("--reconnect", self.reconnect, 0, 1_000_000, integer=True)

    def options(self) -> LiveOptions:
        return LiveOptions(None if self.no_drop else self.max_latency, self.source_format, self.reconnect)


def build_parser() -> CommandParser:
    return CommandParser("emotic predict", __doc__,
                         (PredictArguments, FramesArguments, PrecisionArguments, TrackerArguments, OutputArguments,
                          ProgressArguments, LiveArguments, HeadInputsArguments),
                         positionals=[(("model",), {"metavar": "MODEL", "help": MODEL_HELP}),
                                      (("inputs",), {"nargs": "+",
                                                     "help": "videos, frame folders, folders of those, images, or a "
                                                             "live source: - (standard input), rtsp://, http(s)://, "
                                                             "/dev/video0"})])


def new_counts(tracked: bool = False) -> dict:
    """A video's counts: frames by status, and rows by the geometry of their auxiliary view (`geometries`)."""
    counts = {"frames": 0, FACE: 0, NO_FACE: 0, UNREADABLE: 0, "geometries": {}}
    return {**counts, "faces": 0, "reliable": 0} if tracked else counts


def count_geometry(counts: dict, geometry: str | None) -> None:
    if geometry:
        counts["geometries"][geometry] = counts["geometries"].get(geometry, 0) + 1


def total_geometries(videos: dict) -> dict:
    totals = {}
    for counts in videos.values():
        for geometry, number in counts.get("geometries", {}).items():
            totals[geometry] = totals.get(geometry, 0) + number
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def predict_source(source, runtime: Runtime, faces, smoothing, frames_dir: Path, show_progress: bool,
                   fps: float | None = None, subjects=(), live: LiveOptions | None = None, lines=None) -> dict:
    """Predict one source into `frames/<name>.csv` (renamed into place when finished): its counts for the summary.
    `fps`: the frame rate of a frame folder (a video's own header gives its rate). With tracked faces, a row per
    face and the video's tracks recorded (`frames/<name>.json`, read back on a restart). A live source (`live`: its
    options) is read until it ends or Ctrl-C / SIGTERM stops it (the files are then complete for the frames read);
    its rows are flushed as each becomes final, and it counts dropped frames and the latency of its rows. `lines`: a
    text handle that also gets each row as a JSON line (`--jsonl`)."""
    from tqdm.auto import tqdm

    tracked = faces.tracked
    counts, files = new_counts(tracked), frame_files(source)
    final = frames_dir / f"{source.name}.csv"
    reader, latencies = None, []
    with written_when_complete(final) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as handle, \
                tqdm(total=len(files) if files is not None else None, desc=source.name, unit="frame",
                     disable=not show_progress, leave=False) as progress:
            table = FrameCsv(handle, runtime.labels, runtime.parts, getattr(runtime.head, "label_thresholds", None),
                             tracked)
            if source.kind == "stream":
                reader = LiveFrames(source, live or LiveOptions())
                frames = reader.frames(runtime.batch_size)
            else:
                frames = open_frames(source, files, fps)  # a video's rate is known from its first frame
            last = None
            with stopped_by_signals(reader):
                for result in stream(frames, runtime, faces, smoothing, progress):
                    if not tracked or result.frame != last:  # a tracked frame has a row per face
                        counts["frames"] += 1
                        counts[result.status] = counts.get(result.status, 0) + 1
                        last = result.frame
                        if reader is not None and (latency := reader.latency(result.frame)) is not None \
                                and result.status not in (DROPPED, MISSING):
                            latencies.append(latency)
                    count_geometry(counts, result.geometry)
                    if tracked:
                        counts["faces"] += result.face is not None
                        counts["reliable"] += bool(result.face is not None and result.face.quality.reliable)
                    row = table.write(result)
                    if reader is not None:
                        handle.flush()  # a live source's rows can be followed as they come
                    if lines is not None:
                        lines.write(json.dumps({"video": source.name, **json_row(table.header, row)}) + "\n")
                        lines.flush()
        if reader is not None:
            counts[DROPPED], counts[MISSING] = counts.get(DROPPED, 0), counts.get(MISSING, 0)
            counts.update(latency_summary(latencies), stopped=reader.stopped_by,
                          reconnections=reader.notes.get("reconnections", 0))
            if reader.notes.get("corrupt_packets"):
                counts["corrupt_packets"] = reader.notes["corrupt_packets"]
            if "error" in reader.notes:
                counts["incomplete"] = reader.notes["error"]
            if "gone" in reader.notes:  # ended, and did not come back when opened again
                counts["ended"] = reader.notes["gone"]
                print(reader.notes["gone"], file=sys.stderr)
        if runtime.temporal is not None and runtime.temporal.audio is not None:  # a head that hears: did it?
            counts["heard"] = source.name not in runtime.temporal.without_audio
        if runtime.temporal is not None and runtime.temporal.text is not None:  # a head that reads: were there words?
            counts["read"] = source.name not in runtime.temporal.without_text
        if len(sizes := frames.notes.get("frame_sizes", [])) > 1:  # a video's or a stream's: said and kept
            counts["frame_sizes"] = sizes
            changes = f"{len(sizes) - 1} time{'s' * (len(sizes) > 2)}"
            print(f"{source.name}: the frame size changed {changes} ({', '.join(sizes)}); each row's box is in its "
                  "own frame's pixels", file=sys.stderr)
        if tracked:
            counts["fps"], counts["dropped_faces"] = frames.fps, faces.dropped
            counts["tracks"] = track_records(faces.seen, source.name, subjects)
        incomplete = check_decoded(source, counts["frames"], counts[UNREADABLE], frames.notes, "predictions")
        if tracked:  # before the CSV is renamed into place: a video with its CSV always has its record
            write_tracks_record(final, counts)
        else:
            final.with_suffix(".json").unlink(missing_ok=True)  # a tracked run's record of this video, redone
        if incomplete:
            counts["incomplete"] = incomplete
    return counts


def heard_line(summary: dict) -> str:
    """What the last line says of a temporal head that hears or reads: how many videos it heard (the others, without
    sound, ran on its missing-audio token) and had words for; nothing for other heads."""
    line = ""
    for key, what in (("heard", "heard {} of {} videos (no sound in the others: without audio)"),
                      ("read", "read words in {} of {} videos (none in the others: without text)")):
        flags = [counts[key] for counts in summary["videos"].values() if key in counts]
        if flags:
            line += "; the temporal head " + what.format(sum(flags), len(flags))
    return line


def json_row(header: list, row: list) -> dict:
    """A CSV row as JSON values: numbers as numbers, empty cells as null, the rest (locations, labels) as text."""
    values = {}
    for name, value in zip(header, row):
        if isinstance(value, str):
            if value == "":
                value = None
            else:
                try:
                    value = float(value) if any(c in value for c in ".en") else int(value)
                except ValueError:
                    pass
        values[name] = value
    return values


@contextlib.contextmanager
def stopped_by_signals(reader: LiveFrames | None):
    """While a live source is read, Ctrl-C and SIGTERM end it as if it had ended (the frames read so far are
    written, every file complete); a second Ctrl-C interrupts at once. The reader is stopped however the block ends.
    Nothing changes for files."""
    if reader is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        try:
            yield
        finally:
            reader.stop()
        return

    def stop(signum, frame):
        print(f"\nstopping {reader.source.name}: writing what was read (Ctrl-C again to abort)", file=sys.stderr)
        reader.stop(signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    earlier = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        reader.stop()
        for number, handler in earlier.items():
            signal.signal(number, handler)


def count_written(csv_path: Path) -> dict:
    """The counts of a video finished by an earlier run: its record (tracked faces), else counted from its CSV."""
    record = csv_path.with_suffix(".json")
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    counts = new_counts()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            counts["frames"] += 1
            counts[row["status"]] += 1
            count_geometry(counts, row.get("geometry"))
    return counts


def parse_subjects(text: str | None) -> list[str]:
    """`--subjects left,right` as names; a `ValueError` unless they are distinct and usable in a file name."""
    subjects = [name.strip() for name in text.split(",")] if text else []
    if subjects and (len(set(subjects)) != len(subjects) or not all(subjects) or any("/" in name for name in subjects)):
        raise ValueError(f"--subjects {text!r}: expected distinct names separated by commas, e.g. left,right")
    return subjects


def main(argv=None) -> int:
    parser = build_parser()
    inputs, args, frames_args, precision, tracker, output_args, progress, live_args, head_inputs = parser.parse(argv)
    try:
        sources = collect_sources(inputs.inputs)
    except ValueError as error:
        parser.error(str(error))
    processes = Processes()  # under `accelerate launch`, this process's share of the inputs
    try:
        if args.temporal_model:
            separate = [source.name for source in sources if not source.sequential]
            if separate:
                raise ValueError(f"--temporal_model predicts each frame from the frames around it: it takes videos "
                                 f"and frame folders only, not separate images ({', '.join(separate[:3])})")
        runtime = Runtime.load(inputs.model, precision.device or processes.device, precision.dtype, precision.quantize,
                               precision.backend, frames_args.batch_size, temporal_model=args.temporal_model,
                               head_inputs=head_inputs)
        live = [source for source in sources if source.kind == "stream"]
        if live and runtime.temporal is not None and runtime.temporal.hears_or_reads:
            raise ValueError(f"{live[0].url}: the temporal head {args.temporal_model} hears or reads, which takes "
                             f"video files, not live streams")
        head = runtime.head  # whose outputs are written: the frame model's, or the temporal head's
        window = args.smoothing_window if args.smoothing_window is not None else head.smoothing_window
        mode = args.smoothing_mode or head.smoothing_mode
        smoothing_kernel(window, mode)
        track = track_of(head)
        track.check_smoothing_mode(mode)
        if args.compound_submission:
            try:
                check_compound_labels(runtime.labels)
            except ValueError as error:
                raise ValueError(f"--compound_submission: {error}") from None
        geometry = frames_args.geometry or runtime.processor.geometry
        tracked = tracked_sources(sources, args.faces, geometry, args.temporal_model)
        subjects = parse_subjects(args.subjects)
        one_face = OneFace(runtime.processor, frames_args.geometry)
        people = TrackedFaces(runtime.processor, **tracker.options()) if tracked else None
        live_options = tracker.options(live=True) if any(source.name in tracked for source in live) else None
        live_people = TrackedFaces(runtime.processor, **live_options) if live_options else None
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    labels = runtime.labels
    output = Path(args.output_dir)
    frames_dir = output / "frames"
    live_every = {"live_detect_every": live_options["detect_every"]} if live_options else {}
    settings = {"model": str(inputs.model), "temporal_model": args.temporal_model and str(args.temporal_model),
                "precision": runtime.precision, "smoothing_window": window, "smoothing_mode": mode,
                "geometry": geometry, "labels": labels, "fps": args.fps,
                "faces": {"faces": args.faces, **(tracker.options() if tracked else {}), "subjects": subjects,
                          **live_every},
                **({"audio": runtime.temporal.audio.settings} if runtime.temporal and runtime.temporal.audio else {}),
                **({"text": runtime.temporal.model.config.text_settings}
                   if runtime.temporal and runtime.temporal.text else {})}
    if processes.is_main:  # held until the process ends: one predict per output folder
        try:
            lock = claim_output(output, frames_dir, "*.csv.*.partial", "predict_settings.json", settings,  # noqa: F841
                                output_args.overwrite, "predictions", "`emotic predict`")
        except OutputRefused as error:
            parser.error(str(error))
        for source in sources:  # a live stream goes on: its earlier recording is never taken for this one
            if source.kind == "stream" and (frames_dir / f"{source.name}.csv").exists() and not output_args.overwrite:
                parser.error(f"{source.url}: {frames_dir / source.name}.csv holds an earlier recording of this "
                             f"stream; give another --output_dir, or --overwrite to replace it")
    processes.wait()

    summary_path = output / "summary.json"
    earlier = read_summary(summary_path) if not output_args.overwrite else {}
    lines, say = None, sys.stdout
    if args.jsonl == "-":
        lines, say = sys.stdout, sys.stderr  # standard output carries the rows only
    elif args.jsonl:
        try:
            lines = open(args.jsonl, "a", encoding="utf-8")  # appended to: nothing earlier is lost
        except OSError as error:
            parser.error(f"--jsonl {args.jsonl}: cannot be written ({error.strerror})")
    def faces_of(source):
        if source.name not in tracked:
            return one_face
        return live_people if source.kind == "stream" else people

    mine = work_share(processes, sources, lambda source: frames_dir / f"{source.name}.csv", count_written,
                      lambda source: predict_source(source, runtime, faces_of(source),
                                                    (window, mode), frames_dir, not progress.quiet, args.fps,
                                                    subjects, live_args.options(), lines), earlier,
                      output_args.overwrite, skip=(UnreadableInput, TranscriptRefused))  # a garbled subtitle file
    if lines is not None and lines is not sys.stdout:
        lines.close()
    summary = merge_shares(processes.gather(mine), sources, settings,
                           ("frames", *STATUSES, DROPPED, MISSING, "faces", "reliable", "dropped_faces"))
    summary["totals"]["geometries"] = total_geometries(summary["videos"])
    totals, already = summary["totals"], summary["totals"]["already_done"]
    code = 1 if summary["skipped"] or summary["incomplete"] else 0
    if not processes.is_main:
        processes.close()
        return code
    csv_paths = [frames_dir / f"{source.name}.csv" for source in sources]
    submitted = write_submission(csv_paths, labels, output / "submission.txt", runtime.parts,
                             getattr(head, "label_thresholds", None))
    if args.compound_submission:
        finished = [frames_dir / f"{source.name}.csv" for source in sources if source.name in summary["videos"]]
        write_compound(finished, labels, output / "submission_compound.txt")
    if track.single_label:
        draw_timelines(summary, frames_dir, output / "timelines", labels)
    summary_path.write_text(json.dumps(summary, indent=2))
    people_line = ""
    if tracked:
        found = [counts for name, counts in summary["videos"].items() if "tracks" in counts]
        people_line = (f"; faces tracked in {len(found)} videos: {totals['faces']} faces in "
                       f"{sum(len(counts['tracks']) for counts in found)} tracks, {totals['reliable']} reliable"
                       + (f", {totals['dropped_faces']} beyond --max_faces {tracker.max_faces} left out"
                          if totals["dropped_faces"] else ""))
    print(f"{len(summary['videos'])} of {len(sources)} inputs predicted ({already} already done"
          + (f", {processes.count} processes" if processes.count > 1 else "") + f"), {totals['frames']} "
          f"frames: {totals[NO_FACE]} without a face and {totals[UNREADABLE]} unreadable"
          + (" (one-face inputs: carried a neighbour's prediction)" if len(tracked) < len(sources) else "")
          + (f"; {totals[DROPPED]} live frames dropped to keep within --max_latency" if totals[DROPPED] else "")
          + (f"; {totals[MISSING]} live frames missing while a stream was reconnected" if totals[MISSING] else "")
          + f"{people_line}{heard_line(summary)}; auxiliary views: "
          + (", ".join(f"{name} {number}" for name, number in totals["geometries"].items()) or "none")
          + f"; smoothing {mode} over {window} frames; {submitted} lines in {output / 'submission.txt'}", file=say)
    report_problems(summary, summary_path, "predicted only in part")
    processes.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
