"""What the inference commands read: videos (decoded with PyAV), folders of frames, folders of those, and loose
images, as sources of (image location, frame) pairs streamed one frame at a time (`Frames`, what the loop takes)."""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from emotic.processing.image_files import IMAGE_EXTENSIONS

# the last three: MPEG-TS, what broadcasts, camcorders and live encoders record
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts",
                    ".mts", ".m2ts")


class UnreadableInput(Exception):
    """A video or folder that yields no frames: reported, counted and skipped."""


def check_decoded(source, frames: int, unreadable: int, notes: dict, what: str = "predictions") -> str | None:
    """After a source was read through: `UnreadableInput` when it gave no frame or none could be decoded; the
    reason its output is partial when decoding ended before the frames its header declares (a file cut off
    mid-way), else None."""
    if frames == 0:
        raise UnreadableInput(f"{source.path or source.url}: has no frames")
    if unreadable == frames:
        raise UnreadableInput(f"{source.path or source.url or source.name}: none of its {frames} frames could be "
                              f"decoded as an image")
    declared = notes.get("declared_frames", 0)
    if declared > frames:
        return (f"{source.path}: {frames} frames decoded where its header declares {declared} or more (a truncated "
                f"file?); {what} cover those frames only")
    return None


@dataclass
class Source:
    """One unit of prediction: a video file, a folder of frames, or the loose images given on the command line."""

    name: str
    kind: str  # "video" | "frames" | "images" | "stream" (a live source: `emotic.inference.live`)
    path: Path | None = None
    images: list = field(default_factory=list)
    url: str | None = None  # a live source's URL, device or `-`

    @property
    def sequential(self) -> bool:  # frames of one video: neighbours may be used and smoothing applies
        return self.kind != "images"


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _listed(entry: Path) -> bool:
    """Whether a folder's entry is a file to read: a file, or a link to nothing (listed so that it is reported as
    unreadable instead of vanishing: the user meant it)."""
    return entry.is_file() or (entry.is_symlink() and not entry.exists())


def _images_in(folder: Path) -> list[Path]:
    return sorted((entry for entry in folder.iterdir() if _listed(entry) and entry.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: _natural_key(p.name))


def _has_images(folder: Path) -> bool:
    """Whether `folder` holds a frame image: stops at the first one (no full listing at start-up)."""
    return any(entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS for entry in folder.iterdir())


def collect_sources(inputs) -> list[Source]:
    """Sources in the order given; a folder of frames is one video, a folder of frame folders/videos is many."""
    sources, loose = [], []
    for text in inputs:
        path = Path(text)
        if is_live(text):
            sources.append(live_source(text))
        elif path.is_file():
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
                      if _listed(child) and child.suffix.lower() in VIDEO_EXTENSIONS]
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
        names[source.name] = source.path or source.url or "the images given"
    return sources


def frame_files(source: Source) -> list[Path] | None:
    """The image files of an `images` or `frames` source, in order (one listing of a frame folder); None for a
    video or a live source."""
    if source.kind in ("video", "stream"):
        return None
    return source.images if source.kind == "images" else _images_in(source.path)


@dataclass(frozen=True)
class VideoHeader:
    """What a video's header says before a frame is decoded; None or 0 where it says nothing."""

    fps: float | None
    seconds: float | None  # the container's duration, else the declared frames at `fps`
    declared_frames: int  # 0 when the header has no count (Matroska, WebM)

    @classmethod
    def read(cls, container, stream) -> "VideoHeader":
        """From an open PyAV container and its video stream."""
        rate = stream.average_rate or stream.guessed_rate  # an MPEG-TS often declares no average: FFmpeg's guess
        fps = float(rate) if rate else None
        fps = fps if fps is not None and 0 < fps <= 1000 else None  # a header's nonsense rate is no rate
        frames = int(stream.frames or 0)
        seconds = container.duration / 1e6 if container.duration else (frames / fps if frames and fps else None)
        return cls(fps, seconds, frames)

    def frames(self, share: float = 1.0) -> int:
        """The declared frame count, else `share` of the duration's worth of frames; 0 when neither is known."""
        if self.declared_frames:
            return self.declared_frames
        return int(self.seconds * self.fps * share) if self.seconds and self.fps else 0


def iter_frames(source: Source, files: list[Path] | None = None, notes: dict | None = None):
    """(image_location, image or path) for each frame of a source, lazily (one decoded frame at a time). `files`:
    the source's `frame_files`, if already listed. For a video, `notes["declared_frames"]` receives the frame count
    its header declares (or its duration implies; 0 when neither is known), so that a file cut off mid-way is known
    as such, and `notes["fps"]` its average frame rate (None when the header has none)."""
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
            if notes is not None:  # without a count in the header, the duration's worth less 5% (variable rates)
                header = VideoHeader.read(container, stream)
                notes["declared_frames"], notes["fps"] = header.frames(share=0.95), header.fps
            index = 0
            try:
                for frame in container.decode(stream):
                    image = frame.to_image()
                    if notes is not None:
                        note_size(notes, image.size, index)
                    index += 1
                    yield f"{source.name}/{index:05d}.jpg", image
            except av.FFmpegError as error:
                raise UnreadableInput(f"{source.path}: decoding failed after {index} frames ({error})") from None


def note_size(notes: dict, size: tuple, index: int) -> None:
    """Record a video's frame size where it changes (an adaptive stream switching quality, recordings joined end to
    end): `notes["frame_sizes"]`, "WIDTHxHEIGHT from frame N" each. Every frame is still read; its boxes and
    landmarks are in its own pixels."""
    sizes = notes.setdefault("frame_sizes", [])
    text = f"{size[0]}x{size[1]}"
    if not sizes or not sizes[-1].startswith(text + " "):
        sizes.append(f"{text} from frame {index}")


LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://")
STDIN = "-"


def is_live(text: str) -> bool:
    """Whether a command-line input names a live source: `-`, a stream URL or a capture device."""
    return text == STDIN or text.lower().startswith(LIVE_SCHEMES) or text.startswith("/dev/video")


def live_source(text: str) -> Source:
    """The `Source` of a live input, named for its files: `stdin`, a URL's last path part (`live.ts` -> `live`) or
    host, a device's name (`video0`)."""
    if text == STDIN:
        name = "stdin"
    elif text.startswith("/dev/"):
        name = text.rsplit("/", 1)[-1]
    else:
        rest = text.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        last = rest.rsplit("/", 1)[-1] if "/" in rest else rest.split("@")[-1].split(":")[0]
        name = last.rsplit(".", 1)[0] if "." in last and "/" in rest else last
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "stream"
    return Source(name, "stream", url=text)


DEFAULT_FPS = 30.0  # the frame rate assumed where none is known (Aff-Wild2's videos are 30 fps)


@dataclass
class Frames:
    """The frames of one source as the loop takes them (`emotic.inference.stream`): `items`, (location, image, path
    or None) pairs in order (None: an annotated frame without an image); `fps`, the frame rate where it is known
    (a video's header, or the user's); `sequential`: frames of one video (neighbours fill and smooth each other),
    not separate images; `notes`: what decoding learns on the way (`iter_frames`)."""

    name: str
    items: Iterable
    fps: float | None = None
    sequential: bool = True
    notes: dict = field(default_factory=dict)
    total: int | None = None  # the frames to come, where known without decoding (a progress bar's length)
    # a live source's frames, instead of `items`: `take(start)` gives the next batch of (location, image) pairs, as
    # many as have arrived (frame `start` first), [] at the end (`emotic.inference.live.LiveFrames`)
    take: Callable[[int], list] | None = None
    # a live source's: told how long each stage of the loop took for a batch of n frames with an image,
    # `timed(stage, n, seconds)` (stage `prepare` or `model`), for its drop rule
    timed: Callable[[str, int, float], None] | None = None
    path: Path | None = None  # the video file the frames are decoded from (its sound, for a temporal head that hears)


def started(items):
    """`items` with its first item produced before it is handed on (a video's notes, such as its rate, are filled
    by then)."""
    iterator = iter(items)
    first = next(iterator, None)
    return iter(()) if first is None else chain([first], iterator)


def open_frames(source: Source, files: list[Path] | None = None, fps: float | None = None) -> Frames:
    """The frames of a source, started: a video's header is read and its first frame decoded, so that its rate is
    known (else `fps`, the rate a user gave for a frame folder). `files`: its `frame_files`, if already listed."""
    files = frame_files(source) if files is None else files
    notes = {}
    items = started(iter_frames(source, files, notes))
    return Frames(source.name, items, notes.get("fps") or fps, source.sequential, notes,
                  len(files) if files is not None else None, path=source.path if source.kind == "video" else None)
