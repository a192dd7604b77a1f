"""A video's sound as per-frame features: its audio track decoded with PyAV, mixed to mono and resampled to 16 kHz
(`read_audio`), encoded by a transformers speech encoder (Wav2Vec2, HuBERT, WavLM, a Whisper encoder: any
`AutoModel` with a feature extractor) over windows of `window` seconds centred every `stride` seconds, one of its
hidden layers mean-pooled per window; each frame takes the window centred nearest its time (`AudioEncoder`). This is
what the ABAW teams that fuse sound do (RAS: 4-second windows every 2 seconds; LEYA: a wav2vec2 emotion model's
hidden layer 10).

Time zero is the video's first frame: an audio track that starts later is preceded by silence, one that starts
earlier is cut. A frame without sound to encode (no audio track, or after the audio has ended) has no audio
features: `present` is False there, and the temporal head puts its learned missing-audio token in their place.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # what every speech encoder in transformers was trained on
MIN_WINDOW = 0.1  # seconds: a window cut shorter by the end of the audio still gives the encoder a few of its steps


class AudioRefused(ValueError):
    """An audio model, layer or setting that cannot give per-frame audio features: one line naming it."""


@dataclass
class Audio:
    """A decoded audio track: `samples` float32 mono at `SAMPLE_RATE`, sample 0 at the video's first frame."""

    samples: np.ndarray
    notes: dict = field(default_factory=dict)  # source_rate, channels, corrupt_packets, offset (seconds)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def read_audio(path) -> Audio | None:
    """The first audio track of the video at `path`, as `Audio`; None when it has none (or PyAV cannot open it as a
    file with sound). Packets the decoder refuses are skipped and counted (`notes["corrupt_packets"]`)."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError):
        return None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        notes = {"source_rate": stream.rate, "channels": stream.channels, "corrupt_packets": 0}
        # resampled in the track's own layout, then its channels averaged (librosa's `to_mono`; FFmpeg's own downmix
        # to mono adds the channels at -3 dB each, louder than either alone)
        resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
        chunks, first = [], None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.InvalidDataError, av.ArgumentError):
                notes["corrupt_packets"] += 1
                continue
            for frame in frames:
                if first is None and frame.time is not None:
                    first = frame.time
                chunks += [resampled.to_ndarray().mean(axis=0) for resampled in resampler.resample(frame)]
        chunks += [resampled.to_ndarray().mean(axis=0) for resampled in resampler.resample(None)]
        video_start = _start(container.streams.video[0]) if container.streams.video else 0.0
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = (first or 0.0) - (video_start or 0.0)  # seconds from the first frame to the first sound
    shift = round(offset * SAMPLE_RATE)
    samples = np.concatenate([np.zeros(shift, np.float32), samples]) if shift > 0 else samples[-shift:]
    notes["offset"] = round(offset, 4)
    return Audio(samples, notes)


def sound_file(path, name: str, audio_dir=None) -> Path | None:
    """The file whose sound goes with a source's frames: its own video file (`path`), else, for a frame folder named
    `name`, the video it was cut from in `audio_dir` (`<name>.mp4` or another video extension; Aff-Wild2's
    `<video>_left` / `<video>_right` folders of a two-person video take `<video>`'s sound). None when there is none."""
    from emotic.inference.sources import VIDEO_EXTENSIONS

    if path is not None:
        return Path(path)
    return named_file(audio_dir, name, VIDEO_EXTENSIONS)


def named_file(folder, name: str, extensions) -> Path | None:
    """`folder/<name><extension>` for the first of `extensions` there; for Aff-Wild2's `<video>_left` and
    `<video>_right` (the two people of one video), `<video>`'s where there is none of their own. None without."""
    if folder is None:
        return None
    for base in [name] + [name[:-len(side)] for side in ("_left", "_right") if name.endswith(side)]:
        for extension in extensions:
            if (Path(folder) / f"{base}{extension}").is_file():
                return Path(folder) / f"{base}{extension}"
    return None


def video_rate(path) -> float | None:
    """The frame rate a video file's header declares (the times of a frame folder cut from it), or None."""
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
    except (av.FFmpegError, OSError):
        return None
    return float(rate) if rate else None


def _start(stream) -> float | None:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else None


class AudioEncoder:
    """A transformers speech encoder giving per-frame audio features: `frame_features(audio, times)`.

    `model`: a Hub id or folder with a feature extractor and an `AutoModel` (for a Whisper checkpoint, its
    encoder). `layer`: the hidden layer pooled (0 is the encoder's input embeddings; default: the last).
    `window` and `stride`: seconds, as in the module's docstring. `dtype`: what the encoder computes in (the frame
    model's; float32 unless given), whatever dtype its checkpoint was saved in (many are float16)."""

    def __init__(self, model: str, layer: int | None = None, window: float = 2.0, stride: float = 0.5,
                 device: str = "cpu", batch_size: int = 8, dtype=None):
        import torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        if not (window > 0 and stride > 0):
            raise AudioRefused(f"--audio_window {window} and --audio_stride {stride}: expected seconds > 0")
        if window < MIN_WINDOW:
            raise AudioRefused(f"--audio_window {window}: expected at least {MIN_WINDOW} seconds")
        try:
            config = AutoConfig.from_pretrained(model)
            self.extractor = AutoFeatureExtractor.from_pretrained(model)
            network = AutoModel.from_pretrained(model, dtype=dtype or torch.float32)
        except (OSError, ValueError) as error:
            raise AudioRefused(f"--audio_model {model}: does not load as a transformers speech encoder with a feature "
                               f"extractor ({str(error).splitlines()[0]})") from None
        self.whisper = getattr(config, "model_type", None) == "whisper"
        self.network = (network.get_encoder() if self.whisper else network).to(device).eval()
        layers = getattr(config, "encoder_layers", None) if self.whisper else getattr(config, "num_hidden_layers", None)
        if not isinstance(layers, int) or getattr(self.extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise AudioRefused(f"--audio_model {model}: a {getattr(config, 'model_type', '?')} model is not a speech "
                               f"encoder taking {SAMPLE_RATE} Hz audio (Wav2Vec2, HuBERT, WavLM, Whisper)")
        if layer is None:
            layer = layers
        if not 0 <= layer <= layers:
            raise AudioRefused(f"--audio_layer {layer}: {model} has hidden layers 0..{layers}")
        self.model, self.layer, self.window, self.stride = str(model), layer, float(window), float(stride)
        self.device, self.batch_size, self.dtype = device, batch_size, dtype or torch.float32
        self.width = int(config.d_model if self.whisper else config.hidden_size)

    @property
    def settings(self) -> dict:
        """What a head trained on these features records and checks: another model, layer or windows is refused."""
        return {"audio_model": Path(self.model).name if Path(self.model).exists() else self.model,
                "audio_layer": self.layer, "audio_window": self.window, "audio_stride": self.stride,
                "audio_size": self.width}

    def window_features(self, audio: Audio) -> np.ndarray:
        """`(windows, width)`: the pooled hidden layer of each window, centred at `k * stride` seconds for every
        `k` whose centre lies within the audio; a window is cut where the audio begins or ends."""
        import torch

        total = len(audio.samples)
        half = round(self.window * SAMPLE_RATE / 2)
        count = int(np.floor(audio.seconds / self.stride)) + 1 if total else 0
        spans = []
        for k in range(count):
            centre = round(k * self.stride * SAMPLE_RATE)
            start, end = max(0, centre - half), min(total, centre + half)
            if end - start < MIN_WINDOW * SAMPLE_RATE:  # too little sound left for the encoder
                start = max(0, end - round(MIN_WINDOW * SAMPLE_RATE))
            spans.append((start, end))
        features = np.zeros((len(spans), self.width), np.float32)
        by_length: dict[int, list[int]] = {}
        for index, (start, end) in enumerate(spans):  # windows of one length batch without padding
            by_length.setdefault(end - start, []).append(index)
        for length, indices in by_length.items():
            for first in range(0, len(indices), self.batch_size):
                chunk = indices[first:first + self.batch_size]
                clips = [audio.samples[spans[i][0]:spans[i][1]] for i in chunk]
                with torch.inference_mode():
                    features[chunk] = self._pooled(clips, length)
        return features

    def _pooled(self, clips: list, length: int) -> np.ndarray:

        inputs = self.extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        values = inputs["input_features" if self.whisper else "input_values"].to(self.device, self.dtype)
        hidden = self.network(values, output_hidden_states=True).hidden_states[self.layer]
        if self.whisper:  # the extractor pads every clip to 30 s: pool the encoder steps the clip covers
            hidden = hidden[:, :max(1, int(np.ceil(length / SAMPLE_RATE * hidden.shape[1] / 30.0)))]
        return hidden.float().mean(dim=1).cpu().numpy()

    def frame_features(self, audio: Audio | None, times, windows: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """`(features (frames, width), present (frames,))` for frames at `times` (seconds from the first frame):
        each frame the window centred nearest its time; frames beyond the audio's end (by more than half a stride),
        and all frames of a video without sound, zeros and not present. `windows`: `window_features(audio)`, if
        already computed (a video's frames taken a few at a time)."""
        times = np.asarray(times, dtype=float)
        features = np.zeros((len(times), self.width), np.float32)
        present = np.zeros(len(times), bool)
        if audio is None or not len(audio.samples):
            return features, present
        windows = self.window_features(audio) if windows is None else windows
        nearest = np.rint(times / self.stride).astype(int)
        present = (times >= 0) & (times <= audio.seconds + self.stride / 2) & (nearest < len(windows))
        features[present] = windows[nearest[present]]
        return features, present


__all__ = ["SAMPLE_RATE", "Audio", "AudioEncoder", "AudioRefused", "read_audio", "sound_file", "video_rate"]
