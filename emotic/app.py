"""`emotic app MODEL`: a web demo of what the model sees, in Gradio (`pip install "emotic[app]"`).

    emotic app runs/dual-view [--host 127.0.0.1] [--port 7860] [--max_video_seconds 60] [--max_file_mb 50]

**Photo** (upload or webcam): every face found (largest first, at most `--max_faces`) with its face and region boxes
drawn on the photo; per face the main view and the auxiliary view the model was given, the fusion block's attention
from the main view to the auxiliary patches drawn over the auxiliary view, and the 8 expression probabilities.
**Video** (upload): every person tracked (with the face detector installed), a timeline of each one's smoothed
expression and the frame with the most people, numbered as in the files; or, for the largest face or aligned crops,
the per-frame probability timeline raw and smoothed and the smoothed label track. The window and mode change without
running the model again; the per-frame CSV and ABAW submission of `emotic predict` are offered to download.

Everything is served from this machine: Gradio's analytics are off, the page uses the system's fonts, and nothing is
fetched from the internet. A file that is not an image or video, a photo without a face, a file over `--max_file_mb`
and a video over `--max_video_seconds` get a message in the page; the details of an unexpected failure stay in the
server's log. MODEL is a local folder or a Hub id (installed code, never remote code).
"""

import atexit
import functools
import html
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emotic.hub_cards.card import plain_markdown
from emotic.inference.arguments import MODEL_HELP, CommandParser, PrecisionArguments, check_number
from emotic.inference.faces import OneFace, TrackedFaces
from emotic.inference.report import denormalise, fusion_maps, pyplot
from emotic.inference.results import FACE
from emotic.inference.runtime import Runtime, load_model
from emotic.inference.smoothing import smooth
from emotic.inference.sources import Frames, Source, UnreadableInput, VideoHeader, iter_frames
from emotic.inference.stream import score, stream
from emotic.inference.writers import (
    FrameCsv,
    track_records,
    write_frame_csv,
    write_submission,
    write_tracks_record,
)
from emotic.modeling.configuration_emotic import check_smoothing_window
from emotic.processing.face_geometry import FaceLandmarker, detector_available
from emotic.tracks import track_of

logger = logging.getLogger(__name__)

PEOPLE = "people"  # the video tab's choice of every face, tracked per person (`emotic predict --faces all`)
FACE_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]
REGION_COLOURS = {"eyes": "#ffe119", "nose": "#bfef45", "mouth": "#fabed4"}
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: nothing fetched from the internet
SYSTEM_MONO = ["ui-monospace", "monospace"]


# -- what the model sees (no Gradio here: the functions the page calls, usable and tested on their own) ---------------

@dataclass
class Face:
    box: tuple  # (x0, y0, x1, y1) in photo pixels
    regions: dict  # region name -> box
    probabilities: np.ndarray  # (num_labels,)
    main_view: np.ndarray  # (H, W, 3) uint8: what the encoder sees
    aux_view: np.ndarray  # (H, W, 3) uint8: the auxiliary view
    attention: np.ndarray | None  # (grid, grid): fusion attention over the auxiliary patches, None without one


@dataclass
class VideoResult:
    """A video through the inference loop (`emotic.inference.stream`) at window 1: every result, one face a frame
    (`tracks` None) or every face tracked per person (as `emotic predict --faces all`), smoothed again for any window
    without running the model again."""

    name: str
    results: list  # FrameResult per frame (one face) or per face (tracked): raw, and smoothed at window 1 (filled)
    fps: float | None
    frames: int
    tracks: list | None = None  # tracked: per person its record (`emotic.inference.writers.track_records`)
    dropped: int = 0  # tracked: faces beyond max_faces

    @property
    def tracked(self) -> bool:
        return self.tracks is not None

    @property
    def locations(self) -> list:
        return [result.location for result in self.results]

    @property
    def statuses(self) -> list:
        return [result.status for result in self.results]

    @property
    def raw(self) -> np.ndarray:
        """`(frames, classes)`: as the model gave them (one face a frame; uniform where there is no face)."""
        return np.stack([result.raw for result in self.results])


class Analyser:
    """A model and its processor, and what the page asks of them."""

    def __init__(self, model, processor, max_faces: int = 8, max_video_seconds: float = 60.0,
                 batch_size: int | None = None):
        track = track_of(model.config)
        if not track.single_label:
            raise ValueError(f"emotic app shows expression models; this one serves the {track.name.upper()} track "
                             f"(problem_type {model.config.problem_type!r}): use `emotic predict` for it")
        self.model, self.processor = model.eval(), processor
        self.runtime = Runtime(model, processor, batch_size=batch_size)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.max_faces, self.max_video_seconds = max_faces, max_video_seconds

    def faces(self, image) -> tuple[np.ndarray, list[Face]]:
        """The photo as RGB and every face in it, largest first. Without a face detector (or with a processor set to
        the aligned template) the photo is taken as one aligned face crop."""
        rgb = self.processor.to_rgb(image)
        pixels = np.asarray(rgb)
        landmarks = None
        if self.processor.geometry != "template" and detector_available():
            landmarks = FaceLandmarker.shared().all_faces(pixels, limit=self.max_faces)
            if not landmarks:
                raise ValueError("no face found in this photo; the model reads expressions from faces: try one where "
                                 "a face is clearly visible, upright and at least about 80 pixels wide")
        inputs = self.processor([rgb] * (len(landmarks) if landmarks else 1), landmarks=landmarks,
                                return_tensors="pt", return_regions=True)
        device = self.model.device
        with torch.inference_mode():
            logits = self.model(pixel_values=inputs["pixel_values"].to(device),
                                pixel_values_aux=inputs["pixel_values_aux"].to(device)).logits
        probabilities = logits.float().softmax(-1).cpu().numpy()
        # the attention comes from a second, eager pass (SDPA returns no weights); the probabilities stay those of the
        # model's own attention path, which `pipeline` runs
        maps = fusion_maps(self.model, inputs) if isinstance(self.model, torch.nn.Module) else None  # ONNX: none
        mains, auxes = ([self._display(view) for view in inputs[key].float().cpu()]
                        for key in ("pixel_values", "pixel_values_aux"))
        faces = []
        for i, region in enumerate(inputs["regions"]):
            faces.append(Face(box=region["face"], regions={k: region[k] for k in ("eyes", "nose", "mouth")},
                              probabilities=probabilities[i], main_view=mains[i], aux_view=auxes[i],
                              attention=None if maps is None else maps[i]))
        return pixels, faces

    def _display(self, view: torch.Tensor) -> np.ndarray:
        """A normalised view `(3, H, W)` back to `(H, W, 3)` uint8 pixels."""
        return (denormalise(view, self.processor) * 255).round().astype(np.uint8)

    def video(self, path, progress=None, geometry: str | None = None) -> VideoResult:
        """The largest face of each frame of a video file through the model (`progress(done, total)` after each
        batch), or a `ValueError` for a file that is not a readable video or is longer than `max_video_seconds`.
        `geometry`: the processor's (`auto`: find the face in each frame; `template`: the frames are aligned face
        crops); default the processor's own."""
        return self._run(Path(path), OneFace(self.processor, geometry), progress)

    def people(self, path, progress=None) -> VideoResult:
        """Every face of every frame of a video file, tracked per person, as `emotic predict --faces all` finds them
        (the same rows), or a `ValueError` as for `video`."""
        return self._run(Path(path), TrackedFaces(self.processor, max_faces=self.max_faces), progress)

    def _run(self, path: Path, faces, progress) -> VideoResult:
        frames, declared = self._open_video(path)

        class Counter:  # what the loop reports to: frames done so far
            done = 0

            def update(self, count):
                self.done += count
                if progress is not None:
                    progress(self.done, max(declared, self.done))

        counter = Counter()
        try:
            results = list(stream(frames, self.runtime, faces, progress=counter))
        except UnreadableInput as error:
            raise ValueError(str(error).replace(str(path), path.name)) from None
        if not results:
            raise ValueError("the video has no frames")
        if not faces.tracked:
            return VideoResult(path.stem, results, frames.fps, counter.done)
        return VideoResult(path.stem, results, frames.fps, counter.done, track_records(faces.seen, path.stem),
                           faces.dropped)

    def smoothed(self, result: VideoResult, window: int, mode: str) -> list:
        """The results smoothed over `window` frames again (each person within their own track), as `emotic
        predict` smooths them."""
        return list(smooth(result.results, check_smoothing_window(int(window)), mode, tracked=result.tracked))

    def write_outputs(self, result: VideoResult, smoothed: list, folder: Path) -> tuple[Path, Path]:
        """The per-frame CSV (with tracked faces, its record) and the ABAW submission of `emotic predict`, for this
        video, in `folder`."""
        frames_dir = folder / "frames"
        frames_dir.mkdir(parents=True, exist_ok=True)
        csv_path = frames_dir / f"{result.name}.csv"
        write_frame_csv(csv_path, smoothed, self.labels, self.runtime.parts, tracked=result.tracked)
        if result.tracked:
            write_tracks_record(csv_path, {"tracks": result.tracks})
        submission = folder / "submission.txt"
        write_submission([csv_path], self.labels, submission, self.runtime.parts)
        return csv_path, submission

    def people_picture(self, path, result: VideoResult):
        """The frame with the most people (the first such), each face boxed with its person's number."""
        from PIL import ImageDraw

        counts = {}
        for row in result.results:
            counts[row.frame] = counts.get(row.frame, 0) + (row.face is not None)
        best = max(counts, key=lambda frame: (counts[frame], -frame))
        faces = [row.face for row in result.results if row.frame == best and row.face is not None]
        image = next(image for index, (_, image) in enumerate(iter_frames(Source(result.name, "video", Path(path))))
                     if index == best).convert("RGB")
        draw = ImageDraw.Draw(image)
        width = max(2, round(max(image.size) / 300))
        font = _font(max(12, round(max(image.size) / 30)))
        names = {track["track"]: track["name"] for track in result.tracks}
        for face in faces:
            labelled_box(draw, face.box, f"person {names.get(face.track, face.track)}",
                         FACE_COLOURS[(face.track - 1) % len(FACE_COLOURS)], width, font)
        return image

    def _open_video(self, path: Path) -> tuple[Frames, int]:
        """The frames of a video file (decoded lazily and stopped past `max_video_seconds`) and its declared frame
        count; a `ValueError` for a file that is not a video or is too long."""
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise ValueError("this file holds no video stream")
                header = VideoHeader.read(container, container.streams.video[0])
        except av.FFmpegError:
            raise ValueError("this file cannot be read as a video; upload an MP4, WebM, AVI, MOV or MKV file") \
                from None
        fps, seconds, declared = header.fps, header.seconds, header.frames()
        if seconds is not None and seconds > self.max_video_seconds:
            raise ValueError(f"the video is {seconds:.1f} s long; this app takes videos up to "
                             f"{self.max_video_seconds:g} s (emotic app --max_video_seconds), or run "
                             f"`emotic predict` on it, which has no limit")
        limit = int(self.max_video_seconds * (fps or 30)) + 1  # a header without a duration: count the frames

        def items():
            for index, frame in enumerate(iter_frames(Source(path.stem, "video", path))):
                if index >= limit:
                    raise ValueError(f"the video is longer than {self.max_video_seconds:g} s (emotic app "
                                     f"--max_video_seconds)")
                yield frame

        return Frames(path.stem, items(), fps), declared


class LiveSession:
    """The browser camera's frames as they come (the app's live tab): every face tracked per person with a tracker of
    its own, the model on each frame's faces, each frame drawn with a box, number and label per person, and the
    session's rows in a CSV with the columns of `emotic predict --faces all` (unsmoothed: `label` is the frame's),
    appended and flushed frame by frame. Frames are timed by the clock from the first one."""

    def __init__(self, analyser: Analyser, folder: Path, fps: float = 5.0, name: str = "live"):
        self.analyser, self.name = analyser, name
        self.faces = TrackedFaces(analyser.processor, max_faces=analyser.max_faces)
        self.faces.start(fps)  # the rate frames come at: the tracker's gaps are counted in frames
        self.csv_path = folder / f"{name}.csv"
        self._handle = open(self.csv_path, "w", newline="", encoding="utf-8")
        self.table = FrameCsv(self._handle, analyser.labels, analyser.runtime.parts, tracked=True)
        self.index, self.started = 0, None

    def frame(self, image) -> tuple["Image.Image", list]:  # noqa: F821
        """One camera frame (RGB array or PIL image): the frame drawn with each person's box and label, and its
        results (`FrameResult`s; one without a face where nobody is seen)."""
        from PIL import Image, ImageDraw

        now = time.monotonic()
        self.started = self.started if self.started is not None else now
        rgb = self.analyser.processor.to_rgb(image if isinstance(image, Image.Image) else Image.fromarray(image))
        results, views, viewed = self.faces.prepare([(f"{self.name}/{self.index + 1:05d}.jpg", self.index,
                                                      now - self.started, rgb)])
        self.index += 1
        score(self.analyser.runtime, results, views, viewed)
        drawn = rgb.copy()
        draw = ImageDraw.Draw(drawn)
        width, font = max(2, round(max(drawn.size) / 300)), _font(max(12, round(max(drawn.size) / 40)))
        labels = self.analyser.labels
        for result in results:
            result.smoothed = result.raw
            self.table.write(result)
            if result.face is not None:
                best = int(np.argmax(result.raw))
                labelled_box(draw, result.face.box, f"person {result.track}: {labels[best]} {result.raw[best]:.0%}",
                             FACE_COLOURS[(result.track - 1) % len(FACE_COLOURS)], width, font)
        self._handle.flush()
        return drawn, results

    def timeline(self, seconds: float = 30.0):
        """Each person's label over the last `seconds` of the session (a figure), or None before anyone is seen."""
        from emotic.inference.report import tracks_figure

        tracks = track_records(self.faces.seen, self.name)
        if not tracks:
            return None
        figure = tracks_figure(self.csv_path, self.analyser.labels, tracks)
        elapsed = time.monotonic() - (self.started or time.monotonic())
        for axis in figure.axes:
            axis.set_xlim(max(0.0, elapsed - seconds), max(seconds, elapsed))
        return figure

    def close(self) -> None:
        self._handle.close()


# -- drawing -----------------------------------------------------------------------------------------------------------

def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's own font: nothing fetched
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def annotate(pixels: np.ndarray, faces: list[Face], labels) -> "Image.Image":  # noqa: F821
    """The photo with each face's box, number and label, and its eye, nose and mouth boxes."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    font = _font(max(12, round(max(image.size) / 40)))
    for number, face in enumerate(faces, 1):
        colour = FACE_COLOURS[(number - 1) % len(FACE_COLOURS)]
        for region, box in face.regions.items():
            draw.rectangle(box, outline=REGION_COLOURS[region], width=max(1, width // 2))
        best = int(np.argmax(face.probabilities))
        labelled_box(draw, face.box, f"{number}: {labels[best]} {face.probabilities[best]:.0%}", colour, width, font)
    return image


def labelled_box(draw, box, text: str, colour: str, width: int, font) -> None:
    """A face's box outlined in `colour`, `text` in white on that colour above it."""
    draw.rectangle(box, outline=colour, width=width)
    x, y = box[0], max(0, box[1] - font.size - 2 * width)
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    draw.rectangle((left - width, top - width, right + width, bottom + width), fill=colour)
    draw.text((x, y), text, fill="white", font=font)


def attention_overlay(aux_view: np.ndarray, attention: np.ndarray | None) -> np.ndarray:
    """The fusion attention (a `(grid, grid)` map) drawn over the auxiliary view as a heat map; the view itself
    when the model has no fusion attention."""
    if attention is None:
        return aux_view
    from PIL import Image

    plt = pyplot()
    height, width = aux_view.shape[:2]
    scaled = (attention - attention.min()) / max(float(np.ptp(attention)), 1e-12)
    heat = Image.fromarray((scaled * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
    colours = plt.get_cmap("inferno")(np.asarray(heat) / 255.0)[..., :3] * 255
    return (0.45 * aux_view + 0.55 * colours).round().clip(0, 255).astype(np.uint8)


def probability_chart(faces: list[Face], labels):
    """One horizontal bar chart of the expression probabilities per face, side by side."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(faces), figsize=(3.4 * len(faces) + 0.8, 3.2), squeeze=False, sharey=True)
    for number, (axis, face) in enumerate(zip(axes[0], faces), 1):
        best = int(np.argmax(face.probabilities))
        colours = ["#9aa5b1"] * len(labels)
        colours[best] = FACE_COLOURS[(number - 1) % len(FACE_COLOURS)]
        axis.barh(range(len(labels)), face.probabilities, color=colours)
        axis.set_yticks(range(len(labels)), labels)
        axis.invert_yaxis()
        axis.set_xlim(0, 1)
        axis.set_xlabel("probability")
        axis.set_title(f"face {number}: {labels[best]}")
    figure.tight_layout()
    return figure


def timeline_chart(result: VideoResult, smoothed: np.ndarray, labels, window: int, mode: str):
    """Per-frame probabilities raw and smoothed, and the smoothed label track, against time."""
    plt = pyplot()
    frames = np.arange(1, len(result.locations) + 1)
    x, unit = (frames / result.fps, "seconds") if result.fps else (frames, "frame")
    colours = plt.get_cmap("tab10")(np.arange(len(labels)))
    figure, (raw_axis, smooth_axis, track_axis) = plt.subplots(
        3, 1, figsize=(10, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2]})
    for index, label in enumerate(labels):
        raw_axis.plot(x, result.raw[:, index], color=colours[index], linewidth=0.9, label=label)
        smooth_axis.plot(x, smoothed[:, index], color=colours[index], linewidth=1.6)
    raw_axis.set_title("raw: per frame")
    smooth_axis.set_title(f"smoothed: {mode} over {window} frames" if window > 1 else "smoothed: window 1 (none)")
    for axis in (raw_axis, smooth_axis):
        axis.set_ylim(0, 1)
        axis.set_ylabel("probability")
    raw_axis.legend(ncol=4, fontsize=8, loc="upper right")
    track = smoothed.argmax(1)
    no_face = np.array([status != FACE for status in result.statuses])
    track_axis.scatter(x, track, c=colours[track], marker="|", s=120)
    if no_face.any():
        track_axis.scatter(x[no_face], track[no_face], c="black", marker="x", s=12, label="no face (neighbour's)")
        track_axis.legend(fontsize=8, loc="upper right")
    track_axis.set_yticks(range(len(labels)), labels, fontsize=7)
    track_axis.set_ylim(len(labels) - 0.5, -0.5)
    track_axis.set_title("smoothed label")
    track_axis.set_xlabel(unit)
    figure.tight_layout()
    return figure


# -- the page ----------------------------------------------------------------------------------------------------------

def gradio():
    """Gradio, imported with its analytics off (it reads the setting on import): the page calls nowhere."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio

    return gradio


def _friendly(function):
    """Callbacks raise `gr.Error` with a plain message for bad input; anything unexpected is logged here and the
    page says so without a stack trace."""
    gr = gradio()

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError) as error:
            message = str(error)
            for arg in args:  # the upload's temporary path on this server becomes its file name
                if isinstance(arg, str) and os.path.sep in arg:
                    message = message.replace(arg, Path(arg).name)
            raise gr.Error(html.escape(message)) from None  # a file's name shown as it is, never as HTML
        except Exception:
            logger.exception("emotic app: %s failed", function.__name__)
            raise gr.Error("something went wrong on the server; the details are in its log") from None

    return wrapper


def _photo_input(gr, **options):
    """`gr.Image` handing the uploaded file itself to the processor (`image_mode=None`: no conversion or re-encoding
    on the way), and saying in the page when the file cannot be decoded, instead of failing on the server. (Its
    `preprocess` is wrapped on the instance: a subclass of a Gradio component makes Gradio write a `.pyi` file beside
    this module.)"""
    from PIL import Image

    photo = gr.Image(type="filepath", image_mode=None, **options)
    decode = photo.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except Image.DecompressionBombError:
            raise gr.Error("the photo has too many pixels for this app; upload a smaller one") from None
        except (OSError, ValueError, SyntaxError):  # Pillow's UnidentifiedImageError is an OSError
            name = Path(getattr(payload, "orig_name", None) or "the upload").name
            raise gr.Error(f"{html.escape(name)} cannot be read as an image; upload a JPEG, PNG, WebP, BMP or TIFF "
                           f"photo") from None

    photo.preprocess = preprocess
    return photo


def build_app(analyser: Analyser, title: str = "emotic"):
    """The Gradio Blocks of the three tabs, for `analyser`; launch it with `launch_options(max_file_mb)`."""
    gr = gradio()

    labels = analyser.labels
    workdir = Path(tempfile.mkdtemp(prefix="emotic-app-"))  # downloads: this app's own folder, removed at exit
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)

    @_friendly
    def on_photo(path):
        if not path:
            raise gr.Error("upload a photo or take one with the webcam first")
        pixels, faces = analyser.faces(path)
        gallery = []
        for number, face in enumerate(faces, 1):
            best = labels[int(np.argmax(face.probabilities))]
            gallery += [(face.main_view, f"face {number} ({best}): main view"),
                        (face.aux_view, f"face {number}: auxiliary view"),
                        (attention_overlay(face.aux_view, face.attention),
                         f"face {number}: fusion attention" if face.attention is not None
                         else f"face {number}: no fusion attention in this model")]
        lines = [f"**Face {n}**{' (largest)' if n == 1 and len(faces) > 1 else ''}: "
                 f"<span class='emotic-label'>{labels[int(np.argmax(f.probabilities))]}</span> "
                 f"({f.probabilities.max():.1%})" for n, f in enumerate(faces, 1)]
        return annotate(pixels, faces, labels), gallery, probability_chart(faces, labels), "  \n".join(lines)

    @_friendly
    def on_video(path, geometry, window, mode, progress=gr.Progress()):
        if not path:
            raise gr.Error("upload a video first")
        progress(0, desc="reading frames")
        report = lambda done, total: progress((done, total), unit="frames")  # noqa: E731
        folder = Path(tempfile.mkdtemp(dir=workdir))  # this video's files, rewritten for each smoothing window
        if geometry == PEOPLE:
            result = analyser.people(path, report)
            picture = analyser.people_picture(path, result) if result.tracks else None
        else:
            result, picture = analyser.video(path, report, geometry), None
        return ((result, folder), *_video_outputs(result, folder, window, mode), picture)

    @_friendly
    def on_smoothing(state, window, mode):
        if state is None:
            return gr.skip(), gr.skip(), gr.skip()
        return _video_outputs(*state, window, mode)

    def _video_outputs(result, folder, window, mode):
        if result.tracked:
            return _people_outputs(result, folder, window, mode)
        rows = analyser.smoothed(result, window, mode)
        csv_path, submission = analyser.write_outputs(result, rows, folder)
        smoothed = np.stack([row.smoothed for row in rows])
        faces = sum(status == FACE for status in result.statuses)
        summary = (f"**{len(result.locations)} frames**{f' at {result.fps:.3g} frames/s' if result.fps else ''}; "
                   f"a face in {faces}. Smoothed label of most frames: "
                   f"**{labels[int(np.bincount(smoothed.argmax(1), minlength=len(labels)).argmax())]}**")
        return timeline_chart(result, smoothed, labels, int(window), mode), [str(csv_path), str(submission)], summary

    def _people_outputs(result, folder, window, mode):
        from emotic.inference.report import tracks_figure

        smoothed = analyser.smoothed(result, window, mode)
        csv_path, submission = analyser.write_outputs(result, smoothed, folder)
        faces = sum(row.face is not None for row in result.results)
        reliable = sum(row.face is not None and row.face.quality.reliable for row in result.results)
        most = []
        for track in result.tracks:
            mine = [row.smoothed.argmax() for row in smoothed if row.track == track["track"]]
            most.append(f"person {track['name']} **{labels[int(np.bincount(mine, minlength=len(labels)).argmax())]}**")
        summary = (f"**{result.frames} frames**{f' at {result.fps:.3g} frames/s' if result.fps else ''}; "
                   f"**{len(result.tracks)} {'person' if len(result.tracks) == 1 else 'people'}** tracked "
                   f"({faces} faces, {reliable} reliable"
                   + (f", {result.dropped} beyond the {analyser.max_faces} largest left out" if result.dropped else "")
                   + "). Smoothed label of most frames: " + (", ".join(most) if most else "nobody found"))
        figure = tracks_figure(csv_path, labels, result.tracks) if result.tracks else None
        return figure, [str(csv_path), str(submission)], summary

    live_every = 0.2  # seconds between the camera frames the live tab sends
    live_redraw = round(2 / live_every)  # frames between redraws of the timeline and the file (2 seconds)

    @_friendly
    def on_live(image, session):
        if image is None:
            return gr.skip(), gr.skip(), gr.skip(), session
        if session is None:  # a new camera session: its own tracker and CSV
            session = LiveSession(analyser, Path(tempfile.mkdtemp(dir=workdir)), fps=1 / live_every)
        drawn, _ = session.frame(image)
        if session.index % live_redraw != 1:  # the timeline and the file every 2 seconds, and at the first frame
            return drawn, gr.skip(), gr.skip(), session
        return drawn, session.timeline(), str(session.csv_path), session

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# {plain_markdown(title)}\nFacial expressions as the model sees them: the face, its main view, "
                    f"the auxiliary view of the eyes, nose and mouth, and where the fusion attention looks. "
                    f"Expressions are how a face looks in one frame, not what a person feels.")
        with gr.Tab("Photo"):
            with gr.Row():
                photo = _photo_input(gr, label="photo", sources=["upload", "webcam"], elem_id="photo-input")
                annotated = gr.Image(label="faces and regions", show_label=False, interactive=False,
                                     elem_id="photo-annotated")
            photo_button = gr.Button("Analyse photo", variant="primary", elem_id="photo-run")
            summary = gr.Markdown(elem_id="photo-summary")
            views = gr.Gallery(label="views per face: main, auxiliary, fusion attention", columns=6, height=270,
                               elem_id="photo-views")
            chart = gr.Plot(label="expression probabilities", elem_id="photo-chart")
        with gr.Tab("Video"):
            with gr.Row():
                video = gr.Video(label="video", sources=["upload"], include_audio=True,  # the file as uploaded: no
                                 elem_id="video-input")  # conversion (which would need an ffmpeg program)
                with gr.Column():
                    people = detector_available() and analyser.processor.geometry != "template"
                    geometry = gr.Radio([*([("every person, tracked", PEOPLE)] if people else []),
                                         ("the largest face in each frame", "auto"),
                                         ("frames are aligned face crops", "template")],
                                        value=PEOPLE if people else "template"
                                        if analyser.processor.geometry == "template" else "auto",
                                        label="faces", elem_id="video-geometry")
                    window = gr.Slider(1, 61, value=max(1, analyser.model.config.smoothing_window), step=2,
                                       label="smoothing window (frames)", elem_id="video-window")
                    mode = gr.Radio(["mean", "gaussian", "mode"], value=analyser.model.config.smoothing_mode,
                                    label="smoothing", elem_id="video-mode")
                    video_button = gr.Button("Analyse video", variant="primary", elem_id="video-run")
            video_summary = gr.Markdown(elem_id="video-summary")
            timeline = gr.Plot(label="timeline", elem_id="video-timeline")
            people_picture = gr.Image(label="the people, numbered as in the files", interactive=False,
                                      elem_id="video-people")
            downloads = gr.File(label="per-frame CSV and ABAW submission", file_count="multiple",
                                elem_id="video-files")
            state = gr.State()
        if detector_available() and analyser.processor.geometry != "template":
            with gr.Tab("Live"):
                gr.Markdown("Your camera, as it happens: every person tracked, boxed and labelled frame by frame "
                            f"(about {1 / live_every:g} frames a second), each one's expression over the last 30 "
                            "seconds, and a CSV of every frame since the camera started (the columns of `emotic "
                            "predict`). Start the camera to begin.")
                with gr.Row():
                    camera = gr.Image(label="camera", sources=["webcam"], streaming=True, type="numpy",
                                      elem_id="live-camera")
                    live_view = gr.Image(label="people and expressions", interactive=False, elem_id="live-view")
                live_timeline = gr.Plot(label="each person over the last 30 seconds", elem_id="live-timeline")
                live_file = gr.File(label="every frame since the camera started (CSV)", elem_id="live-file")
                live_state = gr.State()
            camera.stream(on_live, [camera, live_state], [live_view, live_timeline, live_file, live_state],
                          stream_every=live_every, time_limit=3600, concurrency_limit=4)
        photo_button.click(on_photo, photo, [annotated, views, chart, summary])
        video_button.click(on_video, [video, geometry, window, mode],
                           [state, timeline, downloads, video_summary, people_picture])
        for control in (window, mode):
            control.change(on_smoothing, [state, window, mode], [timeline, downloads, video_summary])
    return app


def load_app(model_name_or_path: str, device: str | None = None, dtype: str = "float32", quantize: str | None = None,
             max_faces: int = 8, max_video_seconds: float = 60.0, title: str | None = None, backend: str = "pytorch"):
    """The app's Blocks for a model folder or Hub id (what a Space's `app.py` calls); launch it with
    `app.queue().launch(**launch_options(max_file_mb))`."""
    for name, value in (("max_faces", max_faces), ("max_video_seconds", max_video_seconds)):
        if value <= 0:
            raise ValueError(f"{name}={value}; expected a positive number")
    model, processor = load_model(model_name_or_path, device, dtype, quantize, backend)
    title = title or f"emotic: {Path(model_name_or_path.rstrip('/')).name}"
    return build_app(Analyser(model, processor, max_faces, max_video_seconds), title)


def launch_options(max_file_mb: float = 50.0) -> dict:
    """`Blocks.launch` options: a theme with system fonts (no web fonts fetched), the upload limit."""
    gr = gradio()

    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)
    return {"theme": theme, "max_file_size": f"{max_file_mb:g}mb", "show_error": True}


@dataclass
class AppArguments:
    host: str = field(default="127.0.0.1", metadata={"help": "address to serve on (0.0.0.0: every interface)"})
    port: int = 7860
    max_video_seconds: float = field(default=60.0, metadata={"help": "longer videos are refused"})
    max_file_mb: float = field(default=50.0, metadata={"help": "larger uploads are refused"})
    max_faces: int = field(default=8, metadata={"help": "faces analysed per photo, largest first"})
    title: str | None = field(default=None, metadata={"help": "the page's title (default: the model's name)"})

    def check(self) -> None:
        check_number("--port", self.port, 0, 65535, integer=True)
        check_number("--max_video_seconds", self.max_video_seconds, 0, 86400, low_open=True)
        check_number("--max_file_mb", self.max_file_mb, 0, 1_000_000, low_open=True)
        check_number("--max_faces", self.max_faces, 1, 1024, integer=True)


def main(argv=None) -> int:
    parser = CommandParser("emotic app", __doc__, (AppArguments, PrecisionArguments),
                           positionals=[(("model",), {"metavar": "MODEL", "help": MODEL_HELP})])
    inputs, args, precision = parser.parse(argv)
    try:
        gradio()
    except ImportError:
        print('emotic app: needs Gradio: pip install "emotic[app]"', file=sys.stderr)
        return 2
    try:
        app = load_app(inputs.model, precision.device, precision.dtype, precision.quantize, args.max_faces,
                       args.max_video_seconds, args.title, precision.backend)
    except (ValueError, OSError) as error:
        print(f"emotic app: {inputs.model}: {error}", file=sys.stderr)
        return 2
    # A service manager stops the app with SIGTERM: taken as Ctrl-C, so Gradio closes its server and the app's folder
    # of downloads (atexit) is removed instead of being left in the temporary directory with users' results.
    signal.signal(signal.SIGTERM, _interrupt)
    app.queue().launch(server_name=args.host, server_port=args.port, **launch_options(args.max_file_mb))
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
