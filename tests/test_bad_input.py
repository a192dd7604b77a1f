"""The bad-input suite: what a careless user, a hostile file and a broken network hand emotic, and what emotic
promises back. Each case asserts the documented outcome, a clear error naming the input and what was expected or a
counted and reported skip, and, where files are involved, that nothing outside the command's own output changed
(`Untouched` hashes the folders before and after) and nothing unexpected reached the loopback Hub.

Every test here is one case (parametrised tests: one per parameter); `conftest.py` prints the count."""

import contextlib
import fcntl
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, TOKEN, emotic_cli, hub_env, run_module, save_tiny_classifier, write_features_folder
from PIL import Image

from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor, EmoticModel
from emotic.training.synthetic import synthetic_video, write_video

pytestmark = pytest.mark.bad_input


# -- helpers ----------------------------------------------------------------------------------------------------------

def tree_state(*folders) -> dict:
    """Every entry under the folders: file content hashes, link targets, folder names."""
    state = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            state[str(folder)] = None
            continue
        for path in sorted([folder, *folder.rglob("*")]):
            if path.is_symlink():
                state[str(path)] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[str(path)] = "dir"
            else:
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@contextlib.contextmanager
def untouched(*folders):
    """Asserts that nothing under `folders` was added, removed or changed inside the block."""
    before = tree_state(*folders)
    yield
    after = tree_state(*folders)
    changed = sorted(set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})
    assert not changed, f"changed outside the command's output: {changed}"


def refused(result, *words, code=2):
    """A command that refused with one clear message (no traceback) holding `words`."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for word in words:
        assert word in result.stderr, (word, result.stderr[-2000:])
    return result.stderr


def face(size=64, seed=0) -> Image.Image:
    image, _, _ = next(synthetic_video(np.random.default_rng(seed), 1, size))
    return image


def png_header_only(path, width, height):
    """A PNG that declares `width x height` pixels and holds almost nothing (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny classifier folder as `emotic finetune` leaves it (weights, config, processor, run record)."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    EmoticForImageClassification(EmoticConfig(**TINY)).save_pretrained(folder)
    EmoticImageProcessor(size=32).save_pretrained(folder)
    (folder / "emotic_run.json").write_text(json.dumps({"task": "finetune", "dataset": "unit test data"}))
    return folder


# -- processor --------------------------------------------------------------------------------------------------------

def _text_file(tmp):
    (tmp / "notes.jpg").write_text("not an image")
    return tmp / "notes.jpg"


def _empty_file(tmp):
    (tmp / "empty.png").write_bytes(b"")
    return tmp / "empty.png"


def _truncated_jpeg(tmp):
    buffer = io.BytesIO()
    face(128).save(buffer, "JPEG")
    (tmp / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    return tmp / "cut.jpg"


PROCESSOR_CASES = {
    "empty list": (lambda tmp: [], "empty list"),
    "empty 4-D tensor batch": (lambda tmp: torch.zeros(0, 3, 32, 32), "empty batch of shape (0, 3, 32, 32)"),
    "empty 4-D array batch": (lambda tmp: np.zeros((0, 32, 32, 3), dtype=np.uint8), "empty batch of shape"),
    "text file named .jpg": (_text_file, "not an image PIL can read"),
    "missing file": (lambda tmp: tmp / "nowhere.png", "no such file"),
    "zero-byte file": (_empty_file, "empty (0 bytes)"),
    "truncated JPEG": (_truncated_jpeg, "cannot decode image"),
    "decompression bomb header": (lambda tmp: png_header_only(tmp / "bomb.png", 12000, 12000), "max_image_pixels"),
    "NaN array": (lambda tmp: np.full((32, 32, 3), np.nan, dtype=np.float32), "NaN"),
    "normalised floats": (lambda tmp: np.full((32, 32, 3), -1.5, dtype=np.float32), "expected [0, 1] or [0, 255]"),
    "five channels": (lambda tmp: np.zeros((32, 32, 5), dtype=np.uint8), "is not an image"),
    "8x8 image": (lambda tmp: np.zeros((8, 8, 3), dtype=np.uint8), "too small"),
    "a dict": (lambda tmp: {"image": 1}, "unsupported type dict"),
    "negative integers": (lambda tmp: np.full((32, 32), -5, dtype=np.int16), "8- or 16-bit"),
}


@pytest.mark.parametrize("case", list(PROCESSOR_CASES))
def test_processor_refuses_bad_images_naming_them(case, tmp_path):
    make, words = PROCESSOR_CASES[case]
    image = make(tmp_path)
    with untouched(tmp_path), pytest.raises(ValueError, match="image") as error:
        EmoticImageProcessor(size=32, geometry="template")(image)
    assert words in str(error.value)


LANDMARK_CASES = {
    "7 points": (np.random.default_rng(0).uniform(0, 60, (7, 2)), "not a known landmark convention"),
    "NaN points": (np.full((5, 2), np.nan), "NaN"),
    "outside the image": (np.array([[238, 251], [273, 251], [256, 271], [241, 292], [270, 292.0]]), "lies outside"),
    "100x the scale": (np.array([[38, 51], [73, 51], [56, 71], [41, 92], [70, 92.0]]) * 100, "times the"),
    "one spot": (np.full((5, 2), 30.0), "degenerate"),
    "fractions of the image": (np.array([[38, 51], [73, 51], [56, 71], [41, 92], [70, 92.0]]) / 112,
                               "not fractions of it"),
    "wrong shape": (np.zeros((5, 2, 2)), "expected one (num_points, 2) array per image"),
    "three coordinates per point of a 6-point set": (np.zeros((6, 3)), "6 points is not a known"),
}


@pytest.mark.parametrize("case", list(LANDMARK_CASES))
def test_processor_refuses_landmarks_that_cannot_be_this_images_face(case):
    points, words = LANDMARK_CASES[case]
    with pytest.raises(ValueError, match="landmarks") as error:
        EmoticImageProcessor(size=32)(face(64), landmarks=points)
    assert words in str(error.value)


def test_processor_refuses_a_landmark_list_of_the_wrong_length():
    points = np.array([[20, 25], [44, 25], [32, 36], [22, 46], [42, 46.0]])
    with pytest.raises(ValueError, match="got 1 entries for 2 images"):
        EmoticImageProcessor(size=32)([face(64), face(64, 1)], landmarks=[points])


def test_processor_refuses_a_batch_mixing_channel_counts_without_conversion():
    grey, rgba = np.zeros((40, 48), dtype=np.uint8), np.zeros((40, 48, 4), dtype=np.uint8)
    processor = EmoticImageProcessor(size=32, geometry="template", image_mean=[0.5], image_std=[0.5])
    with pytest.raises(ValueError, match=r"different channel counts \(1 and 4\)"):
        processor([grey, rgba, grey], do_convert_rgb=False)
    assert processor([grey, rgba])["pixel_values"].shape == (2, 3, 32, 32)  # converted to RGB, they batch


@pytest.mark.parametrize("option, value, words", [
    ("aux_regions", ["ears"], "aux_regions=['ears']"), ("geometry", "guess", "geometry='guess'"),
    ("aux_layout", "grid", "aux_layout='grid'"), ("on_no_face", "ignore", "on_no_face='ignore'"),
])
def test_processor_refuses_unknown_options_listing_the_allowed(option, value, words):
    with pytest.raises(ValueError, match="allowed") as error:
        EmoticImageProcessor(size=32)(face(64), **{option: value})
    assert words in str(error.value)


def test_processor_refuses_a_misspelt_call_option():
    with pytest.raises(TypeError, match="unexpected arguments \\['landmark'\\]"):
        EmoticImageProcessor(size=32)(face(64), landmark=None)


def test_a_phone_photo_stored_sideways_gives_the_views_of_the_upright_photo(tmp_path):
    upright = face(96)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels are stored turned left
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright.save(tmp_path / "upright.jpg", quality=100)
    processor = EmoticImageProcessor(size=32, geometry="template")
    for image in (tmp_path / "phone.jpg", Image.open(tmp_path / "phone.jpg")):
        views, reference = processor(image)["pixel_values"], processor(tmp_path / "upright.jpg")["pixel_values"]
        assert np.abs(views - reference).mean() < 0.05  # JPEG noise only, not a rotated face


@pytest.mark.parametrize("canvas", [(700, 600), (800, 600), (1000, 700), (1280, 960)])
def test_the_detector_finds_the_same_face_in_larger_photos(canvas):
    import matplotlib.cbook

    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    scene = Image.new("RGB", canvas, (120, 120, 120))
    scene.paste(photo.resize((200, 200 * photo.height // photo.width)), (canvas[0] // 2 - 100, 100))
    regions = EmoticImageProcessor(size=32, geometry="detector")(scene, return_regions=True)["regions"][0]
    assert regions["geometry"] == "detector"
    x0, y0, x1, y1 = regions["face"]
    assert canvas[0] // 2 - 100 <= (x0 + x1) / 2 <= canvas[0] // 2 + 100  # on the pasted photo


def test_the_pipeline_refuses_a_decompression_bomb_from_its_header(model_dir, tmp_path):
    from transformers import pipeline

    import emotic  # noqa: F401

    bomb = png_header_only(tmp_path / "bomb.png", 12000, 12000)  # 144 megapixels declared
    classifier = pipeline("image-classification", model=str(model_dir))
    with pytest.raises((Image.DecompressionBombError, ValueError), match="pixels"):
        classifier(str(bomb))  # refused by Pillow at open: nothing was decoded (the file holds no pixel data)


# -- model and config ---------------------------------------------------------------------------------------------

MODEL_INPUT_CASES = {
    "empty batch": (lambda: dict(pixel_values=torch.zeros(0, 3, 32, 32)), "empty batch"),
    "unbatched image": (lambda: dict(pixel_values=torch.zeros(3, 32, 32)), "add a batch dimension"),
    "a list": (lambda: dict(pixel_values=[[0.0]]), "must be a torch.Tensor"),
    "one channel": (lambda: dict(pixel_values=torch.zeros(2, 1, 32, 32)), "(batch_size, 3, height, width)"),
    "other resolution": (lambda: dict(pixel_values=torch.zeros(2, 3, 48, 48),
                                      pixel_values_aux=torch.zeros(2, 3, 48, 48)), "interpolate_pos_encoding"),
    "no auxiliary view": (lambda: dict(pixel_values=torch.zeros(2, 3, 32, 32)), "EmoticImageProcessor"),
    "aux of another shape": (lambda: dict(pixel_values=torch.zeros(2, 3, 32, 32),
                                          pixel_values_aux=torch.zeros(1, 3, 32, 32)), "pixel_values_aux"),
    "float class labels": (lambda: dict(pixel_values=torch.zeros(2, 3, 32, 32),
                                        pixel_values_aux=torch.zeros(2, 3, 32, 32), labels=torch.tensor([1.0, 2.0])),
                           "expected class indices"),
}


@pytest.mark.parametrize("case", list(MODEL_INPUT_CASES))
def test_the_classifier_refuses_bad_inputs_naming_them(case):
    make, words = MODEL_INPUT_CASES[case]
    model = EmoticForImageClassification(EmoticConfig(**TINY)).eval()
    with pytest.raises(ValueError) as error:
        model(**make())
    assert words in str(error.value)


def test_the_encoder_refuses_an_empty_batch_and_a_wrong_noise():
    model = EmoticModel(EmoticConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.zeros(0, 3, 32, 32))
    with pytest.raises(ValueError, match="noise must have shape"):
        model(torch.zeros(2, 3, 32, 32), noise=torch.rand(2, 3))


def test_float_labels_in_one_call_do_not_switch_the_model_to_multi_label(tmp_path):
    model = EmoticForImageClassification(EmoticConfig(**TINY))
    pixels = {"pixel_values": torch.zeros(2, 3, 32, 32), "pixel_values_aux": torch.zeros(2, 3, 32, 32)}
    multi = model(**pixels, labels=torch.tensor([[0.0] * 7 + [1.0]] * 2)).loss  # multi-label targets: BCE
    assert torch.isfinite(multi) and model.config.problem_type is None
    single = model(**pixels, labels=torch.tensor([1, 7])).loss  # then class indices: cross-entropy again
    assert torch.isfinite(single)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()).get("problem_type") is None


@pytest.mark.parametrize("fields, words", [
    ({"hidden_act": "gelux"}, "hidden_act='gelux'; allowed"), ({"fusion_layer": 9}, "fusion_layer=9"),
    ({"num_attention_heads": 5}, "num_attention_heads=5"), ({"fusion_strategy": "sum"}, "fusion_strategy='sum'"),
    ({"smoothing_window": 4}, "smoothing_window=4"), ({"class_weights": [1.0, 2.0]}, "class_weights"),
    ({"num_labels": 12, "pos_weight": [1.0] * 11}, "pos_weight=[1.0, 1.0"),
    ({"num_labels": 2, "label_thresholds": [0.5, 1.0]}, "expected 2 numbers strictly between 0 and 1"),
    ({"regression_range": [1, -1]}, "regression_range=[1, -1]; expected [low, high]"),
    ({"regression_loss": "mae"}, "regression_loss='mae'; allowed: ['mse', 'ccc']"),
])
def test_config_refuses_bad_values_naming_field_and_allowed(fields, words):
    with pytest.raises(ValueError, match="EmoticConfig") as error:
        EmoticConfig(**{**TINY, **fields})
    assert words in str(error.value)


def test_a_corrupt_config_file_is_an_error_naming_it(model_dir, tmp_path):
    import shutil

    from transformers import AutoModelForImageClassification

    folder = tmp_path / "copy"
    shutil.copytree(model_dir, folder)
    (folder / "config.json").write_text('{"model_type": "emotic", ')
    with pytest.raises((OSError, ValueError), match="config"):
        AutoModelForImageClassification.from_pretrained(folder)


# -- converter ----------------------------------------------------------------------------------------------------

def convert(*args):
    return run_module("emotic.modeling.convert_mae_face", *args)


def mae_state_dict(decoder=True) -> dict:
    """A tiny MAE checkpoint in timm/MAE naming, built from an emotic pre-training model's shapes."""
    d, layers = 32, 2
    state = {"cls_token": torch.zeros(1, 1, d), "pos_embed": torch.zeros(1, 17, d),
             "patch_embed.proj.weight": torch.zeros(d, 3, 8, 8), "patch_embed.proj.bias": torch.zeros(d)}
    for i in range(layers):
        state.update({f"blocks.{i}.mlp.fc1.weight": torch.zeros(64, d), f"blocks.{i}.mlp.fc1.bias": torch.zeros(64)})
    if decoder:
        state["decoder_embed.weight"] = torch.zeros(16, d)  # the decoder's first layer, and no decoder blocks
    return state


def test_converter_refuses_a_truncated_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file(mae_state_dict(), tmp_path / "mae.safetensors")
    data = (tmp_path / "mae.safetensors").read_bytes()
    (tmp_path / "mae.safetensors").write_bytes(data[: len(data) // 2])
    with untouched(tmp_path):
        refused(convert("--checkpoint", tmp_path / "mae.safetensors", "--output-dir", tmp_path / "out"),
                "mae.safetensors: cannot be read as safetensors")


def test_converter_refuses_a_one_dimensional_position_embedding(tmp_path):
    state = mae_state_dict()
    state["pos_embed"] = torch.zeros(17 * 32)
    torch.save({"model": state}, tmp_path / "mae.pth")
    with untouched(tmp_path):
        refused(convert("--checkpoint", tmp_path / "mae.pth", "--output-dir", tmp_path / "out"),
                "'pos_embed' has shape (544,); expected (1, 1 + N, D)")


def test_converter_refuses_a_partial_decoder_for_pretraining(tmp_path):
    torch.save({"model": mae_state_dict()}, tmp_path / "mae.pth")
    with untouched(tmp_path):
        refused(convert("--checkpoint", tmp_path / "mae.pth", "--output-dir", tmp_path / "out", "--task",
                        "pretraining"), "decoder is incomplete", "decoder_blocks.0.mlp.fc1.weight")


@pytest.mark.parametrize("existing", ["file", "folder with a file"])
def test_converter_never_writes_over_an_existing_output(existing, tmp_path):
    torch.save({"model": mae_state_dict(decoder=False)}, tmp_path / "mae.pth")
    out = tmp_path / "out"
    if existing == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        (out / "config.json").write_text("{}")
    with untouched(tmp_path):
        refused(convert("--checkpoint", tmp_path / "mae.pth", "--output-dir", out), "--output_dir")


def test_converter_never_runs_code_from_a_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Payload()}))
    with untouched(tmp_path):  # no marker file, no output folder
        refused(convert("--checkpoint", tmp_path / "evil.pth", "--output-dir", tmp_path / "out"), "weights_only=True")


# -- readers and training -----------------------------------------------------------------------------------------

def affwild2(root: Path, lines: str, frames=3):
    (root / "annotations" / "Train_Set").mkdir(parents=True)
    (root / "cropped_aligned" / "v1").mkdir(parents=True)
    for i in range(frames):
        face(32, i).save(root / "cropped_aligned" / "v1" / f"{i + 1:05d}.jpg")
    (root / "annotations" / "Train_Set" / "v1.txt").write_bytes(lines.encode("utf-8"))
    return root


HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"


def test_annotations_saved_with_a_byte_order_mark_are_read(tmp_path):
    from emotic.training.affwild2 import read_affwild2

    root = affwild2(tmp_path, "\ufeff" + HEADER + "1\n4\n7\n")
    with untouched(tmp_path):
        dataset, report = read_affwild2(root / "annotations" / "Train_Set", root / "cropped_aligned")
    assert list(dataset["label"]) == [1, 4, 7] and report.frames == 3


@pytest.mark.parametrize("lines, words", [
    ("Happy,Sad\n1\n", "line 1: expected the header"), (HEADER + "1\nseven\n", "line 3: 'seven' is not an integer"),
    (HEADER + "1\n9\n", "line 3: label 9 is out of range"), ("", "found 'an empty file'"),
    (HEADER + "-1\n-1\n-1\n", "no usable frame"),
])
def test_bad_annotation_files_are_errors_naming_file_and_line(lines, words, tmp_path):
    from emotic.training.affwild2 import read_affwild2

    root = affwild2(tmp_path, lines)
    with untouched(tmp_path), pytest.raises(ValueError) as error:
        read_affwild2(root / "annotations" / "Train_Set", root / "cropped_aligned")
    assert words in str(error.value) and ("v1.txt" in str(error.value) or "Train_Set" in str(error.value))


VA_HEADER, AU_HEADER = "valence,arousal\n", "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n"


@pytest.mark.parametrize("task, lines, words", [
    ("va", VA_HEADER + "0.1,0.2\n1.5,0.3\n0,0\n", "v1.txt, line 3: valence 1.5, arousal 0.3 is out of range"),
    ("va", VA_HEADER + "0.1,0.2\n-4,-5\n0,0\n", "v1.txt, line 3: valence -4, arousal -5 is out of range"),
    ("va", VA_HEADER + "0.1\n", "v1.txt, line 2: 1 values ('0.1'); expected two floats"),
    ("va", VA_HEADER + "0.1,high\n", "v1.txt, line 2: '0.1,high' are not two numbers"),
    ("va", "arousal,valence\n0,0\n", "v1.txt, line 1: expected the header 'valence,arousal'"),
    ("au", AU_HEADER + "0,1,0,0,0,0,1,0,0,0,1\n", "v1.txt, line 2: 11 values"),
    ("au", AU_HEADER + "0,1,0,0,0,0,1,0,0,0,1,2\n", "v1.txt, line 2: '0,1,0,0,0,0,1,0,0,0,1,2': expected 0 or 1"),
    ("au", AU_HEADER + "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n", "no usable frame"),
])
def test_bad_va_and_au_annotation_files_are_refused_naming_file_and_line(task, lines, words, tmp_path):
    from emotic.training.affwild2 import read_affwild2

    root = affwild2(tmp_path, lines)
    with untouched(tmp_path), pytest.raises(ValueError) as error:
        read_affwild2(root / "annotations" / "Train_Set", root / "cropped_aligned", task=task)
    assert words in str(error.value), str(error.value)


@pytest.mark.parametrize("header, row, words", [
    ("image,valence,arousal,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26", "a.jpg,0,0" + ",0" * 12,
     "line 1: the header lacks the column expression"),
    ("image,valence,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26", "a.jpg,0,1" + ",0" * 12,
     "line 1: the header lacks the column arousal"),
    ("image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
     "a.jpg,0,0,9" + ",0" * 12, "line 2: expression 9 is out of range"),
    ("image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
     "a.jpg,0,0,1" + ",0" * 11, "line 2: 15 values; expected 16"),
])
def test_a_multitask_csv_with_a_missing_column_or_a_bad_row_is_refused_naming_file_and_line(header, row, words,
                                                                                            tmp_path):
    from emotic.training.affwild2 import read_multitask_annotations

    face(32).save(tmp_path / "a.jpg")
    (tmp_path / "training_set_annotations.txt").write_text(header + "\n" + row + "\n")
    with untouched(tmp_path), pytest.raises(ValueError) as error:
        read_multitask_annotations(tmp_path / "training_set_annotations.txt", tmp_path)
    assert "training_set_annotations.txt" in str(error.value) and words in str(error.value), str(error.value)


def test_an_image_folder_with_an_unknown_class_lists_the_labels(tmp_path):
    from emotic.training.image_datasets import read_image_folder

    (tmp_path / "smirk").mkdir()
    face(32).save(tmp_path / "smirk" / "a.jpg")
    with untouched(tmp_path), pytest.raises(ValueError, match=r"\['smirk'\] are not among the model's labels "
                                                              r"\['Neutral', 'Happiness'\]"):
        read_image_folder(tmp_path, {"Happiness": 4, "Neutral": 0})


def test_image_folders_honour_the_label_map_and_dropping_unmapped_classes(tmp_path):
    """FER+'s folders: `contempt` mapped onto Other, an unknown class dropped and counted; both options were once
    ignored for image folders (only `--dataset_name` honoured them)."""
    from emotic.training.image_datasets import read_image_folder

    labels = {name: index for index, name in enumerate(EmoticConfig().id2label.values())}
    for name in ("neutral", "happiness", "contempt", "unknown"):
        (tmp_path / name).mkdir()
        for index in range(2):
            face(32, index).save(tmp_path / name / f"{index}.png")
    with untouched(tmp_path):
        dataset, report = read_image_folder(tmp_path, labels, {"contempt": "Other"}, drop_unmapped=True)
    assert sorted(set(dataset["label"])) == [labels["Neutral"], labels["Happiness"], labels["Other"]]
    assert report.frames == 6 and report.dropped_labels == {"unknown": 2}
    with pytest.raises(ValueError, match=r"\['unknown'\] are not among the model's labels"):
        read_image_folder(tmp_path, labels, {"contempt": "Other"})
    with pytest.raises(ValueError, match="--label_map sends 'contempt' to 'Smirk', which is not one of the model's"):
        read_image_folder(tmp_path, labels, {"contempt": "Smirk"}, drop_unmapped=True)


def test_finetune_refuses_an_image_folder_it_cannot_label_in_one_line(tmp_path):
    """Once a traceback whose last line told the user to pass the `--label_map` they had passed."""
    (tmp_path / "train" / "contempt").mkdir(parents=True)
    face(32).save(tmp_path / "train" / "contempt" / "a.png")
    (tmp_path / "train" / "smirk").mkdir()
    face(32).save(tmp_path / "train" / "smirk" / "a.png")
    with untouched(tmp_path / "train"):
        refused(emotic_cli("finetune", "--train_dir", tmp_path / "train", "--label_map", '{"contempt": "Other"}',
                           "--output_dir", tmp_path / "run", "--model_size", "tiny", "--eval_split", ""),
                "class folders: dataset labels ['smirk'] are not among the model's labels")
    assert not (tmp_path / "run").exists()


def test_real_expression_images_of_every_kind_train_or_are_skipped_and_counted(tmp_path):
    """What FER folders hold in the wild: 48x48 grey PNGs, 16-bit PNGs and CMYK JPEGs train (16 bits scaled to 8,
    not clipped); a 1x1 image is skipped and counted; an empty class folder is reported by name."""
    from emotic.training.image_datasets import read_image_folder
    from emotic.training.transforms import ViewTransform

    labels = {name: index for index, name in enumerate(EmoticConfig().id2label.values())}
    root = tmp_path / "train"
    for name in ("neutral", "happiness", "fear"):
        (root / name).mkdir(parents=True)
    ramp = np.add.outer(np.arange(48), np.arange(48))
    Image.fromarray(ramp.astype(np.uint8) * 2, mode="L").save(root / "neutral" / "grey.png")
    Image.fromarray(ramp.astype(np.uint16) * 600).save(root / "neutral" / "deep.png")  # 0..56,400 of 65,535
    assert Image.open(root / "neutral" / "deep.png").mode == "I;16"
    Image.fromarray(np.repeat(ramp[..., None].astype(np.uint8) * 2, 3, 2)).convert("CMYK").save(
        root / "happiness" / "cmyk.jpg")
    Image.new("L", (1, 1)).save(root / "happiness" / "dot.png")
    with untouched(root):
        dataset, report = read_image_folder(root, labels)
        transform = ViewTransform(EmoticImageProcessor(size=32, geometry="template"))
        batch = transform(dataset.with_format(None)[:])
    assert report.empty_classes == ["fear"] and "class folders without an image ['fear']" in report.format()
    names = [Path(path).name for path in dataset["image"]]
    kept = {name: label for name, label in zip(names, batch["labels"].tolist())}
    assert kept == {"cmyk.jpg": labels["Happiness"], "dot.png": -1, "deep.png": labels["Neutral"],
                    "grey.png": labels["Neutral"]}
    assert list(transform.unreadable) == [str(root / "happiness" / "dot.png")]
    deep = np.asarray(EmoticImageProcessor().to_rgb(str(root / "neutral" / "deep.png")))[..., 0].astype(int)
    assert deep.min() == 0 and 215 <= deep.max() <= 221 and (np.diff(deep, axis=1) >= 0).all()  # 56,400 / 257


@pytest.mark.parametrize("option, value, message", [
    ("--crop_scale", "0", "--crop_scale 0.0: expected a number > 0 and <= 1"),
    ("--rotation", "-5", "--rotation -5.0: expected a number >= 0 and <= 180"),
    ("--erasing", "nan", "--erasing nan: expected a number >= 0 and <= 1"),
    ("--class_weight_power", "3", "--class_weight_power 3.0: expected a number >= 0 and <= 1"),
    ("--layer_decay", "1.5", "--layer_decay 1.5: expected a number > 0 and <= 1"),
])
def test_finetune_refuses_a_training_option_out_of_range_in_one_line(tmp_path, option, value, message):
    (tmp_path / "train" / "neutral").mkdir(parents=True)
    face(32).save(tmp_path / "train" / "neutral" / "a.png")
    refused(emotic_cli("finetune", "--train_dir", tmp_path / "train", "--output_dir", tmp_path / "run",
                       "--model_size", "tiny", "--eval_split", "", option, value), message)
    assert not (tmp_path / "run").exists()


def test_an_unknown_face_detector_is_refused_in_one_line(tmp_path):
    refused(emotic_cli("predict", tmp_path / "model", tmp_path / "video.mp4", "--detector", "retina"),
            "--detector", "invalid choice: 'retina'")


def test_an_unreadable_training_image_is_skipped_counted_and_ignored_by_the_loss(tmp_path):
    from emotic.training.transforms import ViewTransform

    face(32).save(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    transform = ViewTransform(EmoticImageProcessor(size=32, geometry="template"))
    with untouched(tmp_path):
        batch = transform({"image": [str(tmp_path / "good.jpg"), str(tmp_path / "bad.jpg")], "label": [4, 4]})
    assert batch["labels"].tolist() == [4, -1]  # -1: ignored by the loss and the metrics
    assert list(transform.unreadable) == [str(tmp_path / "bad.jpg")]
    assert batch["pixel_values"].shape == batch["pixel_values_aux"].shape == (2, 3, 32, 32)


def test_finetune_on_an_image_folder_with_a_corrupt_image_finishes_and_records_it(tmp_path):
    for name in ("Neutral", "Happiness"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            face(32, i + (10 if name == "Happiness" else 0)).save(tmp_path / "data" / name / f"{i}.jpg")
    (tmp_path / "data" / "Happiness" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with untouched(tmp_path / "data"):
        result = emotic_cli("finetune", "--train_dir", tmp_path / "data", "--output_dir", tmp_path / "run",
                            "--model_size", "tiny", "--image_size", "32", "--max_steps", "2",
                            "--per_device_train_batch_size", "9", "--report_to", "none", "--disable_tqdm", "true",
                            "--save_strategy", "no")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "broken.jpg" in result.stderr  # named when it was skipped
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["unreadable_images"] == {"count": 1, "files": ["Happiness/broken.jpg"]}


def test_finetune_keeps_a_fine_tuned_models_architecture_unless_told(tmp_path):
    from emotic.training.finetune import ModelArguments, build_model

    torch.manual_seed(0)
    EmoticForImageClassification(EmoticConfig(**TINY, fusion_strategy="concat",
                                              label_smoothing=0.1)).save_pretrained(tmp_path / "concat")
    EmoticImageProcessor(size=32, aux_layout="updown").save_pretrained(tmp_path / "concat")
    with untouched(tmp_path / "concat"):
        kept, kept_processor = build_model(ModelArguments(model_name_or_path=str(tmp_path / "concat")), [0, 1, 2])
    assert (kept.config.fusion_strategy, kept_processor.aux_layout, kept.config.label_smoothing) == \
        ("concat", "updown", 0.1)
    changed, processor = build_model(ModelArguments(model_name_or_path=str(tmp_path / "concat"),
                                                    fusion_strategy="mean", aux_layout="concat"), [0, 1, 2])
    assert changed.config.fusion_strategy == "mean" and processor.aux_layout == "concat"


def test_finetune_without_data_says_what_to_pass(tmp_path):
    result = emotic_cli("finetune", "--output_dir", tmp_path / "run", "--model_size", "tiny")
    assert result.returncode != 0 and "no training data: pass --affwild2_root" in result.stderr


# -- predict --------------------------------------------------------------------------------------------------------

def predict(model_dir, *args):
    return emotic_cli("predict", model_dir, *args, "--quiet", "--geometry", "template")


def frames(count, size=32, seed=0):
    return [image for image, _, _ in synthetic_video(np.random.default_rng(seed), count, size)]


def test_a_video_cut_off_mid_file_is_reported_as_incomplete(model_dir, tmp_path):
    import av

    with av.open(str(tmp_path / "long.avi"), mode="w") as container:  # AVI headers declare the frame count
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for image in frames(8) * 25:
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    data = (tmp_path / "long.avi").read_bytes()
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "cut.avi").write_bytes(data[: int(len(data) * 0.4)])
    with untouched(tmp_path / "inputs"):
        result = predict(model_dir, tmp_path / "inputs" / "cut.avi", "--output-dir", tmp_path / "out")
    refused(result, "incomplete cut:", "declares 200", code=1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["incomplete"]) == ["cut"] and summary["totals"]["incomplete_videos"] == 1
    assert 0 < summary["videos"]["cut"]["frames"] < 200
    again = predict(model_dir, tmp_path / "inputs" / "cut.avi", "--output-dir", tmp_path / "out")
    assert again.returncode == 1 and "predicted only in part: cut" in again.stderr  # still said after a restart


def test_a_frame_folder_of_corrupt_images_is_skipped_not_predicted(model_dir, tmp_path):
    (tmp_path / "inputs" / "broken").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "inputs" / "broken" / f"{i + 1:05d}.jpg").write_bytes(b"\xff\xd8\xff not a frame")
    with untouched(tmp_path / "inputs"):
        result = predict(model_dir, tmp_path / "inputs" / "broken", "--output-dir", tmp_path / "out")
    refused(result, "skipped broken:", "none of its 3 frames could be decoded", code=1)
    assert not (tmp_path / "out" / "frames" / "broken.csv").exists()
    assert (tmp_path / "out" / "submission.txt").read_text().splitlines() == [
        "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"]


def test_a_video_name_with_a_comma_keeps_the_submission_columns(model_dir, tmp_path):
    import csv

    (tmp_path / "inputs").mkdir()
    write_video(tmp_path / "inputs" / "interview, take 2.mp4", frames(4))
    with untouched(tmp_path / "inputs", model_dir):
        result = predict(model_dir, tmp_path / "inputs" / "interview, take 2.mp4", "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out" / "submission.txt", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 5 and all(len(row) == 2 for row in rows[1:])
    assert rows[1] == ["interview, take 2/00001.jpg", rows[1][1]] and rows[1][1] in "01234567"


def test_a_second_predict_into_the_same_folder_is_refused_while_the_first_runs(model_dir, tmp_path):
    (tmp_path / "frames").mkdir()
    frames(2)[0].save(tmp_path / "frames" / "00001.jpg")
    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    with open(out / ".emotic-predict.lock", "a+") as lock:  # what a running predict holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with untouched(out):
            refused(predict(model_dir, tmp_path / "frames", "--output-dir", out), "in use by another")
    assert predict(model_dir, tmp_path / "frames", "--output-dir", out).returncode == 0  # free again


def test_a_link_in_place_of_the_output_folders_lock_is_refused_and_what_it_points_to_is_untouched(model_dir, tmp_path):
    (tmp_path / "frames").mkdir()
    frames(1)[0].save(tmp_path / "frames" / "00001.jpg")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("months of work\n")
    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    (out / ".emotic-predict.lock").symlink_to(tmp_path / "mine" / "thesis.tex")
    with untouched(tmp_path / "mine", out):
        refused(predict(model_dir, tmp_path / "frames", "--output-dir", out), ".emotic-predict.lock",
                "is not a plain file")


def test_predict_refuses_an_even_window_and_a_missing_input_before_writing(model_dir, tmp_path):
    (tmp_path / "frames").mkdir()
    frames(1)[0].save(tmp_path / "frames" / "00001.jpg")
    refused(predict(model_dir, tmp_path / "frames", "--smoothing_window", "4", "--output-dir", tmp_path / "out"),
            "odd integer")
    refused(predict(model_dir, tmp_path / "missing.mp4", "--output-dir", tmp_path / "out"), "no such file")
    assert not (tmp_path / "out").exists()


def test_predict_refuses_a_compound_submission_from_a_model_without_the_basic_expressions(tmp_path):
    au_model = tmp_path / "au-model"
    names = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
    EmoticForImageClassification(EmoticConfig(**TINY, id2label=dict(enumerate(names)),
                                              problem_type="multi_label_classification")).save_pretrained(au_model)
    EmoticImageProcessor(size=32).save_pretrained(au_model)
    (tmp_path / "frames").mkdir()
    frames(1)[0].save(tmp_path / "frames" / "00001.jpg")
    refused(predict(au_model, tmp_path / "frames", "--compound_submission", "--output-dir", tmp_path / "out"),
            "--compound_submission: compound expressions are scored from the basic expressions ['Anger', 'Disgust'",
            "use an expression (EXPR) model")
    assert not (tmp_path / "out").exists()


def test_evaluate_asks_an_action_unit_model_for_its_annotations_and_the_app_refuses_it(tmp_path, capsys):
    from emotic.app import Analyser
    from emotic.inference import evaluate

    au_model = tmp_path / "au-model"
    names = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
    model = EmoticForImageClassification(EmoticConfig(**TINY, id2label=dict(enumerate(names)),
                                                      problem_type="multi_label_classification"))
    model.save_pretrained(au_model)
    EmoticImageProcessor(size=32).save_pretrained(au_model)
    (tmp_path / "data" / "annotations" / "Validation_Set").mkdir(parents=True)
    with untouched(tmp_path), pytest.raises(SystemExit):  # expression annotations only: not scored as AUs
        evaluate.main([str(au_model), str(tmp_path / "data"), "--output_dir", str(tmp_path / "report")])
    assert "no AU annotation folder for Validation_Set: expected one of ['AU_Detection_Challenge/Validation_Set']" \
        in capsys.readouterr().err
    with untouched(tmp_path), pytest.raises(SystemExit):
        evaluate.main([str(au_model), str(tmp_path / "missing"), "--output_dir", str(tmp_path / "report")])
    assert "serves the AU track: evaluate it on an Aff-Wild2 root with its annotations" in capsys.readouterr().err
    with pytest.raises(ValueError, match="emotic app shows expression models; this one serves the AU track"):
        Analyser(model, EmoticImageProcessor(size=32))


def temporal_head(folder, feature_size, frozen_frame_head=False):
    """A temporal head over features of `feature_size` values, saved as `emotic finetune-temporal` leaves it (with
    `frozen_frame_head`, as if its frame head were a frame model's classifier: here, no model's)."""
    from emotic import EmoticTemporalConfig, EmoticTemporalModel

    EmoticTemporalModel(EmoticTemporalConfig(feature_size=feature_size, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, window_size=8,
                                             window_stride=4, frozen_frame_head=frozen_frame_head)
                        ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("case", ["another width", "another frame model", "a frame model", "separate images"])
def test_predict_refuses_a_temporal_head_it_cannot_run_before_writing(case, model_dir, tmp_path):
    video = tmp_path / "video"
    video.mkdir()
    for index, image in enumerate(frames(3)):
        image.save(video / f"{index + 1:05d}.jpg")
    width, words = {
        "another width": (48, ["takes features of 48 values per frame", "the frame model gives 32"]),
        "another frame model": (32, ["was trained on the features of another frame model",
                                     "its frame head is not this model's classifier"]),
        "a frame model": (None, ["is a EmoticConfig model", "expected an emotic temporal head"]),
        "separate images": (32, ["videos and frame folders only", "not separate images"]),
    }[case]
    head = model_dir if width is None else temporal_head(tmp_path / "head", width, case == "another frame model")
    inputs = [video / "00001.jpg", video / "00002.jpg"] if case == "separate images" else [video]
    with untouched(tmp_path / "video", model_dir):
        refused(predict(model_dir, *inputs, "--temporal_model", head, "--output_dir", tmp_path / "out"), *words)
    assert not (tmp_path / "out" / "frames").exists() or not any((tmp_path / "out" / "frames").iterdir())


@pytest.mark.parametrize("widths, words", [
    ({"a": 32, "b": 16, "c": 32}, ["b.parquet: features of 16 values per frame", "the others (and the model) have 32"]),
    ({"a": 32, "b": -32, "c": 32}, ["b.parquet: 0 rows", "one row per frame"]),
])
def test_finetune_temporal_refuses_features_of_two_widths_and_an_empty_video_naming_the_file(widths, words, tmp_path):
    folder = write_features_folder(tmp_path, widths)
    with untouched(folder / "features", folder / "data"):
        result = emotic_cli("finetune-temporal", "--features_dir", folder, "--affwild2_root", folder / "data",
                            "--output_dir", tmp_path / "run", "--window_size", "4", "--window_stride", "2")
    refused(result, *words)
    assert not (tmp_path / "run").exists()


def test_finetune_temporal_refuses_a_folder_that_is_not_features(tmp_path):
    (tmp_path / "data" / "annotations" / "Train_Set").mkdir(parents=True)
    refused(emotic_cli("finetune-temporal", "--features_dir", tmp_path / "data", "--affwild2_root", tmp_path / "data",
                       "--output_dir", tmp_path / "run"),
            "no features/ folder", "the --output_dir of `emotic features`")


def test_predict_refuses_a_folder_made_with_other_settings(model_dir, tmp_path):
    (tmp_path / "frames").mkdir()
    frames(1)[0].save(tmp_path / "frames" / "00001.jpg")
    assert predict(model_dir, tmp_path / "frames", "--output-dir", tmp_path / "out").returncode == 0
    with untouched(tmp_path / "out"):
        refused(predict(model_dir, tmp_path / "frames", "--output-dir", tmp_path / "out", "--smoothing_window", "3"),
                "other settings (smoothing_window)")


# -- evaluate -------------------------------------------------------------------------------------------------------

def test_evaluate_refuses_a_split_with_no_image(model_dir, tmp_path):
    root = affwild2(tmp_path / "data", HEADER + "1\n2\n3\n", frames=0)
    with untouched(tmp_path / "data"):
        refused(emotic_cli("evaluate", model_dir, root, "--output-dir", tmp_path / "report", "--split", "Train_Set",
                           "--quiet"), "none of the 3 annotated frames", "nothing to score")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("args, words", [
    (["--smoothing_windows", "2,4"], "--smoothing_windows=2; allowed: an odd integer >= 1"),
    (["--smoothing-windows", "five"], "--smoothing_windows='five'; allowed: an odd integer >= 1"),
    (["--split", "Test_Set"], "no EXPR annotation folder for Test_Set: expected one of ['annotations/Test_Set', "
                              "'EXPR_Recognition_Challenge/Test_Set'"),
    (["--max_gap", "inf"], "--max_gap inf: expected a number >= 0 and <= 86400"),
    (["--detect_every", "0"], "--detect_every 0: expected an integer >= 1"),
    (["--examples", "-1"], "--examples -1: expected an integer >= 0"),
    (["--batch_size", "0"], "--batch_size 0: expected an integer >= 1"),
])
def test_evaluate_refuses_bad_options_before_writing(model_dir, tmp_path, args, words):
    root = affwild2(tmp_path / "data", HEADER + "1\n2\n3\n")
    refused(emotic_cli("evaluate", model_dir, root, "--output-dir", tmp_path / "report", "--quiet", *args), words)
    assert not (tmp_path / "report").exists()


# -- export ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["the run itself", "the folder holding the run", "a folder of other files",
                                   "an existing file"])
def test_export_never_removes_what_it_did_not_write(model_dir, tmp_path, where):
    import shutil

    experiments = tmp_path / "experiments"
    run = experiments / "run"
    shutil.copytree(model_dir, run)
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    (experiments / "sibling").mkdir()
    (experiments / "sibling" / "model.safetensors").write_bytes(b"other weights")
    target = {"the run itself": run, "the folder holding the run": experiments,
              "a folder of other files": tmp_path / "mine", "an existing file": tmp_path / "notes.txt"}[where]
    if where == "a folder of other files":
        target.mkdir()
        (target / "config.json").write_text("{}")
        (target / "thesis.tex").write_text("years of work")
    if where == "an existing file":
        target.write_text("a file")
    with untouched(tmp_path):
        refused(emotic_cli("export", run, "--output_dir", target, "--overwrite"), str(target.name))


def test_export_overwrite_replaces_only_an_earlier_export(model_dir, tmp_path):
    assert emotic_cli("export", model_dir, "--output_dir", tmp_path / "export").returncode == 0
    first = tree_state(tmp_path / "export")
    result = emotic_cli("export", model_dir, "--output_dir", tmp_path / "export", "--overwrite",
                        "--repo_id", "testuser/x")
    assert result.returncode == 0, result.stderr
    assert set(tree_state(tmp_path / "export")) == set(first)


def test_export_refuses_an_evaluation_that_is_not_a_report(model_dir, tmp_path):
    (tmp_path / "metrics.json").write_text("[1, 2")
    export = ("export", model_dir, "--output_dir", tmp_path / "export", "--evaluation", tmp_path / "metrics.json")
    refused(emotic_cli(*export), "metrics.json: not valid JSON")
    (tmp_path / "metrics.json").write_text('{"macro_f1": 0.5}')
    refused(emotic_cli(*export), "not a metrics.json of `emotic evaluate`")
    assert not (tmp_path / "export").exists()


# -- push -----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported") / "export"
    assert emotic_cli("export", model_dir, "--output_dir", folder).returncode == 0
    return folder


def hub_files(endpoint, tmp_path, repo_id) -> list[str] | None:
    """The files of a repository on the loopback Hub, or None when it does not exist."""
    script = ("import json, sys; from huggingface_hub import HfApi; from huggingface_hub.errors import "
              "RepositoryNotFoundError\ntry: print(json.dumps(sorted(HfApi().list_repo_files(sys.argv[1]))))\n"
              "except RepositoryNotFoundError: print('null')")
    result = subprocess.run([sys.executable, "-c", script, repo_id], capture_output=True, text=True,
                            env=hub_env(endpoint, tmp_path), timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _symlink_out(folder):
    os.symlink("/etc/passwd", folder / "passwd.txt")


def _secret_in_weights_metadata(folder):
    from safetensors.torch import load_file, save_file

    save_file(load_file(folder / "model.safetensors"), folder / "model.safetensors", metadata={"note": TOKEN})


PUSH_CASES = {
    "token in .env": (lambda f: (f / ".env").write_text(f"HF_TOKEN={TOKEN}\n"), ".env: an access token"),
    "a credentials file": (lambda f: (f / "credentials").write_text("user=me\npassword=hunter2\n"), "credentials"),
    "a link to /etc/passwd": (_symlink_out, "passwd.txt -> /etc/passwd"),
    "a dotfile": (lambda f: (f / ".git-credentials").write_text("https://me:pw@example.org\n"), ".git-credentials"),
    "a sub-folder": (lambda f: (f / "checkpoints").mkdir() or (f / "checkpoints" / "a.safetensors").write_bytes(
        b"x"), "checkpoints"),
    "a token inside the weights": (_secret_in_weights_metadata, "model.safetensors: an access token"),
    "a pickle": (lambda f: torch.save({"w": torch.zeros(1)}, f / "pytorch_model.bin"), "pickled files"),
}


@pytest.mark.parametrize("case", list(PUSH_CASES))
def test_push_refuses_what_export_did_not_write_and_publishes_nothing(case, hub, exported, tmp_path):
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    add, words = PUSH_CASES[case]
    add(folder)
    repo = f"testuser/refused-{abs(hash(case)) % 10**6}"
    with untouched(tmp_path / "export"):
        message = refused(emotic_cli("push", folder, repo, env=hub_env(hub, tmp_path)), words)
    assert TOKEN not in message
    assert hub_files(hub, tmp_path, repo) is None  # not even created


def test_push_with_the_hub_unreachable_fails_in_one_line_and_changes_nothing(exported, tmp_path):
    env = hub_env("http://127.0.0.1:9", tmp_path)  # nothing listens on port 9
    with untouched(exported):
        message = refused(emotic_cli("push", exported, "testuser/offline", env=env, timeout=600),
                          "could not be reached", code=1)
    assert len(message.strip().splitlines()) == 1


def test_push_publishes_exactly_the_export_files_and_leaves_the_folder_as_it_was(hub, exported, tmp_path):
    with untouched(exported):
        result = emotic_cli("push", exported, "testuser/exact", env=hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stderr
    assert hub_files(hub, tmp_path, "testuser/exact") == sorted(p.name for p in exported.iterdir()) == sorted([
        "README.md", "config.json", "configuration_emotic.py", "face_geometry.py", "heads_emotic.py",
        "image_processing_emotic.py", "model.safetensors", "modeling_emotic.py", "preprocessor_config.json"])
    script = ("from huggingface_hub import ModelCard; print(ModelCard.load('testuser/exact').text)")
    card = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=hub_env(hub, tmp_path),
                          timeout=120).stdout
    assert 'from_pretrained("testuser/exact")' in card  # the uploaded card names the repository


# -- remote code ----------------------------------------------------------------------------------------------------

def test_remote_code_never_runs_without_trust_remote_code(exported, tmp_path):
    import shutil

    folder = tmp_path / "tampered"
    shutil.copytree(exported, folder)
    marker = tmp_path / "ran"
    code = folder / "modeling_emotic.py"
    code.write_text(f"open({str(marker)!r}, 'w').close()\n" + code.read_text())
    before = tree_state(tmp_path)
    script = ("import sys; sys.modules['emotic'] = None\nfrom transformers import AutoModelForImageClassification\n"
              f"AutoModelForImageClassification.from_pretrained({str(folder)!r})")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "trust_remote_code" in result.stderr
    assert tree_state(tmp_path) == before  # the tampered code never ran: no marker file


def test_predict_removes_only_the_partial_files_a_killed_predict_left(model_dir, tmp_path):
    (tmp_path / "frames").mkdir()
    frames(1)[0].save(tmp_path / "frames" / "00001.jpg")
    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    (out / "frames" / "frames.csv.4242.partial").write_text("image_location,status\n")  # a killed run's
    (out / "frames" / "notes.partial").write_text("mine")  # not a name predict writes
    (out / "frames" / "mine.csv.bak").write_text("mine")
    assert predict(model_dir, tmp_path / "frames", "--output-dir", out).returncode == 0
    assert not (out / "frames" / "frames.csv.4242.partial").exists()
    assert (out / "frames" / "notes.partial").read_text() == "mine" and (out / "frames" / "mine.csv.bak").is_file()


# -- tracking options, the tracks' readers, features files, temporal heads, names ------------------------------------

@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs") / "clip"
    folder.mkdir()
    for index, image in enumerate(frames(3)):
        image.save(folder / f"{index + 1:05d}.jpg")
    return folder


@pytest.mark.parametrize("args, words", [
    (["--max_gap", "inf"], "--max_gap inf: expected a number >= 0 and <= 86400"),
    (["--max_gap", "1e308"], "--max_gap 1e+308: expected a number >= 0"),
    (["--max_gap", "-1"], "--max_gap -1.0: expected a number >= 0"),
    (["--max_gap", "nan"], "--max_gap nan: expected a number >= 0"),
    (["--fps", "inf"], "--fps inf: expected a number > 0 and <= 1000"),
    (["--fps", "0"], "--fps 0.0: expected a number > 0"),
    (["--fps", "nan"], "--fps nan: expected a number > 0"),
    (["--max_faces", "0"], "--max_faces 0: expected an integer >= 1"),
    (["--detect_every", "0"], "--detect_every 0: expected an integer >= 1"),
    (["--detect_every", "1.5"], "--detect-every: invalid int value: '1.5'"),
    (["--batch_size", "0"], "--batch_size 0: expected an integer >= 1"),
    (["--subjects", "left,left"], "--subjects 'left,left': expected distinct names"),
    (["--subjects", "a/b,c"], "--subjects 'a/b,c': expected distinct names"),
    (["--faces", "all"], "--geometry template says the frames are aligned crops of one face"),
])
def test_predict_refuses_tracking_options_out_of_range_by_name_before_writing(model_dir, frame_folder, tmp_path, args,
                                                                             words):
    """Every numeric option is checked finite and in range before use: `inf` and `1e308` pass argparse's `float` and
    once ended in an `OverflowError` traceback when the tracker turned seconds into frames."""
    with untouched(frame_folder):
        refused(predict(model_dir, frame_folder, *args, "--output-dir", tmp_path / "out"), words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, words", [
    (["--max_video_seconds", "inf"], "--max_video_seconds inf: expected a number > 0"),
    (["--port", "70000"], "--port 70000: expected an integer >= 0 and <= 65535"),
])
def test_the_app_refuses_options_out_of_range_by_name(model_dir, args, words):
    refused(emotic_cli("app", model_dir, *args), words)


def multitask_file(root: Path, rows: list[str]) -> Path:
    """ABAW7's multi-task file at `root/training_set_annotations.txt`, its images written under `cropped_aligned`."""
    header = "image,valence,arousal,expression," + ",".join(
        ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"])
    for row in rows:
        image = root / "cropped_aligned" / row.split(",")[0]
        image.parent.mkdir(parents=True, exist_ok=True)
        if not image.exists():
            face(32).save(image)
    path = root / "training_set_annotations.txt"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


UNITS = ",0,1,0,0,0,0,1,0,0,0,0,0"


def test_an_image_listed_twice_in_a_multitask_file_is_read_once_and_counted_or_refused_with_other_values(tmp_path):
    """A duplicated row is one frame: with the same values it is read once and the repeat counted
    (`ReadReport.duplicates`); with other values (which is right?) it is refused naming both lines. It was once read
    twice, trained on twice and scored twice, with nothing said."""
    from emotic.training.affwild2 import read_multitask_annotations

    path = multitask_file(tmp_path, ["v1/00001.jpg,0.1,0.2,4" + UNITS, "v1/00002.jpg,0.1,0.2,3" + UNITS,
                                     "v1/00001.jpg,0.1,0.2,4" + UNITS])
    dataset, report = read_multitask_annotations(path, tmp_path / "cropped_aligned")
    assert len(dataset) == 2 and report.duplicates == 1 and "1 rows listing an image again" in report.format()
    path = multitask_file(tmp_path, ["v1/00001.jpg,0.1,0.2,4" + UNITS, "v1/00001.jpg,0.1,0.2,5" + UNITS])
    with untouched(tmp_path), pytest.raises(ValueError, match=r"line 3: v1/00001.jpg is listed again with other "
                                                               r"values than on line 2"):
        read_multitask_annotations(path, tmp_path / "cropped_aligned")


def test_a_multitask_frame_without_a_frame_number_is_refused_naming_file_and_line(tmp_path):
    """What finetune-temporal places frames by: once `invalid literal for int() with base 10: 'img_a'`."""
    from emotic.training.affwild2 import annotations_by_video

    multitask_file(tmp_path, ["v1/00001.jpg,0.1,0.2,4" + UNITS, "v1/img_a.jpg,0.1,0.2,4" + UNITS])
    (tmp_path / "validation_set_annotations.txt").write_text("")
    with untouched(tmp_path), pytest.raises(ValueError, match=r"training_set_annotations.txt, line 3: v1/img_a.jpg: "
                                                               r"expected the frame's number as its name"):
        annotations_by_video(tmp_path, "multitask", "Train_Set")


@pytest.mark.parametrize("task", ["va", "au"])
def test_evaluate_refuses_a_split_where_nothing_is_annotated_as_training_does(task, tmp_path):
    """Every frame marked "not annotated" (-5 for VA, -1 for AU): once "mean CCC 0.0000" and exit 0."""
    names, header, line = {"va": (["valence", "arousal"], "valence,arousal", "-5,-5"),
                           "au": (["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25",
                                   "AU26"], "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
                                  ",".join(["-1"] * 12))}[task]
    problem = {"va": "regression", "au": "multi_label_classification"}[task]
    EmoticForImageClassification(EmoticConfig(**TINY, id2label=dict(enumerate(names)), problem_type=problem)
                                 ).save_pretrained(tmp_path / "model")
    EmoticImageProcessor(size=32).save_pretrained(tmp_path / "model")
    folder = {"va": "VA_Estimation_Challenge", "au": "AU_Detection_Challenge"}[task]
    (tmp_path / "data" / folder / "Validation_Set").mkdir(parents=True)
    (tmp_path / "data" / "cropped_aligned" / "v1").mkdir(parents=True)
    for index in range(3):
        face(32, index).save(tmp_path / "data" / "cropped_aligned" / "v1" / f"{index + 1:05d}.jpg")
    (tmp_path / "data" / folder / "Validation_Set" / "v1.txt").write_text(header + "\n" + (line + "\n") * 3)
    with untouched(tmp_path / "data"):
        refused(emotic_cli("evaluate", tmp_path / "model", tmp_path / "data", "--output-dir", tmp_path / "report",
                           "--geometry", "template", "--quiet"),
                f"none of the 3 frames of {tmp_path / 'data'} (Validation_Set) is annotated for the "
                f"{task.upper()} track", "nothing to score")
    assert not (tmp_path / "report").exists()


def test_evaluate_finds_a_subject_whose_name_holds_an_underscore():
    """`--subjects left,far_right`: an annotation `two_far_right` is the person far_right of two.mp4 (names were
    once split at the last `_`, so far_right's annotations had "no video file")."""
    from emotic.inference.evaluate import subject_of

    assert subject_of("two_far_right", ["left", "far_right"]) == ("two", "far_right")
    assert subject_of("my_video_left", ["left", "far_right"]) == ("my_video", "left")
    assert subject_of("two_right", ["left", "far_right"]) == ("two_right", None)  # not a subject: a video's name
    assert subject_of("far_right", ["far_right"]) == ("far_right", None)  # no video part left


def test_track_names_are_unique_in_a_submission_whatever_the_subjects_are_called():
    """`--subjects 2` once named both tracks "2", and the submission listed every frame twice under one name."""
    from emotic.inference.writers import track_records

    seen = {1: {"first_frame": 0, "last_frame": 9, "frames": 10, "first_box": [300, 0, 400, 100]},
            2: {"first_frame": 0, "last_frame": 9, "frames": 5, "first_box": [0, 0, 100, 100]},
            3: {"first_frame": 5, "last_frame": 9, "frames": 2, "first_box": [0, 0, 100, 100]}}
    records = track_records(seen, "two", ["2"])
    names = [record["submission_name"] for record in records]
    assert len(set(names)) == 3 and names[0] == "two_2" and names[1] == "two_track2" and names[2] == "two_3"
    # both named, the left one first: track 2 (on the left) is "2", track 1 "track2", track 3 keeps its id
    assert [r["name"] for r in track_records(seen, "two", ["2", "track2"])] == ["track2", "2", "3"]
    assert [r["name"] for r in track_records(seen, "two", ["3", "x"])] == ["x", "3", "track3"]


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_finetune_temporal_refuses_features_holding_nan_or_infinity_naming_file_and_row(value, tmp_path):
    """One NaN in one row once trained a head to `train_loss 0` with almost every weight NaN, exit 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = write_features_folder(tmp_path, {"a": 32, "b": 32, "c": 32})
    table = pq.read_table(folder / "features" / "b.parquet")
    values = np.stack(table.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
    values[3, 7] = float(value)
    table = table.set_column(4, "features", pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 32))
    pq.write_table(table, folder / "features" / "b.parquet")
    with untouched(folder / "features", folder / "data"):
        refused(emotic_cli("finetune-temporal", "--features_dir", folder, "--affwild2_root", folder / "data",
                           "--output_dir", tmp_path / "run", "--window_size", "4", "--window_stride", "2"),
                "b.parquet: row 3", "NaN or infinite feature values")
    assert not (tmp_path / "run").exists()


def test_features_of_a_model_that_gives_nan_are_never_written_and_the_video_is_reported(frame_folder, tmp_path):
    model = EmoticForImageClassification(EmoticConfig(**TINY))
    with torch.no_grad():
        model.emotic.layernorm.weight.fill_(float("nan"))  # every pooled feature NaN
    model.save_pretrained(tmp_path / "broken")
    EmoticImageProcessor(size=32).save_pretrained(tmp_path / "broken")
    result = emotic_cli("features", tmp_path / "broken", frame_folder, "--output_dir", tmp_path / "out", "--quiet",
                        "--geometry", "template")
    assert result.returncode == 1 and "the model gave NaN or infinite features" in result.stderr, result.stderr
    assert list((tmp_path / "out" / "features").iterdir()) == []
    assert "clip" in json.loads((tmp_path / "out" / "summary.json").read_text())["skipped"]


@pytest.fixture(scope="module")
def another_model(tmp_path_factory):
    """`model_dir`'s model with other weights."""
    return save_tiny_classifier(tmp_path_factory.mktemp("another"), seed=7)


def test_finetune_temporal_refuses_a_frame_model_that_did_not_make_the_features(model_dir, another_model, tmp_path):
    """`--frame_model OTHER` on features of a first model was accepted, and OTHER's head put on them."""
    from transformers import AutoModelForImageClassification

    from emotic.training.frame_features import write_frame_model

    folder = write_features_folder(tmp_path, {"a": 32, "b": 32, "c": 32})
    write_frame_model(folder, str(model_dir), AutoModelForImageClassification.from_pretrained(model_dir))
    with untouched(folder / "features", folder / "data", another_model):
        refused(emotic_cli("finetune-temporal", "--features_dir", folder, "--affwild2_root", folder / "data",
                           "--output_dir", tmp_path / "run", "--window_size", "4", "--window_stride", "2",
                           "--frame_model", another_model),
                f"--frame_model {another_model} is not the model the features came from ({model_dir}",
                "its features differ from theirs by")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_temporal_head_is_never_run_on_another_frame_models_features(command, model_dir, another_model,
                                                                        frame_folder, tmp_path):
    """A head records the frame model whose features it was trained on (its signature); predict and evaluate with
    another frame model are refused, whatever its frame head, and run with the right one."""
    from transformers import AutoModelForImageClassification

    from emotic import EmoticTemporalConfig, EmoticTemporalModel
    from emotic.training.frame_features import frame_model_signature

    signature = frame_model_signature(AutoModelForImageClassification.from_pretrained(model_dir))
    EmoticTemporalModel(EmoticTemporalConfig(feature_size=32, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, window_size=8,
                                             window_stride=4, frame_signature=signature)
                        ).save_pretrained(tmp_path / "head")
    root = affwild2(tmp_path / "data", HEADER + "1\n2\n3\n")
    run = {"predict": lambda model, out: predict(model, frame_folder, "--temporal_model", tmp_path / "head",
                                                  "--output-dir", out),
           "evaluate": lambda model, out: emotic_cli("evaluate", model, root, "--split", "Train_Set",
                                                     "--temporal_model", tmp_path / "head", "--geometry", "template",
                                                     "--output_dir", out, "--quiet", "--no_reliability")}[command]
    with untouched(frame_folder, tmp_path / "data", another_model):
        refused(run(another_model, tmp_path / "refused"), "was trained on the features of another frame model")
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").rglob("*.csv"))
    assert run(model_dir, tmp_path / "runs").returncode == 0


def test_a_temporal_config_refuses_a_frame_signature_that_is_not_numbers():
    from emotic import EmoticTemporalConfig

    for signature in (["x"], [], [float("nan")], "abc"):
        with pytest.raises(ValueError, match="frame_signature=.*expected a list of finite numbers"):
            EmoticTemporalConfig(feature_size=32, frame_signature=signature)


def test_a_dangling_link_to_a_video_in_an_input_folder_is_reported_not_dropped(model_dir, frame_folder, tmp_path):
    """A link to a video that is gone once disappeared from predict and features (exit 0, nothing said)."""
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    import shutil

    shutil.copytree(frame_folder, tmp_path / "videos" / "clip")
    with untouched(tmp_path / "videos"):
        result = predict(model_dir, tmp_path / "videos", "--output-dir", tmp_path / "out")
    assert result.returncode == 1 and "1 inputs could not be read: gone" in result.stderr, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "gone" in summary["skipped"] and "clip" in summary["videos"]


def test_a_dangling_link_among_a_folders_frames_is_an_unreadable_frame_counted(model_dir, frame_folder, tmp_path):
    import shutil

    shutil.copytree(frame_folder, tmp_path / "clip")
    (tmp_path / "clip" / "00002.jpg").unlink()
    (tmp_path / "clip" / "00002.jpg").symlink_to(tmp_path / "gone.jpg")
    assert predict(model_dir, tmp_path / "clip", "--output-dir", tmp_path / "out").returncode == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["videos"]["clip"]["frames"] == 3 and summary["videos"]["clip"]["unreadable"] == 1


def test_a_video_named_like_markup_is_written_as_named_in_every_file(model_dir, two_people, tmp_path):
    """`steak_$5_vs_$500.mp4` once stopped predict in matplotlib's mathtext (the name is a figure's title), after the
    CSV and submission but before summary.json, and again on every rerun."""
    name = "steak_$5_vs_$500"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"{name}.mp4").write_bytes(two_people[1].read_bytes())
    result = emotic_cli("predict", model_dir, tmp_path / "in" / f"{name}.mp4", "--output_dir", tmp_path / "out",
                        "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "timelines" / f"{name}.png").is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["videos"][name]["tracks"]


def test_names_in_a_card_and_in_the_apps_messages_are_shown_as_they_are(model_dir):
    """Folder and dataset names never become Markdown in a model card, nor HTML in the app's messages."""
    from transformers import AutoConfig, AutoImageProcessor

    from emotic.app import _friendly, gradio
    from emotic.hub_cards.card import build_card

    run = {"track": "expr", "dataset": "faces_*bold*_<img src=x>|$x$", "model": {"base_model": "[link](evil)"},
           "eval": {}}
    card = str(build_card(AutoConfig.from_pretrained(model_dir), AutoImageProcessor.from_pretrained(model_dir), run))
    body = card.split("---\n", 2)[2]
    assert "faces\\_\\*bold\\*\\_\\<img src=x\\>\\|\\$x\\$" in body and "\\[link\\](evil)" in body
    assert "<img" not in body.replace("\\<img", "")
    gr = gradio()

    @_friendly
    def refuse(path):
        raise ValueError(f"{path} cannot be read as a video")

    with pytest.raises(gr.Error) as error:
        refuse("/uploads/<img src=x onerror=alert(1)>.webm")
    assert error.value.message.startswith("&lt;img src=x onerror=alert(1)&gt;.webm cannot be read"), error.value
