"""What runs the models of the inference loop: a frame model loaded in its precision and backend (PyTorch in float32,
bfloat16, float16 or int8; an ONNX Runtime graph), run in one of two modes (its head's outputs, or the pooled
features the head classifies), a temporal head over a video's features, and the background batching that prepares
the next batch while the model runs on this one.

    runtime = Runtime.load("runs/dual-view", dtype="auto")                      # outputs: probabilities, values
    runtime = Runtime.load("runs/dual-view", features=True)                     # features: what the head sees
    runtime = Runtime.load("runs/frames", temporal_model="runs/temporal")       # a temporal head's outputs
"""

import functools
from pathlib import Path

import numpy as np
import torch

from emotic.inference.audio import AudioEncoder, read_audio, sound_file, video_rate
from emotic.inference.results import FrameResult
from emotic.inference.transcripts import TextEncoder, read_subtitles, recognised_cues, transcript_file
from emotic.modeling.heads_emotic import head_outputs, head_parts
from emotic.processing.image_processing_emotic import EmoticImageProcessor
from emotic.tracks import OUTPUTS
from emotic.training.affwild2 import annotation_index
from emotic.training.frame_features import SIGNATURE_TOLERANCE, frame_model_signature, signature_difference

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


BFLOAT16_GAIN = 1.1  # how much faster than float32 bfloat16 must measure on a CPU for `--dtype auto` to take it


@functools.lru_cache(maxsize=1)
def cpu_bfloat16_speedup() -> float:
    """How many times faster this CPU runs a ViT-B-sized linear layer (512 tokens, 768 -> 3072) in bfloat16 than in
    float32, at torch's threads: the best of three calls each, after one to warm up, about a tenth of a second once
    per process. Measured, not assumed from the flags: a CPU with AVX512-BF16 and no AMX can run bfloat16 matrix
    products slower than float32 (ViT-B at 0.68x float32's speed, measured on an AMX Xeon with oneDNN held to
    AVX512-BF16), while AMX runs them 3-4x faster."""
    import time

    best = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            layer = torch.nn.Linear(768, 3072).to(dtype)
            tokens = torch.randn(512, 768).to(dtype)
            layer(tokens)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                layer(tokens)
                times.append(time.perf_counter() - started)
            best[dtype] = min(times)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def resolve_dtype(dtype: str, device: str, flags: set | None = None, speedup: float | None = None) -> torch.dtype:
    """`auto`: bfloat16 on a CUDA GPU that supports it, and on a CPU that computes it in hardware and runs it at least
    `BFLOAT16_GAIN` times faster than float32 (`speedup`, measured by `cpu_bfloat16_speedup` unless given); float32
    elsewhere."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"--dtype {dtype!r}; allowed: auto, {', '.join(DTYPES)}")
        return DTYPES[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if device != "cpu" or not cpu_computes_bfloat16(flags):
        return torch.float32
    speedup = cpu_bfloat16_speedup() if speedup is None else speedup
    return torch.bfloat16 if speedup >= BFLOAT16_GAIN else torch.float32


def check_backend(backend: str, features: bool = False, temporal_model: str | None = None) -> None:
    """A `ValueError` where a backend cannot give what is asked: ONNX Runtime runs the exported classifier only."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend != "pytorch" and temporal_model:
        raise ValueError("--temporal_model runs on the PyTorch frame model's features; leave --backend at pytorch")
    if backend != "pytorch" and features:
        raise ValueError("--backend onnxruntime runs the exported classifier, whose graph ends in the head's logits; "
                         "features come from the PyTorch model")


def load_model(model_name_or_path: str, device: str | None = None, dtype: str = "float32",
               quantize: str | None = None, backend: str = "pytorch"):
    """The classifier and its processor from a local folder or a Hub id (installed code; never remote code), on
    `device`, in `dtype` (`auto`: `resolve_dtype`), or with `quantize="int8"` (CPU only) every linear layer
    dynamically quantized to int8. The processor's float32 views are cast to the weights' dtype by the model.
    `backend="onnxruntime"`: the graph of an `emotic export-onnx` folder in ONNX Runtime on the CPU (float32)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    check_backend(backend)
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


def precision_of(model, quantize: str | None) -> str:
    """What the model computes in, for the records: `float32`, `bfloat16`, `float16`, `int8 (dynamic)` or
    `float32 (onnxruntime)`."""
    if quantize:
        return "int8 (dynamic)"
    return getattr(model, "precision", None) or str(model.dtype).removeprefix("torch.")


class FrameModel:
    """The frame model run on batches of views, in one of two modes: `outputs`, its head's outputs as `head_outputs`
    gives them (probabilities, values; `parts` says which columns are which track's), or `features`, the pooled
    feature its head classifies (`forward_head(forward_features(...), pre_logits=True)`: `hidden_size` values)."""

    def __init__(self, model, features: bool = False):
        self.model, self.features = model.eval(), features
        self.device = model.device
        self.parts = head_parts(model.config)
        self.width = model.config.hidden_size if features else model.config.num_labels
        self._no_face = self._stand_in()

    def __call__(self, views) -> np.ndarray:
        """`(images, width)` float values of a batch of the processor's views."""
        with torch.inference_mode():
            values = self.compute(views["pixel_values"].to(self.device), views["pixel_values_aux"].to(self.device))
        return values.float().cpu().numpy()

    def compute(self, pixel_values: torch.Tensor, pixel_values_aux: torch.Tensor) -> torch.Tensor:
        """The head's outputs, or the pooled features, of one batch of views: `(images, width)`."""
        if self.features:
            return self.model.forward_head(self.model.forward_features(pixel_values, pixel_values_aux), pre_logits=True)
        logits = self.model(pixel_values=pixel_values, pixel_values_aux=pixel_values_aux).logits
        return head_outputs(logits.float(), self.parts)

    def no_face(self) -> np.ndarray:
        """The row of a frame without a usable face until its neighbours' replaces it: zero features; per track,
        what `emotic.tracks.OUTPUTS` gives (uniform probabilities, 0.5 per unit, zero values). Read-only: one row
        serves every such frame."""
        return self._no_face

    def _stand_in(self) -> np.ndarray:
        row = np.zeros(self.width)
        if not self.features:
            for kind, span, _ in self.parts:
                row[span] = OUTPUTS[kind].no_face(span.stop - span.start)
        row.flags.writeable = False
        return row


def load_temporal_model(name_or_path: str, frame_model, device=None):
    """The temporal head of a folder or Hub id (installed code; never remote code), on the frame model's device
    and dtype; a `ValueError` unless it is an `EmoticTemporalModel` over features of the frame model's width, trained
    on this frame model's features (its recorded `frame_signature`, and its frozen frame head)."""
    from transformers import AutoConfig, AutoModel

    from emotic.modeling.modeling_emotic_temporal import EmoticTemporalModel

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"--temporal_model {name_or_path}: not a model folder or Hub id that loads ({error})") \
            from None
    if getattr(config, "model_type", None) != "emotic_temporal":
        raise ValueError(f"--temporal_model {name_or_path} is a {type(config).__name__} model; expected an emotic "
                         f"temporal head (the --output_dir of `emotic finetune-temporal`)")
    width = frame_model.config.hidden_size
    if config.feature_size != width:
        raise ValueError(f"--temporal_model {name_or_path} takes features of {config.feature_size} values per frame; "
                         f"the frame model gives {width} (hidden_size): a temporal head runs on features of the "
                         f"frame model it was trained on")
    model = AutoModel.from_pretrained(name_or_path, dtype=frame_model.dtype)
    if not isinstance(model, EmoticTemporalModel):
        raise ValueError(f"--temporal_model {name_or_path} loaded as {type(model).__name__}; expected "
                         f"EmoticTemporalModel")
    if config.frame_signature is not None:
        difference = signature_difference(frame_model_signature(frame_model), config.frame_signature)
        if difference > SIGNATURE_TOLERANCE:
            raise ValueError(f"--temporal_model {name_or_path} was trained on the features of another frame model: "
                             f"this model's features differ from those by {difference:.0%} (the same model's differ by "
                             f"a few % at most); run it with the model its features came from")
    if config.frozen_frame_head and not same_head(model.frame_head, frame_model.classifier):
        raise ValueError(f"--temporal_model {name_or_path} was trained on the features of another frame model: its "
                         f"frame head is not this model's classifier; run it with the model its features came from")
    return model.to(device or frame_model.device).eval()


def same_head(frame_head, classifier, tolerance: float = 0.05) -> bool:
    """Whether a temporal head's frozen `frame_head` is this frame model's `classifier`, up to the rounding of a
    lower precision or int8 quantization (relative difference of the weights below `tolerance`; another model's
    head differs by about its own size)."""

    def weight(layer):
        value = layer.weight() if callable(layer.weight) else layer.weight  # a quantized layer's is a method
        return (value.dequantize() if value.is_quantized else value).detach().float().cpu()

    ours, theirs = weight(frame_head), weight(classifier)
    return ours.shape == theirs.shape and bool((ours - theirs).norm() <= tolerance * theirs.norm())


class TemporalHead:
    """A temporal head (`emotic finetune-temporal`) over a video's frame features: `over(results)` takes every
    frame's result of a video (features in `smoothed`: frames without a face already carry their neighbour's) and
    returns them with the head's outputs in `raw` (`EmoticTemporalModel.video_logits`: windows every
    `window_stride` frames, overlapping logits averaged). A video's features are held while its windows run
    (`hidden_size` float32 values a frame: 3 KB at ViT-B's 768, 150 MB for a 50,000-frame video)."""

    def __init__(self, model, audio=None, audio_dir=None):
        self.model, self.audio, self.audio_dir = model.eval(), audio, audio_dir
        self.text, self.transcripts, self.recogniser = None, None, None  # a head that reads (`temporal_text`)
        self.parts = head_parts(model.config)
        self.without_audio: list[str] = []  # videos run with the missing-audio token throughout (no sound to hear)
        self.without_text: list[str] = []  # videos without words (no transcript, nothing recognised)

    @property
    def hears_or_reads(self) -> bool:
        """Whether the head takes a video's sound or words besides its frames: a file's, not a live stream's."""
        return self.audio is not None or self.text is not None

    def over(self, results, path=None, fps: float | None = None, name: str = "") -> list[FrameResult]:
        """`results` of one video with the head's outputs. For a head that hears (`audio`, an
        `emotic.inference.audio.AudioEncoder`), the sound of `path` (the video file), else of the video frame folder
        `name` was cut from in `audio_dir` (`sound_file`), encoded at each frame's time (`frame / fps`, the rate of
        the sound's video where `fps` is unknown)."""
        results = list(results)
        if not results:
            return results
        features = torch.from_numpy(np.stack([result.smoothed for result in results]).astype(np.float32))
        heard = {}
        if self.hears_or_reads:
            file = sound_file(path, name, self.audio_dir)  # its sound, and a frame folder's times: its video's rate
            sound = read_audio(file) if file is not None and (self.audio or self.recogniser) else None
            rate = fps or (video_rate(file) if file is not None else None)
            numbers = [annotation_index(result.location, result.frame or 0) for result in results]  # 00042.jpg: 41
            times = np.array(numbers, dtype=float) / (rate or 1.0)
        if self.audio is not None:
            values, present = self.audio.frame_features(sound if rate else None, times)  # no rate: no known times
            if not present.any():
                self.without_audio.append(name)
            heard.update(audio=torch.from_numpy(values), audio_present=torch.from_numpy(present))
        if self.text is not None:
            if self.transcripts:
                subtitles = transcript_file(self.transcripts, name)
                cues = read_subtitles(subtitles)[0] if subtitles else []
            else:
                cues = recognised_cues(self.recogniser, sound)
            values, present = self.text.frame_features(cues if rate else None, times)
            if not present.any():
                self.without_text.append(name)
            heard.update(text=torch.from_numpy(values), text_present=torch.from_numpy(present))
        outputs = head_outputs(self.model.video_logits(features, **heard).float(), self.parts).cpu().numpy()
        return [result.with_(raw=values, smoothed=None) for result, values in zip(results, outputs)]

    def trailing(self, batches):
        """For a live stream: batches of results (features in `smoothed`, as `over` takes them) with the head's outputs
        in `raw`, as they become final. The windows are `over`'s (every `window_stride` frames, and at the end one
        ending at the last frame, or one window of a stream shorter than a window), each run once its last frame has
        come; a frame is handed on once `window_size` frames have come after it, as no window still to run (the
        last one included) can cover it then: a fixed lag of `window_size` frames. The outputs are `over`'s on the
        same frames (windows run one at a time: equal within float rounding). A head that hears or reads takes
        files (`over`)."""
        from emotic.modeling.modeling_emotic_temporal import window_starts

        if self.hears_or_reads:
            raise ValueError("a temporal head that hears or reads takes video files, not live streams")
        size, stride = self.model.config.window_size, self.model.config.window_stride
        held, features = [], []  # results not handed on yet; the features of frames from `base` on
        total = torch.zeros(0, self.model.config.num_labels)  # summed logits and windows of the held frames
        counts = torch.zeros(0, 1)
        base = handed = start = 0  # the first frame whose features are kept; frames handed on; the next window

        def run(start: int, length: int) -> None:
            window = torch.from_numpy(np.stack(features[start - base:start - base + length]).astype(np.float32))
            with torch.no_grad():
                logits = self.model(window[None].to(self.model.device)).logits.float()[0].cpu()
            first = start - handed  # windows never reach frames already handed on
            total[first:first + length] += logits
            counts[first:first + length] += 1

        def hand(until: int) -> list:
            nonlocal held, total, counts, handed
            count = until - handed
            outputs = head_outputs(total[:count] / counts[:count], self.parts).numpy()
            ready = [result.with_(raw=values, smoothed=None) for result, values in zip(held[:count], outputs)]
            held, total, counts, handed = held[count:], total[count:], counts[count:], until
            return ready

        for batch in batches:
            held.extend(batch)
            features.extend(result.smoothed for result in batch)
            total = torch.cat([total, torch.zeros(len(batch), total.shape[1])])
            counts = torch.cat([counts, torch.zeros(len(batch), 1)])
            length = handed + len(held)
            while start + size <= length:  # every window on the stride whose frames are in
                run(start, size)
                start += stride
            if length - size > handed and (ready := hand(length - size)):
                yield ready
            keep = min(start, length - size) - base  # features no window still to run can take
            if keep > 0:
                features, base = features[keep:], base + keep
        length = handed + len(held)
        if held:
            window, next_start = min(size, length), start
            for start in window_starts(length, window, stride):
                if window < size or start % stride or start >= next_start:  # not run on the stride above
                    run(start, window)
            yield hand(length)


def temporal_text(model, head_inputs, name: str) -> tuple:
    """`(TextEncoder, transcripts folder, speech-recognition pipeline)` a temporal head that reads was trained with
    (its `text_settings`: the encoder, its window, and whether its words came from subtitles or a recogniser);
    `(None, None, None)` for a head that does not read. A `ValueError` naming what is missing or not the head's."""
    config = model.config
    text_model = getattr(head_inputs, "text_model", None)
    transcripts = getattr(head_inputs, "transcripts", None)
    asr_model = getattr(head_inputs, "asr_model", None)
    if "text" not in config.modalities:
        given = next((f"--{n}" for n, v in (("text_model", text_model), ("transcripts", transcripts),
                                           ("asr_model", asr_model)) if v), None)
        if given:
            raise ValueError(f"{given}: the temporal head {name} does not take text")
        return None, None, None
    recorded = config.text_settings or {}
    text_model = recorded_encoder(config, "text", text_model, name)
    encoder = TextEncoder(text_model, recorded.get("text_window", 3.0), str(model.device), dtype=model.dtype)
    check_width(encoder, config, "text", text_model, name)
    source = recorded.get("transcripts") or "subtitles"
    if source == "subtitles":
        if not transcripts:
            raise ValueError(f"the temporal head {name} was trained on subtitles' words: give the videos' "
                             f"--transcripts DIR (<video>.srt or .vtt)")
        return encoder, transcripts, None
    from transformers import pipeline

    recogniser_id = asr_model or source.removeprefix("asr ")
    try:
        recogniser = pipeline("automatic-speech-recognition", model=recogniser_id, device=str(model.device))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"--asr_model {recogniser_id}: the temporal head {name} reads the words it recognises; it "
                         f"does not load ({str(error).splitlines()[0]})") from None
    return encoder, None, recogniser


def temporal_audio(model, audio_model: str | None, name: str):
    """The `AudioEncoder` a temporal head that hears was trained with (its `audio_settings`: the model, from
    `audio_model` where given, a local folder's name being all a head records; the layer and windows as recorded);
    None for a head that does not hear. A `ValueError` naming the head where the encoder cannot be had or is not
    the one the head was trained with."""
    config = model.config
    if "audio" not in config.modalities:
        if audio_model:
            raise ValueError(f"--audio_model {audio_model}: the temporal head {name} does not take audio")
        return None
    recorded = config.audio_settings or {}
    audio_model = recorded_encoder(config, "audio", audio_model, name, f" (layer {recorded.get('audio_layer')})")
    encoder = AudioEncoder(audio_model, recorded.get("audio_layer"), recorded.get("audio_window", 2.0),
                           recorded.get("audio_stride", 0.5), str(model.device), dtype=model.dtype)
    check_width(encoder, config, "audio", audio_model, name)
    return encoder


def recorded_encoder(config, modality: str, given: str | None, name: str, detail: str = "") -> str:
    """The encoder of `modality` (`audio`, `text`) the temporal head `name` was trained with, as its
    `<modality>_settings` record it: `given` (`--<modality>_model`: where it is, a local folder's name being all a
    head records) when it is that model, else the recorded id. A `ValueError` naming the head where it records none,
    or `given` is another model (`detail`: what else names the recorded one)."""
    key = f"{modality}_model"
    recorded = (getattr(config, f"{modality}_settings") or {}).get(key)
    if not recorded:
        raise ValueError(f"the temporal head {name} takes {modality} but does not record how its {modality} features "
                         f"were made ({modality}_settings); retrain it on features from `emotic features --{key}`")
    if given and Path(given).name != recorded and given != recorded:
        raise ValueError(f"--{key} {given}: the temporal head {name} was trained with the {modality} features of "
                         f"{recorded}{detail}; give that model")
    return given or recorded


def check_width(encoder, config, modality: str, model_name: str, name: str) -> None:
    """A `ValueError` unless `encoder` gives the `<modality>_size` values per frame the temporal head `name` takes."""
    size = getattr(config, f"{modality}_size")
    if encoder.width != size:
        raise ValueError(f"--{modality}_model {model_name} gives {encoder.width} values per frame; the temporal head "
                         f"{name} takes {size} ({modality}_size): another model")


# frames a batch holds by default. On a CPU, ViT-B's forward per frame is as fast or faster at 8 as at 32 (float32,
# bfloat16 with AMX, int8; with AVX2 alone too) and its activations take 0.3-0.8 GiB less (docs/benchmarks.md); a
# GPU needs larger batches to be kept busy. A live source's batches are what its drop rule takes, up to this.
CPU_BATCH_SIZE, ACCELERATOR_BATCH_SIZE = 8, 32


def default_batch_size(device) -> int:
    """The batch size used where none is given: `CPU_BATCH_SIZE` on the CPU, `ACCELERATOR_BATCH_SIZE` elsewhere."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else ACCELERATOR_BATCH_SIZE


class Runtime:
    """A loaded frame model and its image processor, run in batches of `batch_size` views: `frame` (a `FrameModel`
    in outputs or features mode) and, with a temporal head, `temporal`. `head` is the config of the head whose
    outputs are written (the temporal head's, else the frame model's): its labels, thresholds and smoothing."""

    def __init__(self, model, processor, batch_size: int | None = None, features: bool = False, temporal_model=None,
                 precision: str | None = None):
        if not isinstance(processor, EmoticImageProcessor):
            raise ValueError(f"the model's image processor is a {type(processor).__name__}; expected an "
                             f"EmoticImageProcessor (an emotic model folder)")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or
                                       batch_size < 1):
            raise ValueError(f"batch_size={batch_size}; expected an integer >= 1")
        self.model, self.processor = model, processor
        self.temporal = TemporalHead(temporal_model) if temporal_model is not None else None
        self.frame = FrameModel(model, features=features or self.temporal is not None)
        self.batch_size = batch_size or default_batch_size(self.frame.device)
        self.precision = precision or precision_of(model, None)

    @classmethod
    def load(cls, model_name_or_path: str, device: str | None = None, dtype: str = "float32",
             quantize: str | None = None, backend: str = "pytorch", batch_size: int | None = None,
             features: bool = False, temporal_model: str | None = None, head_inputs=None) -> "Runtime":
        """`load_model`, and with `temporal_model` its temporal head (`load_temporal_model`, which runs on the
        PyTorch frame model's features), and for a head that hears or reads the encoders it was trained with
        (`temporal_audio`, `temporal_text`; `head_inputs`: an `emotic.inference.arguments.HeadInputsArguments`, where
        they and frame folders' sound and words are). A `ValueError` for what cannot be loaded or combined, naming
        it."""
        check_backend(backend, features, temporal_model)
        given = [name for name in ("audio_model", "audio_dir", "text_model", "transcripts", "asr_model")
                 if getattr(head_inputs, name, None)]
        if given and not temporal_model:
            raise ValueError(f"--{given[0]}: for a --temporal_model that hears or reads")
        model, processor = load_model(model_name_or_path, device, dtype, quantize, backend)
        temporal = load_temporal_model(temporal_model, model) if temporal_model else None
        runtime = cls(model, processor, batch_size, features, temporal, precision_of(model, quantize))
        if temporal is not None:
            head = runtime.temporal
            head.audio = temporal_audio(temporal, getattr(head_inputs, "audio_model", None), temporal_model)
            head.audio_dir = getattr(head_inputs, "audio_dir", None)
            head.text, head.transcripts, head.recogniser = temporal_text(temporal, head_inputs, temporal_model)
        return runtime

    @property
    def head(self):
        return (self.temporal.model if self.temporal is not None else self.model).config

    @property
    def parts(self) -> list:
        return head_parts(self.head)

    @property
    def labels(self) -> list[str]:
        return [self.head.id2label[i] for i in range(self.head.num_labels)]


def pipelined(items, batch_size: int, prepare, infer, name: str = "emotic-views", take=None, timed=None):
    """`infer(*prepare(batch))` per batch of `batch_size` items, the next batch prepared (decoded, its faces found,
    turned into views) in a background thread while `infer` runs the model on this one: at most two batches are
    held, however long the stream. `take()`, where given, gives each batch instead (a live source's: what has
    arrived), [] at the end. `timed(stage, batch, seconds)`, where given, is told how long each batch took to
    prepare (`"prepare"`) and in the model and whatever the caller did with its results (`"model"`)."""
    import time
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    iterator = iter(items)

    def prepare_next():  # only the one worker thread advances the items
        batch = take() if take is not None else list(islice(iterator, batch_size))
        if not batch:
            return None
        started = time.perf_counter()
        prepared = prepare(batch)
        if timed is not None:
            timed("prepare", batch, time.perf_counter() - started)
        return batch, prepared

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as worker:
        pending = worker.submit(prepare_next)
        while (done := pending.result()) is not None:
            pending = worker.submit(prepare_next)
            started = time.perf_counter()
            yield infer(*done[1])
            if timed is not None:
                timed("model", done[0], time.perf_counter() - started)
