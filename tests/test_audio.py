"""Audio features (`emotic.inference.audio`): a video's sound decoded and resampled to 16 kHz mono from the rates and
layouts videos carry, encoded by tiny transformers speech encoders built here (Wav2Vec2, Whisper: no downloads) over
windows, each frame taking the window centred nearest its time: a click at a known time lands on the right frames,
windows are cut at the ends, and a video without sound (or with less sound than picture) has frames without audio,
counted, never invented."""

import numpy as np
import pytest
from PIL import Image

from emotic.inference.audio import SAMPLE_RATE, AudioEncoder, AudioRefused, read_audio
from emotic.training.synthetic import write_video

FPS, SECONDS = 10, 4.0
FRAMES = [Image.new("RGB", (32, 32), (40, 80, 120))] * int(FPS * SECONDS)


@pytest.fixture(scope="module")
def speech_encoders(tmp_path_factory):
    """Folders of a tiny Wav2Vec2 (32 wide, 2 layers) and a tiny Whisper encoder (32 wide, 2 layers), each with its
    feature extractor, as `--audio_model` takes them."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("speech")
    Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        vocab_size=10)).save_pretrained(root / "wav2vec2")
    Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE, do_normalize=True).save_pretrained(root / "wav2vec2")
    WhisperModel(WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=64,
                               num_mel_bins=80, max_source_positions=1500, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, decoder_start_token_id=1)).save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")
    return root


def clicked(rate: int, channels: int, at: float) -> np.ndarray:
    """SECONDS of silence with a 20 ms click at `at` seconds, `channels` alike."""
    sound = np.zeros((channels, int(rate * SECONDS)), np.float32)
    sound[:, int(at * rate):int((at + 0.02) * rate)] = 0.9
    return sound


@pytest.mark.parametrize("rate, channels, suffix", [(8000, 1, ".mp4"), (44100, 2, ".mp4"), (48000, 2, ".webm"),
                                                    (44100, 2, ".ts")])
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
    the encoder gives for the frame's time; a video without sound and a frame folder have frames without audio,
    counted in the summary and said on the last line; the settings record the audio model, layer and windows."""
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
    result = emotic_cli("features", model_dir, videos, "--output_dir", tmp_path / "feats", "--geometry", "template",
                        "--audio_model", speech_encoders / "wav2vec2", "--audio_window", "0.5", "--audio_stride",
                        "0.1", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "audio features (32 values, wav2vec2 layer 2): 40 of 57 frames with sound; 2 inputs without an audio " \
           "track" in result.stdout
    rows = load_dataset("parquet", data_files=str(tmp_path / "feats" / "features" / "*.parquet"), split="train")
    by_video = {video: rows.filter(lambda row: row["video"] == video) for video in ("talk", "mute", "folder")}
    assert all(by_video["talk"]["audio_present"])
    assert not any(by_video["mute"]["audio_present"]) and not any(by_video["folder"]["audio_present"])
    encoder = AudioEncoder(str(speech_encoders / "wav2vec2"), window=0.5, stride=0.1)
    expected, _ = encoder.frame_features(read_audio(videos / "talk.mp4"), np.arange(40) / FPS)
    np.testing.assert_allclose(np.asarray(by_video["talk"]["audio"]), expected, atol=1e-5)
    summary = json.loads((tmp_path / "feats" / "summary.json").read_text())
    assert summary["videos"]["mute"]["audio_track"] is False and summary["videos"]["talk"]["with_audio"] == 40
    assert summary["settings"]["audio_model"] == "wav2vec2" and summary["settings"]["audio_layer"] == 2
    again = emotic_cli("features", model_dir, videos, "--output_dir", tmp_path / "feats", "--geometry", "template",
                       "--audio_model", speech_encoders / "wav2vec2", "--audio_window", "0.5", "--audio_stride",
                       "0.1", "--quiet")  # finished videos are counted from their files, audio included
    assert again.returncode == 0 and "40 of 57 frames with sound" in again.stdout
