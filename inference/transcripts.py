"""What is said, as per-frame features: a video's transcript (subtitle cues read from `.srt` / `.vtt` files, the form
datasets and users have, or words recognised by a transformers speech-recognition pipeline with word timestamps),
and a transformers text encoder's mean-pooled embedding of the words spoken within `window` seconds around each frame
(`TextEncoder`). A frame around which nobody speaks has no text features (`present` False): the temporal head puts its
learned missing-text token there.

Cues out of order are sorted by their start, overlapping cues both count (two people speaking), and cues that start
after the video's end are counted (a transcript of another cut of the video) and said by the commands.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRANSCRIPT_EXTENSIONS = (".srt", ".vtt")
_STAMP = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})\s*$")


class TranscriptRefused(ValueError):
    """A subtitle file, text model or recogniser that cannot give per-frame text features: one line naming it."""


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def _seconds(stamp: str, path, line: int) -> float:
    match = _STAMP.match(stamp)
    if not match:
        raise TranscriptRefused(f"{path}:{line}: {stamp.strip()!r} is not a time; expected HH:MM:SS,mmm (SRT) or "
                                f"[HH:]MM:SS.mmm (WebVTT)")
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def read_subtitles(path) -> tuple[list[Cue], dict]:
    """The cues of an `.srt` or `.vtt` file, sorted by start, and what was noted (`out_of_order`, `overlapping`:
    counts). Markup (`<i>`, `{\\an8}`) is removed. A line that should be a time and is not, or a cue ending before it
    starts, is a `TranscriptRefused` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise TranscriptRefused(f"{path}: cannot be read as a UTF-8 subtitle file ({error})") from None
    cues, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        line = lines[index]
        if "-->" in line:
            start_text, end_text = line.split("-->", 1)
            end_text = end_text.strip().split(" ")[0]  # WebVTT cue settings follow the end time
            start, end = _seconds(start_text, path, index + 1), _seconds(end_text, path, index + 1)
            if end < start:
                raise TranscriptRefused(f"{path}:{index + 1}: the cue ends ({end:.3f} s) before it starts "
                                        f"({start:.3f} s)")
            words, index = [], index + 1
            while index < len(lines) and lines[index].strip():
                words.append(lines[index].strip())
                index += 1
            said = re.sub(r"<[^>]*>|\{[^}]*\}", "", " ".join(words)).strip()
            if said:
                cues.append(Cue(start, end, said))
        index += 1
    notes = {"out_of_order": sum(b.start < a.start for a, b in zip(cues, cues[1:]))}
    cues.sort(key=lambda cue: (cue.start, cue.end))
    notes["overlapping"] = sum(b.start < a.end for a, b in zip(cues, cues[1:]))
    return cues, notes


def cue_spans(cues: list[Cue]) -> tuple[np.ndarray, np.ndarray]:
    """The cues' starts and ends (seconds) as arrays, what `TextEncoder.texts` looks frames up in."""
    return np.array([cue.start for cue in cues]), np.array([cue.end for cue in cues])


def transcript_file(transcripts_dir, name: str) -> Path | None:
    """`<name>.srt` or `.vtt` in `transcripts_dir` (Aff-Wild2's `<video>_left` / `_right` take `<video>`'s)."""
    from emotic.inference.audio import named_file

    return named_file(transcripts_dir, name, TRANSCRIPT_EXTENSIONS)


def recognised_cues(recogniser, audio) -> list[Cue]:
    """Word cues from a transformers `automatic-speech-recognition` pipeline run with word timestamps over a decoded
    `emotic.inference.audio.Audio` (16 kHz mono)."""
    from emotic.inference.audio import SAMPLE_RATE

    if audio is None or not len(audio.samples):
        return []
    result = recogniser({"raw": audio.samples, "sampling_rate": SAMPLE_RATE}, return_timestamps="word")
    cues = []
    for chunk in result.get("chunks", []):
        start, end = chunk.get("timestamp", (None, None))
        if start is None or not chunk.get("text", "").strip():
            continue
        cues.append(Cue(float(start), float(end if end is not None else start), chunk["text"].strip()))
    return sorted(cues, key=lambda cue: (cue.start, cue.end))


class TextEncoder:
    """A transformers text encoder (`AutoTokenizer` + `AutoModel`, mean-pooled last hidden state) giving per-frame
    features of the words spoken within `window` seconds around each frame: `frame_features(cues, times)`."""

    def __init__(self, model: str, window: float = 3.0, device: str = "cpu", batch_size: int = 32, dtype=None):
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if not window > 0:
            raise TranscriptRefused(f"--text_window {window}: expected seconds > 0")
        try:
            config = AutoConfig.from_pretrained(model)
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            # in `dtype` (the frame model's; float32 unless given), whatever dtype the checkpoint was saved in
            self.network = AutoModel.from_pretrained(model, dtype=dtype or torch.float32).to(device).eval()
        except (OSError, ValueError) as error:
            raise TranscriptRefused(f"--text_model {model}: does not load as a transformers text encoder with a "
                                    f"tokenizer ({str(error).splitlines()[0]})") from None
        width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if not isinstance(width, int) or getattr(self.network, "main_input_name", "input_ids") != "input_ids":
            raise TranscriptRefused(f"--text_model {model}: a {getattr(config, 'model_type', '?')} model is not a text "
                                    f"encoder taking input_ids")
        if getattr(config, "is_encoder_decoder", False):
            self.network = self.network.get_encoder()
        self.model, self.window, self.width = str(model), float(window), int(width)
        self.device, self.batch_size = device, batch_size

    def settings(self, transcripts: str) -> dict:
        """What a head trained on these features records: the model (a local folder by its name only), the window,
        the width and where the words came from (`subtitles`, or the recogniser's id)."""
        return {"text_model": Path(self.model).name if Path(self.model).exists() else self.model,
                "text_window": self.window, "text_size": self.width, "transcripts": transcripts}

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.width), np.float32)
        for first in range(0, len(texts), self.batch_size):
            batch = texts[first:first + self.batch_size]
            tokens = self.tokenizer(batch, padding=True, truncation=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.network(input_ids=tokens["input_ids"],
                                      attention_mask=tokens["attention_mask"]).last_hidden_state.float()
            mask = tokens["attention_mask"][..., None].float()
            out[first:first + len(batch)] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()
        return out

    def at(self, cues: list[Cue] | None, time: float, cache: dict, spans=None) -> tuple[np.ndarray, bool]:
        """One frame's `(features, present)` (as `frame_features`), each distinct text encoded once per `cache`;
        `spans`: `cue_spans(cues)`, for a video's frames taken one at a time."""
        texts = self.texts(cues, [time], spans)
        if not texts[0]:
            return np.zeros(self.width, np.float32), False
        if texts[0] not in cache:
            cache[texts[0]] = self.embed(texts)[0]
        return cache[texts[0]], True

    def texts(self, cues: list[Cue] | None, times, spans=None) -> list[str]:
        """Per time, the words of the cues overlapping `[time - window / 2, time + window / 2]`, in time order
        (`spans`: `cue_spans(cues)`, if already computed)."""
        if not cues:
            return ["" for _ in times]
        starts, ends = spans if spans is not None else cue_spans(cues)
        return [" ".join(cues[i].text for i in np.flatnonzero((starts <= time + self.window / 2) &
                                                               (ends >= time - self.window / 2))) for time in times]

    def frame_features(self, cues: list[Cue] | None, times) -> tuple[np.ndarray, np.ndarray]:
        """`(features (frames, width), present (frames,))`: each frame the embedding of the cues overlapping
        `[time - window / 2, time + window / 2]`, in time order (each distinct text encoded once); zeros and not
        present where none does, and everywhere without cues."""
        times = np.asarray(times, dtype=float)
        features = np.zeros((len(times), self.width), np.float32)
        present = np.zeros(len(times), bool)
        texts = self.texts(cues, times)
        distinct = sorted({text for text in texts if text})
        embedded = dict(zip(distinct, self.embed(distinct))) if distinct else {}
        for index, text in enumerate(texts):
            if text:
                features[index], present[index] = embedded[text], True
        return features, present


__all__ = ["Cue", "TextEncoder", "TranscriptRefused", "cue_spans", "read_subtitles", "recognised_cues",
           "transcript_file"]
