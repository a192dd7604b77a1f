"""The options of the inference commands as dataclasses, each group declared once and shared (transformers'
`HfArgumentParser`, as the training commands' options are): the frame model's precision and backend, how frames are
batched and their faces found, how people are tracked, smoothing, and the output folder. `parse` turns a command
line into them; the commands turn a `ValueError` of the library into their one-line refusal."""

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser

from emotic.commands import check_number
from emotic.inference.faces import FACES
from emotic.processing.face_geometry import FaceDetector, set_face_detector
from emotic.processing.image_processing_emotic import Geometry

MODEL_HELP = "a model folder (the --output_dir of `emotic finetune`) or a Hub id"
Faces = Literal[FACES]  # auto, all, largest
MAX_FPS = 1000.0  # frames a second: the most a frame rate may be (a camera's is at most a few hundred)
MAX_GAP = 86400.0  # seconds a tracked person may be away: at most a day


@dataclass
class PrecisionArguments:
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda if available)"})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(default="float32", metadata={
        "help": "weights and compute: auto = bfloat16 on GPUs and on CPUs with AMX-BF16 or AVX512-BF16 where a "
                "start-up probe measures it faster than float32, float32 elsewhere"})
    quantize: Literal["int8"] | None = field(default=None, metadata={
        "help": "int8: every linear layer dynamically quantized (CPU)"})
    backend: Literal["pytorch", "onnxruntime"] = field(default="pytorch", metadata={
        "help": "onnxruntime: MODEL is a folder written by `emotic export-onnx` (CPU, float32)"})


@dataclass
class FramesArguments:
    batch_size: int | None = field(default=None, metadata={
        "help": "frames (faces) the model runs at once (default: 8 on the CPU, 32 on a GPU)"})
    geometry: Geometry | None = field(default=None, metadata={
        "help": "face geometry: template for aligned crops (Aff-Wild2 cropped_aligned), detector to find faces in "
                "each frame; default: the processor's (auto)"})
    detector: FaceDetector | None = field(default=None, metadata={
        "help": "the face detector wherever faces are found (--geometry detector or auto, tracked faces): blazeface "
                "(MediaPipe's; the default where LiteRT is installed, as emotic[faces] does) or hog (dlib's)"})

    def check(self) -> None:
        """Refuses what is out of range, and makes `--detector` the detector of this process's face finding."""
        if self.batch_size is not None:
            check_number("--batch_size", self.batch_size, 1, 65536, integer=True)
        try:
            set_face_detector(self.detector)
        except ImportError as error:
            raise ValueError(str(error)) from None


@dataclass
class AudioArguments:
    audio_model: str | None = field(default=None, metadata={
        "help": "a transformers speech encoder (Hub id or folder: Wav2Vec2, HuBERT, WavLM, Whisper) whose features "
                "of each video's sound are stored per frame beside the frame model's"})
    audio_dir: str | None = field(default=None, metadata={
        "metavar": "DIR",
        "help": "the videos frame folders were cut from (DIR/<folder>.mp4, ...; <video>_left and _right take "
                "<video>'s sound): their sound goes with the frames (videos given as inputs have their own)"})
    audio_layer: int | None = field(default=None, metadata={
        "help": "the speech encoder's hidden layer pooled (0: its input embeddings; default: the last)"})
    audio_window: float = field(default=2.0, metadata={"help": "seconds of sound each audio feature is pooled over"})
    audio_stride: float = field(default=0.5, metadata={
        "help": "seconds between the centres of audio windows; each frame takes the window centred nearest it"})

    def check(self) -> None:
        check_number("--audio_window", self.audio_window, 0.1, 60)
        check_number("--audio_stride", self.audio_stride, 0.01, 60)
        if self.audio_layer is not None:
            check_number("--audio_layer", self.audio_layer, 0, 1000, integer=True)

    def encoder(self, device: str = "cpu", batch_size: int = 8, dtype=None):
        """The `emotic.inference.audio.AudioEncoder` these options name (in `dtype`, the frame model's), or None
        without --audio_model; its `AudioRefused` (a `ValueError`) says what does not load."""
        if not self.audio_model:
            return None
        from emotic.inference.audio import AudioEncoder

        return AudioEncoder(self.audio_model, self.audio_layer, self.audio_window, self.audio_stride, device,
                            batch_size, dtype)


@dataclass
class TextArguments:
    text_model: str | None = field(default=None, metadata={
        "help": "a transformers text encoder (Hub id or folder) whose embedding of the words spoken around each "
                "frame is stored beside its features (the words: --transcripts or --asr_model)"})
    transcripts: str | None = field(default=None, metadata={
        "metavar": "DIR",
        "help": "subtitle files of the videos: DIR/<video>.srt or .vtt (<video>_left and _right take <video>'s)"})
    asr_model: str | None = field(default=None, metadata={
        "help": "instead of --transcripts: a transformers speech-recognition model (Whisper, a CTC model) whose "
                "words, with their times, are the transcripts"})
    text_window: float = field(default=3.0, metadata={
        "help": "seconds around each frame whose words make its text features"})

    def check(self) -> None:
        check_number("--text_window", self.text_window, 0.1, 600)
        if self.text_model and bool(self.transcripts) == bool(self.asr_model):
            raise ValueError("--text_model: give the words as --transcripts DIR or --asr_model ID (one of them)")
        if (self.transcripts or self.asr_model) and not self.text_model:
            raise ValueError(f"{'--transcripts' if self.transcripts else '--asr_model'}: for --text_model (the "
                             f"words' encoder)")
        if self.transcripts and not Path(self.transcripts).is_dir():
            raise ValueError(f"--transcripts {self.transcripts}: not a folder; expected one of <video>.srt / .vtt "
                             f"files")

    def encoder(self, device: str = "cpu", dtype=None):
        """The `emotic.inference.transcripts.TextEncoder` these options name (in `dtype`, the frame model's), or None
        without --text_model."""
        if not self.text_model:
            return None
        from emotic.inference.transcripts import TextEncoder

        return TextEncoder(self.text_model, self.text_window, device, dtype=dtype)

    def recogniser(self, device: str = "cpu"):
        """The speech-recognition pipeline of --asr_model, or None; a `ValueError` naming it if it does not load."""
        if not self.asr_model:
            return None
        from transformers import pipeline

        try:
            return pipeline("automatic-speech-recognition", model=self.asr_model, device=device)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--asr_model {self.asr_model}: does not load as a transformers speech-recognition "
                             f"model ({str(error).splitlines()[0]})") from None


@dataclass
class HeadInputsArguments:
    """Where the other modalities of a --temporal_model that hears or reads come from (`emotic predict`, `evaluate`):
    the encoders are those the head records (its `audio_settings`, `text_settings`); these options say where they
    are when the head names only a local folder, and where frame folders' sound and words are."""

    audio_model: str | None = field(default=None, metadata={
        "help": "for a --temporal_model that hears: the speech encoder it was trained with (a folder or Hub id; "
                "default: the one its config names)"})
    audio_dir: str | None = field(default=None, metadata={
        "metavar": "DIR",
        "help": "for a --temporal_model that hears (or --asr_model): the videos frame folders were cut from "
                "(DIR/<folder>.mp4, ...; <video>_left and _right take <video>'s sound)"})
    text_model: str | None = field(default=None, metadata={
        "help": "for a --temporal_model that reads: the text encoder it was trained with (default: the one its "
                "config names)"})
    transcripts: str | None = field(default=None, metadata={
        "metavar": "DIR",
        "help": "for a --temporal_model trained on subtitles: the videos' DIR/<video>.srt or .vtt"})
    asr_model: str | None = field(default=None, metadata={
        "help": "for a --temporal_model trained on recognised words: the speech recogniser (default: the one its "
                "config names)"})


# a live source's default --detect_every: on 2 CPU cores, detecting on every frame of a 25 fps 640x360 stream of two
# people falls behind (about 14 frames/s, whatever the encoder), every fifth keeps up (docs/benchmarks.md)
LIVE_DETECT_EVERY = 5


@dataclass
class TrackerArguments:
    max_faces: int = field(default=8, metadata={"help": "the largest faces kept per frame (tracked faces)"})
    max_gap: float = field(default=2.0, metadata={
        "help": "seconds a person may be out of sight and keep their id on return (tracked faces)"})
    detect_every: int | None = field(default=None, metadata={
        "help": "detect faces on every n-th frame, follow them by landmarks in between (faster; see "
                f"docs/inference.md); default 1, and {LIVE_DETECT_EVERY} for live sources (cameras, streams, pipes)"})

    def options(self, live: bool = False) -> dict:
        """The tracker's keyword arguments (`emotic.inference.tracking.FaceTracker`), for files or, with `live`,
        for live sources."""
        every = self.detect_every or (LIVE_DETECT_EVERY if live else 1)
        return {"max_faces": self.max_faces, "max_gap": self.max_gap, "detect_every": every}

    def check(self) -> None:
        check_number("--max_faces", self.max_faces, 1, 1024, integer=True)
        check_number("--max_gap", self.max_gap, 0, MAX_GAP)
        if self.detect_every is not None:
            check_number("--detect_every", self.detect_every, 1, 10_000, integer=True)


@dataclass
class OutputArguments:
    overwrite: bool = field(default=False, metadata={"help": "redo videos already finished in --output_dir"})


@dataclass
class ProgressArguments:
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})


class CommandParser(HfArgumentParser):
    """The parser of an inference command: its dataclasses' options (each accepted with underscores and with
    dashes), its positional arguments, and its module docstring as its help. A `bool` option that defaults to false
    is a plain flag (`--overwrite`, never `--overwrite VALUE`), so that it may stand anywhere on the line."""

    def __init__(self, prog: str, doc: str, dataclass_types, positionals=()):
        paragraphs = doc.split("\n\n")
        super().__init__(list(dataclass_types), prog=prog, description=paragraphs[0],
                         epilog="\n\n".join(paragraphs[2:]), formatter_class=argparse.RawDescriptionHelpFormatter)
        for names, options in positionals:
            self.add_argument(*names, **options)

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field):
        if field.type is bool and field.default is False:
            names = [f"--{field.name}", *([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])]
            parser.add_argument(*names, action="store_true", **dict(field.metadata))
            return
        HfArgumentParser._parse_dataclass_field(parser, field)

    def parse(self, argv=None) -> tuple:
        """(the positional arguments as a namespace, then each dataclass) of a command line (without the command);
        each dataclass's `check()` refuses what is out of range, as argparse refuses what is not a number."""
        *options, positional = self.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
        for group in options:
            try:
                getattr(group, "check", lambda: None)()
            except ValueError as error:
                self.error(str(error))
        return (positional, *options)
