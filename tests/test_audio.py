"""Audio features (`emotic.inference.audio`): a video's sound decoded and resampled to 16 kHz mono from the rates and
layouts videos carry, encoded by tiny transformers speech encoders built here (Wav2Vec2, Whisper: no downloads) over
windows, each frame taking the window centred nearest its time: a click at a known time lands on the right frames,
windows are cut at the ends, and a video without sound (or with less sound than picture) has frames without audio,
counted, never invented. And the words (`emotic.inference.transcripts`): subtitle files read, sorted and checked,
a tiny BERT's embedding of the words around each frame, words recognised by a tiny CTC model; `emotic features`
storing both beside the frame features."""

import numpy as np
import pytest
from PIL import Image

from emotic.inference.audio import SAMPLE_RATE, Audio, AudioEncoder, AudioRefused, read_audio
from emotic.training.synthetic import write_video

FPS, SECONDS = 10, 4.0
FRAMES = [Image.new("RGB", (32, 32), (40, 80, 120))] * int(FPS * SECONDS)


def clicked(rate: int, channels: int, at: float) -> np.ndarray:
    """SECONDS of silence with a 20 ms click at `at` seconds, `channels` alike."""
    sound = np.zeros((channels, int(rate * SECONDS)), np.float32)
    sound[:, int(at * rate):int((at + 0.02) * rate)] = 0.9
    return sound


@pytest.mark.parametrize("rate, channels, suffix", [(8000, 2, ".mp4"), (44100, 2, ".mp4"), (48000, 2, ".webm"),
                                                    (44100, 1, ".ts"), (8000, 1, ".mp4")])
def test_sound_is_resampled_to_16_khz_mono_keeping_its_pitch_length_and_time(rate, channels, suffix, tmp_path):
    """A 440 Hz tone for 2 seconds then a click at 3 s, at the rates and layouts videos carry (AAC, Opus, MP2):
    decoded to 16 kHz mono, the tone keeps its pitch and loudness (both channels mixed, not summed), the track its
    length and the click its time (within a 50th of a second: an encoder's priming)."""
    time = np.arange(int(rate * SECONDS)) / rate
    sound = clicked(rate, channels, 3.0)
    sound[:, time < 2.0] = 0.5 * np.sin(2 * np.pi * 440 * time[time < 2.0])
    write_video(tmp_path / f"tone{suffix}", FRAMES, fps=FPS, audio=sound, audio_rate=rate)
    audio = read_audio(tmp_path / f"tone{suffix}")
    assert audio.notes["source_rate"] == rate and audio.notes["channels"] == channels
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.seconds - SECONDS) < 0.15
    tone = audio.samples[int(0.5 * SAMPLE_RATE):int(1.5 * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(tone))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(tone) - 440) < 2
    assert 0.4 < np.sqrt(2) * tone.std() < 0.6  # the tone's amplitude, 0.5
    after = audio.samples[int(2.5 * SAMPLE_RATE):]
    assert abs(2.5 + np.argmax(np.abs(after)) / SAMPLE_RATE - 3.0) < 0.03


def test_a_click_lands_on_the_frames_whose_windows_hold_it_and_windows_are_cut_at_the_ends(speech_encoders,
                                                                                          tmp_path):
    """Windows of 0.5 s every 0.1 s: a click at 2.0 s changes the features of frames 18-22 (times 1.8-2.2 s, the
    windows that hold it) and no others; clicks in the first and last 50 ms reach the first and last frames (their
    windows cut by the ends of the sound, not padded with silence that is not there)."""
    encoder = AudioEncoder(str(speech_encoders / "wav2vec2"), window=0.5, stride=0.1)
    times = np.arange(len(FRAMES)) / FPS
    features = {}
    for name, at in (("silence", None), ("middle", 2.0), ("start", 0.01), ("end", SECONDS - 0.05)):
        sound = clicked(44100, 2, at) if at is not None else np.zeros((2, int(44100 * SECONDS)), np.float32)
        write_video(tmp_path / f"{name}.mp4", FRAMES, fps=FPS, audio=sound, audio_rate=44100)
        features[name], present = encoder.frame_features(read_audio(tmp_path / f"{name}.mp4"), times)
        assert present.all() and features[name].shape == (40, 32) and np.isfinite(features[name]).all()
    changed = {name: np.flatnonzero(np.abs(features[name] - features["silence"]).max(axis=1) > 1e-3)
               for name in ("middle", "start", "end")}
    assert changed["middle"].tolist() == [18, 19, 20, 21, 22]
    assert changed["start"].tolist() == [0, 1, 2] and changed["end"].tolist() == [37, 38, 39]


def test_a_video_without_sound_or_with_less_sound_than_picture_has_frames_without_audio(speech_encoders, tmp_path):
    """No audio track: every frame without audio (`present` False, zeros). Two seconds of sound under four seconds
    of picture: frames after the sound's end (and half a stride) without audio, the others with it."""
    encoder = AudioEncoder(str(speech_encoders / "wav2vec2"), window=0.5, stride=0.5)
    times = np.arange(len(FRAMES)) / FPS
    write_video(tmp_path / "silent.mp4", FRAMES, fps=FPS)
    assert read_audio(tmp_path / "silent.mp4") is None
    features, present = encoder.frame_features(None, times)
    assert not present.any() and not features.any()
    short = 0.3 * np.sin(np.linspace(0, 2 * np.pi * 300 * 2, 2 * 16000)).astype(np.float32)
    write_video(tmp_path / "short.mp4", FRAMES, fps=FPS, audio=short, audio_rate=16000)
    features, present = encoder.frame_features(read_audio(tmp_path / "short.mp4"), times)
    assert present[:23].all() and not present[24:].any() and not features[24:].any()  # 2 s + 0.25 s


def test_corrupt_audio_packets_are_skipped_and_counted_and_features_say_so(model_dir, speech_encoders, tmp_path):
    """Six audio packets of an MPEG-TS overwritten with noise: the decoder's refusals are skipped and counted, the
    rest of the sound is read (its length within a fifth of a second), and `emotic features` says how many."""
    import av

    from conftest import emotic_cli

    sound = 0.3 * np.sin(np.linspace(0, 2 * np.pi * 300 * SECONDS, int(16000 * SECONDS))).astype(np.float32)
    write_video(tmp_path / "clean.ts", FRAMES, fps=FPS, audio=sound, audio_rate=16000)
    data = bytearray((tmp_path / "clean.ts").read_bytes())
    with av.open(str(tmp_path / "clean.ts")) as container:
        audio_pid = container.streams.audio[0].id
    packets = [offset for offset in range(0, len(data), 188)
               if ((data[offset + 1] & 0x1F) << 8 | data[offset + 2]) == audio_pid]
    noise = np.random.default_rng(0).integers(0, 256, 168, dtype=np.uint8).tobytes()
    for offset in packets[3:9]:
        data[offset + 20:offset + 188] = noise
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "broken.ts").write_bytes(bytes(data))
    audio = read_audio(tmp_path / "videos" / "broken.ts")
    assert audio.notes["corrupt_packets"] > 0 and abs(audio.seconds - SECONDS) < 0.35
    result = emotic_cli("features", model_dir, tmp_path / "videos", "--output_dir", tmp_path / "feats", "--geometry",
                        "template", "--audio_model", speech_encoders / "wav2vec2", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{audio.notes['corrupt_packets']} corrupt audio packets skipped" in result.stdout


def test_a_whisper_encoder_pools_the_steps_its_window_covers(speech_encoders, tmp_path):
    """Whisper's extractor pads every clip to 30 s: the pooled steps are those of the window, so a click changes the
    frames whose windows hold it, as with Wav2Vec2; its width is d_model; a layer it has not is refused by name."""
    encoder = AudioEncoder(str(speech_encoders / "whisper"), layer=1, window=1.0, stride=0.5)
    assert encoder.width == 32 and encoder.settings["audio_layer"] == 1
    times = np.arange(len(FRAMES)) / FPS
    write_video(tmp_path / "silence.mp4", FRAMES, fps=FPS, audio=np.zeros(int(16000 * SECONDS)), audio_rate=16000)
    write_video(tmp_path / "click.mp4", FRAMES, fps=FPS, audio=clicked(16000, 1, 3.0), audio_rate=16000)
    quiet, _ = encoder.frame_features(read_audio(tmp_path / "silence.mp4"), times)
    click, _ = encoder.frame_features(read_audio(tmp_path / "click.mp4"), times)
    changed = np.flatnonzero(np.abs(click - quiet).max(axis=1) > 1e-4)
    assert changed.min() >= 23 and changed.max() <= 37 and 30 in changed  # windows at 2.5, 3.0, 3.5 s hold it
    with pytest.raises(AudioRefused, match="--audio_layer 3: .* has hidden layers 0..2"):
        AudioEncoder(str(speech_encoders / "whisper"), layer=3)


def test_encoders_saved_in_float16_compute_in_the_frame_models_dtype(speech_encoders, text_models, tmp_path):
    """Many speech and text checkpoints are saved in float16: each encoder loads in the dtype it is given (the frame
    model's; float32 unless given), never the checkpoint's, so float32 sound meets float32 weights instead of failing
    inside torch; in bfloat16 (`--dtype auto` where the CPU runs it fast) the features stay near float32's."""
    import torch
    from transformers import AutoModel

    from emotic.inference.transcripts import TextEncoder

    for name in ("wav2vec2", "bert"):
        root = speech_encoders if name == "wav2vec2" else text_models
        half = tmp_path / name
        AutoModel.from_pretrained(root / name, dtype=torch.float16).save_pretrained(half)
        for extra in root.joinpath(name).iterdir():
            if not (half / extra.name).exists():
                (half / extra.name).write_bytes(extra.read_bytes())
    audio = Audio(np.sin(np.linspace(0, 900, int(SAMPLE_RATE * 3.0))).astype(np.float32) * 0.2)
    sound, words = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        encoder = AudioEncoder(str(tmp_path / "wav2vec2"), dtype=None if dtype == torch.float32 else dtype)
        text = TextEncoder(str(tmp_path / "bert"), dtype=None if dtype == torch.float32 else dtype)
        assert next(encoder.network.parameters()).dtype == next(text.network.parameters()).dtype == dtype
        sound[dtype], words[dtype] = encoder.window_features(audio), text.embed(["great", "sad news"])
    assert np.isfinite(sound[torch.float32]).all() and sound[torch.float32].shape == (7, 32)
    for values in (sound, words):
        near = 0.05 * np.abs(values[torch.float32]).max()
        np.testing.assert_allclose(values[torch.bfloat16], values[torch.float32], atol=near)


def test_models_that_are_not_speech_encoders_are_refused_in_one_line(tmp_path):
    """A folder that is no model, and an image model: `AudioRefused` naming --audio_model and what was expected."""
    with pytest.raises(AudioRefused, match="--audio_model .*nothing: does not load as a transformers speech encoder"):
        AudioEncoder(str(tmp_path / "nothing"))
    from conftest import save_tiny_classifier

    save_tiny_classifier(tmp_path / "image", seed=0)
    with pytest.raises(AudioRefused, match="--audio_model"):
        AudioEncoder(str(tmp_path / "image"))


def test_features_store_each_frames_audio_beside_its_frame_features(model_dir, speech_encoders, tmp_path):
    """`emotic features --audio_model`: each video's Parquet holds `audio` and `audio_present` per frame, the values
    the encoder gives for the frame's time; a frame folder cut from a video (`--audio_dir`, Aff-Wild2's `_left`
    naming) takes that video's sound at each frame's number; a video without sound and a frame folder without a
    video have frames without audio, counted in the summary and said on the last line; the settings record the audio
    model, layer and windows."""
    import json

    from datasets import load_dataset

    from conftest import emotic_cli

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "talk.mp4", FRAMES, fps=FPS, audio=clicked(44100, 2, 2.0), audio_rate=44100)
    write_video(videos / "mute.mp4", FRAMES[:12], fps=FPS)
    (videos / "folder").mkdir()
    for index in range(5):
        FRAMES[0].save(videos / "folder" / f"{index:05d}.jpg")
    (videos / "talk_left").mkdir()  # Aff-Wild2's frame folder of one person of talk.mp4, frame 00011.jpg missing
    for number in [*range(1, 11), *range(12, 41)]:
        FRAMES[0].save(videos / "talk_left" / f"{number:05d}.jpg")
    options = ["--output_dir", tmp_path / "feats", "--geometry", "template", "--audio_model",
               speech_encoders / "wav2vec2", "--audio_window", "0.5", "--audio_stride", "0.1", "--audio_dir", videos,
               "--quiet"]
    result = emotic_cli("features", model_dir, videos, *options)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "audio features (32 values, wav2vec2 layer 2): 79 of 96 frames with sound; 2 inputs without an audio " \
           "track" in result.stdout
    assert "1 frame folders have no video of theirs in --audio_dir to give their frame rate" in result.stdout
    rows = load_dataset("parquet", data_files=str(tmp_path / "feats" / "features" / "*.parquet"), split="train")
    by_video = {video: rows.filter(lambda row: row["video"] == video) for video in ("talk", "mute", "folder")}
    assert all(by_video["talk"]["audio_present"])
    assert not any(by_video["mute"]["audio_present"]) and not any(by_video["folder"]["audio_present"])
    encoder = AudioEncoder(str(speech_encoders / "wav2vec2"), window=0.5, stride=0.1)
    expected, _ = encoder.frame_features(read_audio(videos / "talk.mp4"), np.arange(40) / FPS)
    np.testing.assert_allclose(np.asarray(by_video["talk"]["audio"]), expected, atol=1e-5)
    # the frame folder takes talk.mp4's sound at each frame's number (00012.jpg at 1.1 s), not its position
    folder = rows.filter(lambda row: row["video"] == "talk_left")
    assert folder["image_location"][10] == "talk_left/00012.jpg" and all(folder["audio_present"])
    np.testing.assert_allclose(np.asarray(folder["audio"]), np.delete(expected, 10, axis=0), atol=1e-5)
    summary = json.loads((tmp_path / "feats" / "summary.json").read_text())
    assert summary["videos"]["mute"]["audio_track"] is False and summary["videos"]["talk"]["with_audio"] == 40
    assert summary["settings"]["audio_model"] == "wav2vec2" and summary["settings"]["audio_layer"] == 2
    again = emotic_cli("features", model_dir, videos, *options)  # finished videos counted from their files
    assert again.returncode == 0 and "79 of 96 frames with sound" in again.stdout


SRT = """1
00:00:00,500 --> 00:00:01,000
<i>great</i>

3
00:00:03,000 --> 00:00:03,500
sad

2
00:00:01,200 --> 00:00:02,000
wow really

4
00:00:01,800 --> 00:00:02,400
{\\an8}help
"""

VTT = """WEBVTT

00:00.500 --> 00:01.000 align:start
great

00:03.000 --> 00:03.500
sad
"""


def test_subtitles_are_read_sorted_with_their_overlaps_counted_and_bad_times_refused_by_line(tmp_path):
    """SRT and WebVTT, markup removed: cues out of order are sorted and counted, overlapping ones kept (two people
    speaking) and counted; a time that is not one, and a cue ending before it starts, name the file and line."""
    from emotic.inference.transcripts import Cue, TranscriptRefused, read_subtitles

    (tmp_path / "a.srt").write_text(SRT)
    cues, notes = read_subtitles(tmp_path / "a.srt")
    assert [cue.text for cue in cues] == ["great", "wow really", "help", "sad"]
    assert cues[0] == Cue(0.5, 1.0, "great") and notes == {"out_of_order": 1, "overlapping": 1}
    (tmp_path / "a.vtt").write_text(VTT)
    assert [(cue.start, cue.text) for cue in read_subtitles(tmp_path / "a.vtt")[0]] == [(0.5, "great"), (3.0, "sad")]
    (tmp_path / "bad.srt").write_text("1\n00:00:01 --> 00:00:02,000\nhello\n")
    with pytest.raises(TranscriptRefused, match=r"bad.srt:2: '00:00:01' is not a time"):
        read_subtitles(tmp_path / "bad.srt")
    (tmp_path / "backwards.srt").write_text("1\n00:00:03,000 --> 00:00:02,000\nhello\n")
    with pytest.raises(TranscriptRefused, match=r"backwards.srt:2: the cue ends \(2.000 s\) before it starts"):
        read_subtitles(tmp_path / "backwards.srt")


def test_a_transcripts_words_land_on_the_frames_around_them(text_models, tmp_path):
    """Words within a second of each frame (window 2 s): "great" at 0.5-1.0 s reaches the frames at 0-2.0 s, "sad" at
    3.0-3.5 s those at 2.0 s and after; frames between words where nobody speaks are without text; the same words
    give the same features."""
    from emotic.inference.transcripts import Cue, TextEncoder

    encoder = TextEncoder(str(text_models / "bert"), window=2.0)
    cues = [Cue(0.5, 1.0, "great"), Cue(3.0, 3.5, "sad")]
    times = np.arange(0, 4.0, 0.5)
    features, present = encoder.frame_features(cues, times)
    assert encoder.texts(cues, times) == ["great", "great", "great", "great", "great sad", "sad", "sad", "sad"]
    assert present.all() and np.allclose(features[0], features[3]) and not np.allclose(features[0], features[5])
    _, present = encoder.frame_features([Cue(0.0, 0.2, "great"), Cue(3.8, 4.0, "sad")], times)
    assert present.tolist() == [True, True, True, False, False, False, True, True]
    assert not encoder.frame_features(None, times)[1].any()


def test_features_store_the_words_spoken_around_each_frame_from_subtitles_or_recognised(model_dir, text_models,
                                                                                        tmp_path):
    """`emotic features --text_model` with `--transcripts DIR`: `text` and `text_present` per frame, the values the
    encoder gives for the frame's words; a video without a transcript has none (counted), a transcript running past
    its video is counted and said. With `--asr_model` (a CTC recogniser), the recognised words with their times."""
    import json

    from datasets import load_dataset

    from conftest import emotic_cli
    from emotic.inference.transcripts import TextEncoder, read_subtitles

    videos, subtitles = tmp_path / "videos", tmp_path / "subtitles"
    videos.mkdir(), subtitles.mkdir()
    sound = 0.3 * np.sin(np.linspace(0, 2 * np.pi * 220 * SECONDS, int(16000 * SECONDS))).astype(np.float32)
    for name in ("talk", "quiet"):
        write_video(videos / f"{name}.mp4", FRAMES, fps=FPS, audio=sound, audio_rate=16000)
    (subtitles / "talk.srt").write_text(SRT + "\n5\n00:01:00,000 --> 00:01:01,000\nlater\n")  # past the video
    write_video(videos / "garbled.mp4", FRAMES[:5], fps=FPS)
    (subtitles / "garbled.srt").write_text("1\n00:00:0x,000 --> 00:00:01,000\nhello\n")  # skipped, with its reason
    common = ["--output_dir", tmp_path / "subs", "--geometry", "template", "--text_model", text_models / "bert",
              "--text_window", "0.4", "--quiet"]
    result = emotic_cli("features", model_dir, videos, "--transcripts", subtitles, *common)
    assert result.returncode == 1 and "skipped garbled: " in result.stderr and "garbled.srt:2: '00:00:0x,000' is " \
        "not a time" in result.stderr and "Traceback" not in result.stderr
    assert "1 inputs without a transcript; cues out of order (sorted): 1; overlapping: 1; 1 cues start after " \
           "their video's last frame" in result.stdout
    rows = load_dataset("parquet", data_files=str(tmp_path / "subs" / "features" / "*.parquet"), split="train")
    talk = rows.filter(lambda row: row["video"] == "talk")
    assert not any(rows.filter(lambda row: row["video"] == "quiet")["text_present"])
    cues, _ = read_subtitles(subtitles / "talk.srt")
    expected, present = TextEncoder(str(text_models / "bert"), window=0.4).frame_features(cues, np.arange(40) / FPS)
    assert talk["text_present"] == present.tolist() and 10 < present.sum() < 40
    np.testing.assert_allclose(np.asarray(talk["text"]), expected, atol=1e-5)
    summary = json.loads((tmp_path / "subs" / "summary.json").read_text())
    assert summary["settings"]["text_model"] == "bert" and summary["settings"]["transcripts"] == "subtitles"

    common[1] = tmp_path / "asr"
    assert "garbled" in json.loads((tmp_path / "subs" / "summary.json").read_text())["skipped"]
    heard = emotic_cli("features", model_dir, videos / "talk.mp4", "--asr_model", text_models / "ctc", *common)
    assert heard.returncode == 0, heard.stderr[-3000:]
    rows = load_dataset("parquet", data_files=str(tmp_path / "asr" / "features" / "*.parquet"), split="train")
    assert any(rows["text_present"]) and np.isfinite(np.asarray(rows["text"])).all()
    settings = json.loads((tmp_path / "asr" / "summary.json").read_text())["settings"]
    assert settings["transcripts"] == "asr ctc"  # a local folder by its name: no path of this machine recorded
