"""The temporal head: `EmoticTemporalModel` (windows, padding, the loss, the Auto classes), and the two-stage recipe
end to end on generated videos where context matters (a frame model, its features, `emotic finetune-temporal`,
`emotic predict --temporal_model`), against the best smoothing window of the same frame model."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emotic import EmoticTemporalConfig, EmoticTemporalModel
from emotic.modeling.heads_emotic import emotic_loss
from emotic.modeling.modeling_emotic_temporal import window_starts

SMALL = dict(feature_size=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
             window_size=12, window_stride=5, hidden_dropout_prob=0.0)


def small_model(seed=0, **overrides) -> EmoticTemporalModel:
    """A small temporal head whose temporal path is not at its zero start (so that every test sees it work)."""
    torch.manual_seed(seed)
    model = EmoticTemporalModel(EmoticTemporalConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("length, window, stride, expected", [
    (10, 12, 5, [0]), (12, 12, 5, [0]), (13, 12, 5, [0, 1]), (30, 12, 5, [0, 5, 10, 15, 18]),
    (27, 12, 5, [0, 5, 10, 15]),
])
def test_windows_cover_every_frame_and_end_at_the_last(length, window, stride, expected):
    starts = window_starts(length, window, stride)
    assert starts == expected
    covered = np.zeros(length, dtype=bool)
    for start in starts:
        covered[start:start + window] = True
    assert covered.all() and starts[-1] + min(window, length) == length


def test_a_video_is_the_mean_of_its_overlapping_windows():
    model = small_model()
    features = torch.randn(30, 16)
    logits = model.video_logits(features)
    starts = window_starts(30, 12, 5)
    total, counts = torch.zeros(30, 8), torch.zeros(30, 1)
    with torch.no_grad():
        for start in starts:
            total[start:start + 12] += model(features[None, start:start + 12]).logits[0]
            counts[start:start + 12] += 1
    torch.testing.assert_close(logits, total / counts)
    # a video shorter than a window is one window of its own length; another stride changes the windows
    torch.testing.assert_close(model.video_logits(features[:7]), model(features[None, :7]).logits[0].detach())
    assert not torch.allclose(model.video_logits(features, stride=12), logits)


@pytest.mark.parametrize("length", [7, 12, 27, 30, 61])
def test_a_live_stream_gets_the_windows_of_the_whole_video_with_a_fixed_lag(length):
    """`TemporalHead.trailing`, the temporal head on a live stream: frames given as they come (1 to 9 at a time) get
    the outputs the whole video gives them (`over`), each handed on once `window_size` frames have come after it (no
    window still to run can cover it then), the rest at the end: streams shorter than a window, ending on the stride
    and off it."""
    from emotic.inference.results import FrameResult
    from emotic.inference.runtime import TemporalHead

    head, window = TemporalHead(small_model()), SMALL["window_size"]
    rng = np.random.default_rng(length)
    results = [FrameResult(f"live/{i + 1:05d}.jpg", i, i / 25, "face", smoothed=rng.normal(size=16))
               for i in range(length)]
    whole = head.over(results)
    came = 0

    def arriving():  # the loop's batches, counting the frames that have come
        nonlocal came
        while came < length:
            batch = results[came:came + int(rng.integers(1, 10))]
            came += len(batch)
            yield batch

    handed, early = [], 0
    for ready in head.trailing(arriving()):
        assert ready[-1].frame < came - window or came == length  # the lag, or the end of the stream
        early += came < length
        for result in ready:
            assert result.smoothed is None and result.location == whole[result.frame].location
            np.testing.assert_allclose(result.raw, whole[result.frame].raw, rtol=0, atol=1e-5)
        handed.extend(result.frame for result in ready)
    assert handed == list(range(length))
    if length > 2 * window:
        assert early  # a long stream's frames are handed on while it goes on


def test_padding_changes_nothing_for_the_real_frames_and_is_left_out_of_the_loss():
    model = small_model()
    features, labels = torch.randn(2, 12, 16), torch.randint(0, 8, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    padded = model(features, attention_mask=mask, labels=labels)
    alone = model(features[1:, :7])
    torch.testing.assert_close(padded.logits[1, :7], alone.logits[0])
    changed = labels.clone()
    changed[1, 7:] = (changed[1, 7:] + 1) % 8  # other labels, and other features, under the padding
    features[1, 7:] = 100.0
    again = model(features, attention_mask=mask, labels=changed)
    torch.testing.assert_close(again.loss, padded.loss)
    torch.testing.assert_close(again.logits[1, :7], padded.logits[1, :7])
    expected = emotic_loss(labels[mask.bool()], padded.logits[mask.bool()], model.config)
    torch.testing.assert_close(padded.loss, expected)
    # unannotated frames (-1) add nothing either
    unannotated = labels.clone()
    unannotated[0, :3] = -1
    torch.testing.assert_close(model(features, attention_mask=mask, labels=unannotated).loss,
                               emotic_loss(unannotated[mask.bool()], padded.logits[mask.bool()], model.config))


def test_the_eager_and_sdpa_attention_agree_with_padding():
    model = small_model()
    features = torch.randn(2, 12, 16)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, 9:] = 0
    sdpa = model(features, attention_mask=mask).logits
    model.config._attn_implementation = "eager"
    eager = model(features, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(eager.logits, sdpa)
    assert len(eager.attentions) == 2 and eager.attentions[0].shape == (2, 2, 12, 12)
    assert torch.all(eager.attentions[0][0, :, :, 9:] == 0)  # no frame attends to padding


def test_a_new_head_starts_as_its_frame_head_and_learns_from_the_frames_around():
    torch.manual_seed(0)
    model = EmoticTemporalModel(EmoticTemporalConfig(**SMALL))
    features = torch.randn(3, 12, 16)
    torch.testing.assert_close(model(features).logits, model.frame_head(features))
    # a label that only the previous frame shows: the frame head cannot learn it, the temporal path can
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        features = torch.randn(16, 12, 16)
        labels = (features[:, :, 0] > 0).long().roll(1, dims=1)
        labels[:, 0] = -1
        loss = model(features, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    features = torch.randn(64, 12, 16)
    labels = (features[:, :, 0] > 0).long().roll(1, dims=1)
    accuracy = (model(features).logits.argmax(-1)[:, 1:] == labels[:, 1:]).float().mean().item()
    assert accuracy > 0.9, accuracy


@pytest.mark.parametrize("track", ["au", "va", "multitask"])
@pytest.mark.parametrize("hears", [False, True], ids=["vision", "vision+audio+text"])
def test_every_frame_models_head_has_a_temporal_head(track, hears):
    """Every track's head, seeing only or also hearing and reading: per-frame outputs of the track's width, its
    loss over the frames, valence-arousal bounded."""
    from emotic.modeling.heads_emotic import HEADS, MULTITASK_TRACKS, multitask_labels
    from emotic.tracks import TRACKS

    head = dict(**TRACKS[track].head_options(), regression_range=[-1.0, 1.0] if track != "au" else None)
    others = dict(modalities=["vision", "audio", "text"], audio_size=8, text_size=4) if hears else {}
    model = small_model(**head, **others)
    features = torch.randn(2, 12, 16)
    heard = dict(audio=torch.randn(2, 12, 8), text=torch.randn(2, 12, 4),
                 text_present=torch.rand(2, 12) > 0.5) if hears else {}
    width = {"au": 12, "va": 2, "multitask": 15}[track]
    labels = torch.rand(2, 12, width)
    if track == "multitask":
        labels[..., 2] = torch.randint(0, 8, (2, 12)).float()
        labels[0, :4, 3:] = float("nan")  # units not annotated on four frames
    out = model(features, labels=labels, **heard)
    assert out.logits.shape == (2, 12, len(multitask_labels(MULTITASK_TRACKS)) if track == "multitask" else
                                len(HEADS[track].labels))
    torch.testing.assert_close(out.loss, emotic_loss(labels.reshape(24, width), out.logits.reshape(24, -1),
                                                     model.config))
    if track != "au":  # valence-arousal stays in [-1, 1]
        assert out.logits[..., :2].abs().max() <= 1
    assert (HEADS[track].problem_type if track in HEADS else None) == model.config.problem_type


def test_the_auto_classes_and_remote_code_load_a_saved_head(tmp_path):
    import subprocess
    import sys

    from transformers import AutoConfig, AutoModel

    model = small_model()
    model.save_pretrained(tmp_path / "temporal")
    saved = json.loads((tmp_path / "temporal" / "config.json").read_text())
    assert saved["model_type"] == "emotic_temporal"
    assert saved["auto_map"]["AutoModel"] == "modeling_emotic_temporal.EmoticTemporalModel"
    assert {p.name for p in (tmp_path / "temporal").iterdir()} >= {
        "model.safetensors", "configuration_emotic_temporal.py", "modeling_emotic_temporal.py",
        "configuration_emotic.py", "heads_emotic.py", "modeling_emotic.py"}
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "temporal"), EmoticTemporalConfig)
    loaded = AutoModel.from_pretrained(tmp_path / "temporal")
    features = torch.randn(1, 12, 16)
    torch.testing.assert_close(loaded(features).logits, model(features).logits)
    # where emotic is not installed: the folder's own code (a fresh process, emotic hidden from imports)
    script = (
        "import sys, torch; sys.modules['emotic'] = None\n"
        "from transformers import AutoModel\n"
        f"m = AutoModel.from_pretrained({str(tmp_path / 'temporal')!r}, trust_remote_code=True)\n"
        "assert type(m).__module__.startswith('transformers_modules'), type(m).__module__\n"
        f"torch.manual_seed(1); x = torch.randn(1, 12, 16)\n"
        "print(m(x).logits.sum().item())\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    torch.manual_seed(1)
    assert abs(float(run.stdout.strip().splitlines()[-1]) - model(torch.randn(1, 12, 16)).logits.sum().item()) < 1e-4


def test_a_frozen_frame_head_is_recognised_in_its_frame_model_at_any_precision_and_another_is_not():
    from emotic import EmoticConfig, EmoticForImageClassification
    from emotic.inference.runtime import same_head

    torch.manual_seed(0)
    frame_model = EmoticForImageClassification(EmoticConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                            intermediate_size=32, image_size=16, patch_size=8))
    head = small_model()
    with torch.no_grad():
        head.frame_head.weight.copy_(frame_model.classifier.weight)
        head.frame_head.bias.copy_(frame_model.classifier.bias)
    assert same_head(head.frame_head, frame_model.classifier)
    assert same_head(head.frame_head, frame_model.to(torch.bfloat16).classifier)
    quantized = torch.ao.quantization.quantize_dynamic(frame_model.float(), {torch.nn.Linear}, dtype=torch.qint8)
    assert same_head(head.frame_head, quantized.classifier)
    torch.manual_seed(1)
    other = EmoticForImageClassification(frame_model.config)
    assert not same_head(head.frame_head, other.classifier)


def test_bad_features_are_refused_naming_them():
    model = small_model()
    for features, words in ((torch.randn(1, 12, 15), "15 values per frame; this temporal model takes 16"),
                            (torch.randn(1, 13, 16), "13 frames; this model's windows hold at most 12"),
                            (torch.randn(12, 16), "expected a float tensor (batch_size, frames, 16)"),
                            (torch.zeros(1, 12, 16, dtype=torch.long), "expected a float tensor")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            model(features)
    with pytest.raises(ValueError, match="at least one frame"):
        model.video_logits(torch.zeros(0, 16))
    with pytest.raises(ValueError, match="labels of shape"):
        model(torch.randn(2, 12, 16), labels=torch.zeros(2, 11, dtype=torch.long))
    for fields, words in (({"window_stride": 13}, "window_stride=13 is longer than window_size=12"),
                          ({"kernel_size": 4}, "kernel_size=4"), ({"feature_size": 0}, "feature_size=0"),
                          ({"num_attention_heads": 3}, "must divide hidden_size=16")):
        with pytest.raises(ValueError, match=words):
            EmoticTemporalConfig(**{**SMALL, **fields})


AUDIO = dict(modalities=["vision", "audio"], audio_size=8)


@pytest.mark.parametrize("fusion", ["cross_attention", "gated_sum"])
def test_a_multimodal_head_takes_its_missing_token_where_sound_is_absent_and_drops_whole_windows_in_training(fusion):
    """No audio given is the missing-audio token on every frame; a frame flagged without sound ignores its values;
    sound changes the output; in training, modality dropout takes the sound from whole windows (each window's output
    is that with its sound or that without, about `modality_dropout` of them without)."""
    model = small_model(**AUDIO, modality_fusion=fusion, modality_dropout=0.5)
    features, audio = torch.randn(2, 10, 16), torch.randn(2, 10, 8)
    absent = torch.zeros(2, 10, dtype=torch.bool)
    with torch.no_grad():
        without = model(features).logits
        torch.testing.assert_close(model(features, audio=audio, audio_present=absent).logits, without)
        heard = model(features, audio=audio).logits
        assert not torch.allclose(heard, without, atol=1e-4)
        some = absent.clone()
        some[:, :5] = True  # the second half silent: its values never count
        changed = audio.clone()
        changed[:, 5:] = torch.randn(2, 5, 8)
        torch.testing.assert_close(model(features, audio=audio, audio_present=some).logits,
                                   model(features, audio=changed, audio_present=some).logits)
        model.train()
        torch.manual_seed(3)
        batch = model(features[:1].expand(64, -1, -1), audio=audio[:1].expand(64, -1, -1)).logits
    with_sound = [torch.allclose(window, heard[0], atol=1e-5) for window in batch]
    without_sound = [torch.allclose(window, without[0], atol=1e-5) for window in batch]
    assert all(a != b for a, b in zip(with_sound, without_sound)) and 16 < sum(without_sound) < 48


def test_bad_audio_inputs_and_settings_are_refused_naming_them():
    """Sound given to a head that does not hear, sound of another width or length, flags of another shape, an
    unknown modality or fusion: each a `ValueError` naming it and what was expected."""
    with pytest.raises(ValueError, match="audio given to a temporal head that does not take it"):
        small_model()(torch.randn(1, 10, 16), audio=torch.randn(1, 10, 8))
    model = small_model(**AUDIO)
    with pytest.raises(ValueError, match=r"expected a float tensor \(1, 10, 8\): .*config\.audio_size"):
        model(torch.randn(1, 10, 16), audio=torch.randn(1, 10, 6))
    with pytest.raises(ValueError, match=r"audio_present of shape \(1, 9\); expected \(1, 10\)"):
        model(torch.randn(1, 10, 16), audio=torch.randn(1, 10, 8), audio_present=torch.ones(1, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="audio of 30 frames for a video of 40 frames"):
        model.video_logits(torch.randn(40, 16), audio=torch.randn(30, 8))
    for fields, words in (({"modalities": ["vision", "smell"]}, "modalities=\\['vision', 'smell'\\]"),
                          ({"modalities": ["vision", "audio"]}, "audio_size=None; expected the width"),
                          ({**AUDIO, "modality_fusion": "sum"}, "modality_fusion='sum'; allowed"),
                          ({**AUDIO, "modality_dropout": 1.0}, "modality_dropout=1.0; allowed: \\[0, 1\\)")):
        with pytest.raises(ValueError, match=words):
            EmoticTemporalConfig(**{**SMALL, **fields})


def test_finetune_temporal_stopped_and_started_again_resumes_from_its_last_checkpoint(tmp_path, capsys):
    from conftest import write_features_folder

    from emotic.training import temporal

    folder = write_features_folder(tmp_path, {f"v{i}": 16 for i in range(4)}, frames=40)
    command = ["--features_dir", str(folder), "--affwild2_root", str(folder / "data"), "--output_dir",
               str(tmp_path / "run"), "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
               "--window_size", "16", "--window_stride", "8", "--per_device_train_batch_size", "4",
               "--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "no", "--disable_tqdm", "true",
               "--frame_model", "none"]
    temporal.main([*command, "--max_steps", "3"])  # interrupted after its first checkpoint
    capsys.readouterr()
    results = temporal.main([*command, "--max_steps", "6"])
    assert f"resuming from {tmp_path / 'run' / 'checkpoint-3'}" in capsys.readouterr().out
    state = json.loads((tmp_path / "run" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and 0 <= results["macro_f1"] <= 1
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["frame_head"] == "new" and record["data"]["train"]["frames"] == 120


def test_synth_with_sound_writes_a_voice_and_words_that_follow_the_labels_and_changes_nothing_else(tmp_path):
    """`synth --audio`: every file of the dataset byte for byte as without it, plus a video per person (every frame,
    25 fps) whose voice is louder where someone speaks and higher for Surprise than for Sadness, and subtitles whose
    cues lie within the video and fall where someone speaks."""
    import filecmp

    from emotic.inference.audio import read_audio
    from emotic.inference.transcripts import read_subtitles
    from emotic.training.synthetic import write_synthetic_affwild2

    plain = write_synthetic_affwild2(tmp_path / "plain", num_videos=2, frames_per_video=96, size=32,
                                     validation_videos=1)
    sound = write_synthetic_affwild2(tmp_path / "sound", num_videos=2, frames_per_video=96, size=32,
                                     validation_videos=1, audio=True)
    compared = filecmp.dircmp(tmp_path / "plain", tmp_path / "sound")
    assert sorted(compared.right_only) == ["transcripts", "videos"] and compared.diff_files == ["summary.json"]
    assert {key: value for key, value in sound.items() if key != "speaking_frames"} == plain

    def differing(comparison):
        return comparison.diff_files + [name for sub in comparison.subdirs.values() for name in differing(sub)]

    assert differing(compared) == ["summary.json"]
    labels = (tmp_path / "sound" / "annotations" / "Train_Set" / "synth-000.txt").read_text().split()[1:]
    audio = read_audio(tmp_path / "sound" / "videos" / "synth-000.mp4")
    assert abs(audio.seconds - 96 / 25) < 0.1
    speaking = np.zeros(96, bool)
    speaking[sound["speaking_frames"]["synth-000"]] = True
    loudness = np.array([audio.samples[i * 640:(i + 1) * 640].std() for i in range(96)])
    assert loudness[speaking].mean() > 5 * loudness[~speaking].mean()

    def pitch(frames):
        spectrum = np.abs(np.fft.rfft(np.concatenate([audio.samples[i * 640:(i + 1) * 640] for i in frames])))
        return np.argmax(spectrum) * 16000 / (640 * len(frames))

    by_label = {name: [i for i in np.flatnonzero(speaking) if labels[i] == str(index)]
                for index, name in ((5, "Sadness"), (6, "Surprise"))}
    assert len(by_label["Sadness"]) >= 3 and len(by_label["Surprise"]) >= 3  # spoken in this video (seed 0)
    assert pitch(by_label["Surprise"]) > 1.5 * pitch(by_label["Sadness"])  # about 290 Hz against 105 Hz
    cues, _ = read_subtitles(tmp_path / "sound" / "transcripts" / "synth-000.srt")
    assert cues and all(0 <= cue.start < cue.end <= 96 / 25 + 1e-6 for cue in cues)
    assert all(speaking[int(round(cue.start * 25))] for cue in cues)


def test_synth_hides_runs_of_frames_and_leaves_everything_else_as_it_was(tmp_path):
    from emotic.training.synthetic import write_synthetic_affwild2

    plain = write_synthetic_affwild2(tmp_path / "plain", num_videos=3, frames_per_video=40, size=32,
                                     validation_videos=1)
    hidden = write_synthetic_affwild2(tmp_path / "hidden", num_videos=3, frames_per_video=40, size=32,
                                      validation_videos=1, occluded_fraction=0.3)
    assert plain["occluded"] == 0 and 0.15 < hidden["occluded"] / hidden["frames"] < 0.45
    for video, frames in hidden["occluded_frames"].items():
        runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
        assert all(len(run) >= 2 for run in runs[:-1])  # runs of 2-6 (the last may be cut by the video's end)
        for index in range(40):
            name = f"cropped_aligned/{video}/{index + 1:05d}.jpg"
            if not (tmp_path / "plain" / name).is_file():
                continue
            same = (tmp_path / "plain" / name).read_bytes() == (tmp_path / "hidden" / name).read_bytes()
            assert same == (index not in frames), (video, index)
    for annotation in (tmp_path / "plain").rglob("*.txt"):  # the labels are the same: hidden frames keep theirs
        twin = tmp_path / "hidden" / annotation.relative_to(tmp_path / "plain")
        assert annotation.read_bytes() == twin.read_bytes()


@pytest.mark.parametrize("task", ["au", "va", "multitask"])
def test_finetune_temporal_trains_every_track_and_predict_writes_its_files(task, model_dir, tmp_path):
    """Each track's annotations, loss, scores and files, from the features of a (tiny, untrained) frame model: the
    run finishes with the track's metrics, AU thresholds are chosen and stored, and `emotic predict
    --temporal_model` writes the track's CSV and submission columns for every frame."""
    from transformers import AutoModel

    from emotic.inference import features, predict
    from emotic.training import temporal
    from emotic.training.synthetic import write_synthetic_affwild2

    data = tmp_path / "data"
    write_synthetic_affwild2(data, num_videos=4, frames_per_video=16, size=32, validation_videos=1, seed=1)
    assert features.main([str(model_dir), str(data / "cropped_aligned"), "--output_dir", str(tmp_path / "features"),
                          "--geometry", "template", "--quiet"]) == 0
    results = temporal.main(["--task", task, "--features_dir", str(tmp_path / "features"), "--affwild2_root",
                             str(data), "--output_dir", str(tmp_path / "run"), "--hidden_size", "16",
                             "--num_hidden_layers", "1", "--num_attention_heads", "2", "--window_size", "8",
                             "--window_stride", "4", "--num_train_epochs", "2", "--save_strategy", "no",
                             "--disable_tqdm", "true"])
    score = {"au": "au_score", "va": "va_score", "multitask": "mtl_score"}[task]
    assert np.isfinite(results[score])
    head = AutoModel.from_pretrained(tmp_path / "run")
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["track"] == task and record["eval"][score] == results[score]
    assert record["frame_head"].startswith("new: the frame model")  # an expression model's head is not this task's
    if task != "va":
        assert len(head.config.label_thresholds) == 12 and len(head.config.pos_weight) == 12
    video = data / "cropped_aligned" / "synth-003"
    assert predict.main([str(model_dir), str(video), "--temporal_model", str(tmp_path / "run"), "--output_dir",
                         str(tmp_path / "out"), "--geometry", "template", "--quiet"]) == 0
    with open(tmp_path / "out" / "frames" / "synth-003.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list(video.glob("*.jpg")))
    header = (tmp_path / "out" / "submission.txt").read_text().splitlines()[0]
    units = ",".join(list(head.config.id2label.values())[-12:])  # the 12 action units: the last outputs
    assert header == {"au": f"image_location,{units}", "va": "image_location,valence,arousal",
                      "multitask": f"image,valence,arousal,expression,{units}"}[task]
    if task != "au":
        assert all(-1 <= float(row["valence"]) <= 1 for row in rows)


# -- the two-stage recipe on videos where context matters ----------------------------------------------------------

FAST = ["--model_size", "tiny", "--per_device_train_batch_size", "32", "--disable_tqdm", "true", "--report_to", "none",
        "--drop_path_rate", "0.0", "--save_strategy", "no", "--eval_strategy", "no"]


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    """Generated videos (160 people, 48 frames at 64 px, 32 held out) with 30% of the frames occluded in runs of 2-6
    (their labels kept, as annotators label from the video), a tiny frame model fine-tuned on 100 frames per
    class, and its features of every video (aligned crops: the template geometry, as in training). The videos are
    also written with their sound (`synth --audio`), which the multimodal tests use."""
    from emotic.inference import features
    from emotic.training import finetune
    from emotic.training.synthetic import write_synthetic_affwild2

    root = tmp_path_factory.mktemp("two-stage")
    data = root / "data"
    write_synthetic_affwild2(data, num_videos=160, frames_per_video=48, size=64, validation_videos=32, seed=8,
                             occluded_fraction=0.3, audio=True)  # the sound: videos/, transcripts/ beside the rest
    finetune.main(["--affwild2_root", str(data), "--output_dir", str(root / "frames"), *FAST, "--num_train_epochs",
                   "12", "--learning_rate", "3e-3", "--layer_decay", "0.9", "--max_frames_per_class", "100"])
    assert features.main([str(root / "frames"), str(data / "cropped_aligned"), "--output_dir",
                          str(root / "features"), "--geometry", "template", "--quiet"]) == 0
    return root


def read_predictions(folder: Path, labels):
    """Per frame of `emotic predict`'s CSVs: (video, annotation index, probabilities)."""
    rows = []
    for path in sorted((folder / "frames").glob("*.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append((path.stem, int(Path(row["image_location"]).stem) - 1,
                             np.array([float(row[name]) for name in labels])))
    return rows


@pytest.mark.minutes(2)
def test_the_temporal_head_beats_the_best_smoothing_window_of_its_frame_model(two_stage, tmp_path):
    from emotic.inference import evaluate, predict
    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
    from emotic.training import temporal
    from emotic.training.metrics import expression_metrics
    from emotic.training.affwild2 import annotations_by_video

    data = two_stage / "data"
    results = temporal.main(["--features_dir", str(two_stage / "features"), "--affwild2_root", str(data),
                             "--output_dir", str(tmp_path / "temporal"), "--hidden_size", "32",
                             "--num_hidden_layers", "1", "--num_attention_heads", "2", "--window_size", "32",
                             "--window_stride", "16", "--train_stride", "4", "--num_train_epochs", "40",
                             "--learning_rate", "1e-3", "--disable_tqdm", "true", "--save_strategy", "no",
                             "--eval_strategy", "no"])
    record = json.loads((tmp_path / "temporal" / "emotic_run.json").read_text())
    assert record["track"] == "expr" and record["frame_head"] == "from the frame model frames"
    from transformers import AutoModel, AutoModelForImageClassification

    head = AutoModel.from_pretrained(tmp_path / "temporal")  # the frame model's head, kept as it was
    classifier = AutoModelForImageClassification.from_pretrained(two_stage / "frames").classifier
    assert head.config.frozen_frame_head and torch.equal(head.frame_head.weight, classifier.weight)
    assert record["data"]["eval"]["videos"] == 32 and not record["data"]["train"]["without_features"]
    assert str(tmp_path) not in json.dumps(record)

    # `emotic predict` runs the head end to end as training scored it, on the held-out videos' frame folders
    annotations = annotations_by_video(data, "expr", "Validation_Set")
    folders = [str(data / "cropped_aligned" / video) for video in annotations]
    assert predict.main([str(two_stage / "frames"), *folders, "--output_dir", str(tmp_path / "both"),
                         "--temporal_model", str(tmp_path / "temporal"), "--geometry", "template", "--quiet"]) == 0
    both = read_predictions(tmp_path / "both", ABAW_EXPRESSION_LABELS)
    labels = np.array([annotations[video][index] for video, index, _ in both])
    predicted = expression_metrics(np.stack([p for _, _, p in both]).argmax(1), labels)["macro_f1"]
    assert abs(predicted - results["macro_f1"]) < 1e-6

    # `emotic evaluate` on every annotated frame: the frame model at each smoothing window, then the temporal head
    windows = ["--smoothing_windows", "1,3,5,9,15,21", "--geometry", "template", "--examples", "0", "--quiet"]
    assert evaluate.main([str(two_stage / "frames"), str(data), "--output_dir", str(tmp_path / "alone"),
                          *windows]) == 0
    assert evaluate.main([str(two_stage / "frames"), str(data), "--output_dir", str(tmp_path / "with-head"),
                          "--temporal_model", str(tmp_path / "temporal"), *windows]) == 0
    alone = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    with_head = json.loads((tmp_path / "with-head" / "metrics.json").read_text())
    assert with_head["counts"]["frames"] == alone["counts"]["frames"] > 1400  # the same frames
    by_window, head = alone["smoothing"]["macro_f1_by_window"], with_head["raw"]["macro_f1"]
    best = alone["smoothed"]["macro_f1"]
    print(f"macro-F1 on held-out videos: frame model by smoothing window "
          f"{ {w: round(f, 3) for w, f in by_window.items()} }, temporal head {head:.3f} (predict and "
          f"finetune-temporal on the frames with images: {predicted:.3f})")
    assert best == max(by_window.values()) and head > best + 0.03, (head, by_window)


HEAD = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--window_size", "32",
        "--window_stride", "16", "--train_stride", "4", "--num_train_epochs", "40", "--learning_rate", "1e-3",
        "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "1000"]


@pytest.fixture(scope="module")
def with_sound(two_stage, speech_encoders):
    """The two-stage frame model's features of the generated videos with their audio features (a tiny Wav2Vec2,
    windows of 0.2 s every frame), the held-out videos, and a vision-only head trained on them: the baseline."""
    from emotic.inference import features
    from emotic.training import temporal
    from emotic.training.affwild2 import annotations_by_video

    data, root = two_stage / "data", two_stage / "sound"
    assert features.main([str(two_stage / "frames"), str(data / "videos"), "--output_dir", str(root / "features"),
                          "--geometry", "template", "--audio_model", str(speech_encoders / "wav2vec2"),
                          "--audio_window", "0.2", "--audio_stride", "0.04", "--quiet"]) == 0
    temporal.main(["--features_dir", str(root / "features"), "--affwild2_root", str(data), "--output_dir",
                   str(root / "vision"), "--modalities", "vision", *HEAD])
    videos, _ = temporal.load_videos(root / "features", annotations_by_video(data, "expr", "Validation_Set"))
    return root, videos


def macro_f1_by_part(model, videos, summary, audio: bool = True) -> dict:
    """Macro-F1 of a head over the held-out videos' annotated frames: all, the hidden faces, the visible ones."""
    from emotic.training import temporal
    from emotic.training.metrics import expression_metrics

    predicted = np.concatenate(temporal.video_outputs(model, videos, without=() if audio else ("audio",))).argmax(1)
    labels = np.concatenate([video["labels"] for video in videos])
    hidden = np.concatenate([np.isin(np.arange(len(video["labels"])),
                                     summary["occluded_frames"].get(video["video"], [])) for video in videos])
    annotated = labels >= 0
    return {part: expression_metrics(predicted[annotated & where], labels[annotated & where])["macro_f1"]
            for part, where in (("all", annotated), ("hidden", hidden), ("visible", ~hidden))}


@pytest.mark.minutes(1)
@pytest.mark.parametrize("fusion", ["cross_attention", "gated_sum"])
def test_sound_helps_where_the_face_is_hidden_and_its_absence_costs_little(fusion, two_stage, with_sound,
                                                                          speech_encoders):
    """On the same frames and features, a head that also hears (the voice's pitch follows the expression, its
    loudness the arousal, with pauses) beats the vision-only head on the frames whose face is hidden and does not
    lose on the others; with the sound taken away at test time (its missing-audio token on every frame) it scores
    within a small margin of the vision-only head. Both fusions; the numbers are printed."""
    from transformers import AutoModel

    from emotic.training import temporal

    root, videos = with_sound
    summary = json.loads((two_stage / "data" / "summary.json").read_text())
    results = temporal.main(["--features_dir", str(root / "features"), "--affwild2_root", str(two_stage / "data"),
                             "--output_dir", str(root / fusion), "--modality_fusion", fusion, *HEAD])
    head = AutoModel.from_pretrained(root / fusion)
    assert head.config.modalities == ["vision", "audio"] and head.config.audio_size == 32
    assert head.config.audio_settings == {"audio_model": "wav2vec2", "audio_layer": 2, "audio_window": 0.2,
                                          "audio_stride": 0.04, "audio_size": 32}
    vision = macro_f1_by_part(AutoModel.from_pretrained(root / "vision"), videos, summary)
    hearing = macro_f1_by_part(head, videos, summary)
    deaf = macro_f1_by_part(head, videos, summary, audio=False)
    assert abs(hearing["all"] - results["macro_f1"]) < 1e-6  # as finetune-temporal scored it
    assert abs(deaf["all"] - results["without_audio"]["macro_f1"]) < 1e-6
    def shown(scores):
        return " / ".join(f"{scores[part]:.3f}" for part in ("all", "hidden", "visible"))

    print(f"{fusion}: macro-F1 all / hidden faces / visible: vision {shown(vision)}, vision+audio {shown(hearing)}, "
          f"vision+audio with the sound removed {shown(deaf)}")
    assert hearing["hidden"] > vision["hidden"] + 0.03 and hearing["visible"] >= vision["visible"] - 0.01
    assert deaf["all"] >= vision["all"] - 0.04
    if fusion == "gated_sum":  # `emotic predict` runs the head end to end from the videos, hearing them
        predict_hearing(two_stage, root / fusion, results, speech_encoders)


def predict_hearing(two_stage, head, results, speech_encoders):
    """`emotic predict --temporal_model` with a head that hears, on the held-out videos: their sound encoded as in
    training (the head's recorded layer and windows) gives finetune-temporal's score; without the encoder's folder
    (the head records only its name) it is refused in one line."""
    from conftest import emotic_cli
    from emotic.inference import predict
    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
    from emotic.training.affwild2 import annotations_by_video
    from emotic.training.metrics import expression_metrics

    data = two_stage / "data"
    annotations = annotations_by_video(data, "expr", "Validation_Set")
    videos = [str(data / "videos" / f"{video}.mp4") for video in annotations]
    out = head.parent / f"{head.name}-predict"
    assert predict.main([str(two_stage / "frames"), *videos, "--output_dir", str(out), "--temporal_model", str(head),
                         "--audio_model", str(speech_encoders / "wav2vec2"), "--faces", "largest", "--geometry",
                         "template", "--quiet"]) == 0
    rows = read_predictions(out, ABAW_EXPRESSION_LABELS)
    labels = np.array([annotations[video][index] for video, index, _ in rows])
    predicted = expression_metrics(np.stack([p for _, _, p in rows]).argmax(1), labels)["macro_f1"]
    assert abs(predicted - results["macro_f1"]) < 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert all(counts["heard"] for counts in summary["videos"].values())
    assert summary["settings"]["audio"]["audio_layer"] == 2
    # `emotic evaluate` on the root's frame folders, their sound from the videos they were cut from (--audio_dir):
    # every video heard, the score that of the video frames' within JPEG's rounding of the features
    from emotic.inference import evaluate

    assert evaluate.main([str(two_stage / "frames"), str(data), "--output_dir", str(out.parent / "evaluated"),
                          "--temporal_model", str(head), "--audio_model", str(speech_encoders / "wav2vec2"),
                          "--audio_dir", str(data / "videos"), "--geometry", "template", "--examples", "0",
                          "--quiet"]) == 0
    metrics = json.loads((out.parent / "evaluated" / "metrics.json").read_text())
    assert metrics["counts"]["videos_without_audio"] == [] and metrics["counts"]["videos"] == 32
    assert abs(metrics["raw"]["macro_f1"] - results["macro_f1"]) < 0.05
    refused = emotic_cli("predict", two_stage / "frames", videos[0], "--output_dir", out.parent / "refused",
                         "--temporal_model", head, "--faces", "largest", "--quiet")
    assert refused.returncode == 2 and "--audio_model wav2vec2: does not load" in refused.stderr
    assert "Traceback" not in refused.stderr
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model  # another model of that name

    other = out.parent / "other" / "wav2vec2"
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                                 conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(other)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(other)
    wider = emotic_cli("predict", two_stage / "frames", videos[0], "--output_dir", out.parent / "refused",
                       "--temporal_model", head, "--audio_model", other, "--faces", "largest", "--quiet")
    assert wider.returncode == 2 and "gives 24 values per frame; the temporal head" in wider.stderr
    assert "takes 32 (audio_size): another model" in wider.stderr and "Traceback" not in wider.stderr
