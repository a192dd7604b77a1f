"""`datasets` datasets as training data (`finetune --dataset_name`): labels are matched to the model's by name,
whatever order or label set the dataset uses; a class the model cannot represent is refused or dropped and counted;
images are decoded lazily and augmentation is seeded by row, so in-memory images augment reproducibly."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import hub_env

from emotic import EmoticImageProcessor
from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
from emotic.training.labels import map_labels
from emotic.training.image_datasets import read_dataset
from emotic.training.transforms import ViewTransform

LABEL2ID = {name: index for index, name in enumerate(ABAW_EXPRESSION_LABELS)}


def coloured(value: int, size: int = 40) -> Image.Image:
    """An image that says which row it is: its red channel holds `value`."""
    pixels = np.full((size, size, 3), 30, np.uint8)
    pixels[..., 0] = value
    return Image.fromarray(pixels)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def fer2013_parquet(tmp_path):
    """A FER2013-style dataset: bare-number labels 0..6 (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral) in
    parquet files with embedded image bytes, as Hub datasets store them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "fer2013-style"
    (root / "data").mkdir(parents=True)
    for split, labels in (("train", [0, 3, 6, 3, 5, 1, 2, 4]), ("validation", [6, 0, 3])):
        images = [{"bytes": png_bytes(coloured(10 * row + label)), "path": None} for row, label in enumerate(labels)]
        table = pa.table({"img": images, "emotion": labels})
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


@pytest.fixture
def affectnet_folder(tmp_path):
    """An AffectNet-style image folder: class folders named in its own words, including contempt."""
    root = tmp_path / "affectnet-style"
    for split, classes in (("train", ["neutral", "happy", "sad", "anger", "contempt"]), ("validation", ["happy"])):
        for value, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            coloured(100 + value).save(root / split / name / f"{name}.png")
    return root


def red_of(item) -> int:
    return int(np.asarray(Image.open(io.BytesIO(item["bytes"])) if item.get("bytes") else Image.open(item["path"]))
               [0, 0, 0])


def test_bare_number_labels_follow_the_named_label_set_end_to_end(fer2013_parquet):
    dataset, report = read_dataset(str(fer2013_parquet), "train", LABEL2ID, image_column="img",
                                   label_column="emotion", label_set="fer2013")
    fer = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    expected = {"Angry": "Anger", "Disgust": "Disgust", "Fear": "Fear", "Happy": "Happiness", "Sad": "Sadness",
                "Surprise": "Surprise", "Neutral": "Neutral"}
    for row in range(len(dataset)):  # each image's own FER label (its red value % 10) reaches the model's label
        item = dataset[row]
        assert ABAW_EXPRESSION_LABELS[item["label"]] == expected[fer[red_of(item["image"]) % 10]]
    assert report.frames == 8 and sum(report.class_counts.values()) == 8
    with pytest.raises(ValueError, match="bare numbers .* --label_set"):  # numbers alone never map by position
        read_dataset(str(fer2013_parquet), "train", LABEL2ID, image_column="img", label_column="emotion")


def test_named_classes_map_by_name_and_an_unknown_class_is_refused_dropped_or_mapped(affectnet_folder):
    root = str(affectnet_folder)
    with pytest.raises(ValueError, match=r"\['contempt'\] are not among the model's labels"):
        read_dataset(root, "train", LABEL2ID)
    dropped, report = read_dataset(root, "train", LABEL2ID, drop_unmapped=True)
    assert len(dropped) == 4 and report.dropped_labels == {"contempt": 1}
    names = {red_of(item["image"]): ABAW_EXPRESSION_LABELS[item["label"]] for item in dropped}
    assert names == {100: "Neutral", 101: "Happiness", 102: "Sadness", 103: "Anger"}  # imagefolder numbers them
    mapped, _ = read_dataset(root, "train", LABEL2ID, label_map={"contempt": "Other"})  # alphabetically: not ours
    assert {red_of(item["image"]): item["label"] for item in mapped}[104] == LABEL2ID["Other"]
    with pytest.raises(ValueError, match="'Smirk', which is not one of the model's labels"):
        read_dataset(root, "train", LABEL2ID, label_map={"contempt": "Smirk"})
    with pytest.raises(ValueError, match="no column 'face'"):
        read_dataset(root, "train", LABEL2ID, image_column="face")


def test_two_dataset_classes_never_merge_into_one_model_label_unasked():
    with pytest.raises(ValueError, match="would merge into one model label"):
        map_labels({0: "happy", 1: "joy"}, LABEL2ID)
    assert map_labels({0: "happy", 1: "joy"}, LABEL2ID, {"joy": "Happiness"}) == {0: 4, 1: 4}


def test_in_memory_images_augment_by_row_and_a_corrupt_one_is_skipped_and_counted(fer2013_parquet):
    dataset, _ = read_dataset(str(fer2013_parquet), "train", LABEL2ID, image_column="img", label_column="emotion",
                              label_set="fer2013")
    processor = EmoticImageProcessor(size=32, geometry="template")
    first, second = (ViewTransform(processor, hflip=True, color_jitter=0.3, seed=5) for _ in range(2))
    batch = dataset.with_format(None)[0:4]
    assert all(np.array_equal(a, b) for a, b in zip(first(dict(batch))["pixel_values"].numpy(),
                                                     second(dict(batch))["pixel_values"].numpy()))
    batch["image"][1] = {"bytes": b"not an image", "path": None}
    out = first(batch)
    assert out["labels"][1] == -1 and list(first.unreadable) == ["row 1"]


def test_finetune_trains_on_a_dataset_name_and_records_its_labels(affectnet_folder, tmp_path):
    from emotic.training import finetune

    finetune.main(["--dataset_name", str(affectnet_folder), "--label_map", json.dumps({"contempt": "Other"}),
                   "--output_dir", str(tmp_path / "run"), "--model_size", "tiny", "--image_size", "32",
                   "--max_steps", "2", "--per_device_train_batch_size", "4", "--geometry", "template",
                   "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
                   "--dataloader_num_workers", "0"])
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["dataset"] == "affectnet-style" and str(tmp_path) not in json.dumps(record)
    assert record["data"]["train"]["class_counts"] == {"0": 1, "1": 1, "4": 1, "5": 1, "7": 1}
    assert record["eval"]["num_frames"] == 1


def test_evaluate_scores_a_dataset_name_split_with_its_label_set(model_dir, fer2013_parquet, tmp_path):
    from emotic.inference import evaluate

    assert evaluate.main([str(model_dir), str(fer2013_parquet), "--output_dir", str(tmp_path / "report"),
                          "--image_column", "img", "--label_column", "emotion", "--label_set", "fer2013",
                          "--geometry", "template", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["dataset"] == "fer2013-style"
    assert metrics["raw"]["num_frames"] == 3 and metrics["counts"]["videos"] == 0
    truth = np.array(metrics["raw"]["confusion_matrix"]).sum(1)  # FER 6, 0, 3: Neutral, Anger, Happiness
    assert truth[0] == truth[1] == truth[4] == 1 and truth.sum() == 3
    assert "scored one by one" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "examples.png").is_file()
    with pytest.raises(SystemExit):  # bare numbers without their label set: refused, nothing written
        evaluate.main([str(model_dir), str(fer2013_parquet), "--output_dir", str(tmp_path / "refused"),
                       "--image_column", "img", "--label_column", "emotion", "--quiet"])
    assert not (tmp_path / "refused").exists()


def test_finetune_reads_a_dataset_repository_from_the_hub(hub, fer2013_parquet, tmp_path):
    """A parquet dataset repository on the loopback Hub, found by its id through `HF_ENDPOINT` like any Hub id."""
    env = hub_env(hub, tmp_path)
    upload = ("from huggingface_hub import HfApi; api = HfApi(); "
              "api.create_repo('testuser/fer2013-style', repo_type='dataset'); "
              f"api.upload_folder(folder_path={str(fer2013_parquet)!r}, repo_id='testuser/fer2013-style', "
              "repo_type='dataset')")
    assert subprocess.run([sys.executable, "-c", upload], env=env, capture_output=True).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "emotic.cli", "finetune", "--dataset_name", "testuser/fer2013-style",
         "--label_set", "fer2013", "--image_column", "img", "--label_column", "emotion",
         "--output_dir", str(tmp_path / "run"), "--model_size", "tiny", "--image_size", "32", "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--geometry", "template", "--report_to", "none",
         "--disable_tqdm", "true", "--save_strategy", "no", "--dataloader_num_workers", "0"],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["dataset"] == "testuser/fer2013-style" and record["eval"]["num_frames"] == 3
    # FER 0, 3, 6, 3, 5, 1, 2, 4 -> Anger, Happiness, Neutral, Happiness, Surprise, Disgust, Fear, Sadness
    assert record["data"]["train"]["class_counts"] == {"0": 1, "1": 1, "2": 1, "3": 1, "4": 2, "5": 1, "6": 1}


def test_pretrain_reads_the_images_of_a_dataset_name(affectnet_folder, tmp_path):
    from emotic.training import pretrain

    result = pretrain.main(["--dataset_name", str(affectnet_folder), "--model_size", "tiny", "--image_size", "32",
                            "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
                            "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true",
                            "--save_strategy", "no", "--dataloader_num_workers", "0", "--logging_steps", "1"])
    assert len(result["losses"]) == 2 and all(np.isfinite(result["losses"]))
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["images"] == 5 and record["dataset"] == "affectnet-style"  # the train split's five images


def test_a_dataset_that_is_not_there_is_a_clear_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="no-such-folder: neither a local dataset nor one that can be loaded"):
        read_dataset(str(tmp_path / "no-such-folder"), "train", LABEL2ID)


def value_parquet(root, columns: dict, splits=("train", "validation")):
    """A parquet dataset of coloured images with the given label columns (the same rows in each split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True)
    rows = len(next(iter(columns.values())))
    images = [{"bytes": png_bytes(coloured(20 * row)), "path": None} for row in range(rows)]
    for split in splits:
        pq.write_table(pa.table({"image": images, **columns}), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


@pytest.mark.parametrize("form", ["columns", "sequence"])
def test_valence_arousal_and_action_units_read_from_value_columns_or_one_sequence_column(tmp_path, form):
    from emotic.training.image_datasets import read_value_dataset

    nan = float("nan")
    va = [[0.5, -0.25], [-5.0, -5.0], [nan, 0.75], [1.0, -1.0]]  # row 1 not annotated at all: skipped, counted
    units = [[1, 0] * 6, [-1] * 12, [0] * 11 + [-1], [1] * 12]
    if form == "columns":
        va_columns = {"valence": [row[0] for row in va], "arousal": [row[1] for row in va]}
        au_columns = {name: [row[i] for row in units] for i, name in enumerate(
            ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"])}
    else:
        va_columns, au_columns = {"label": va}, {"label": units}
    dataset, report = read_value_dataset(str(value_parquet(tmp_path / "va", va_columns)), "train", "va")
    assert report.frames == 3 and report.ignored_unlabelled == 1
    labels = np.array(dataset["label"])
    assert labels[0].tolist() == [0.5, -0.25] and np.isnan(labels[1, 0]) and labels[1, 1] == 0.75
    assert dataset["index"] == [0, 1, 2] and set(dataset.column_names) == {"image", "label", "index"}
    dataset, report = read_value_dataset(str(value_parquet(tmp_path / "au", au_columns)), "train", "au")
    labels = np.array(dataset["label"])
    assert report.frames == 3 and labels[0].tolist() == [1.0, 0.0] * 6
    assert np.isnan(labels[1, 11]) and (labels[1, :11] == 0).all()  # one unit not annotated, the others kept
    batch = ViewTransform(EmoticImageProcessor(size=32, geometry="template"))(dataset[:2])  # the loss's float targets
    assert batch["labels"].shape == (2, 12) and batch["labels"].isnan().sum() == 1


@pytest.mark.parametrize("column, values, words", [
    ("valence", [0.5, 1.5], "row 1: valence 1.5 is out of range; expected [-1, 1], or -5 (not annotated)"),
    ("AU1", [1, 2], "row 1: AU1 2: expected 0 or 1, or -1 (not annotated)"),
    ("label", [[0.1, 0.2], [0.3]], "row 1: column 'label' holds [0.3]; expected 2 values (valence, arousal)"),
])
def test_a_value_dataset_with_a_bad_value_is_refused_naming_row_and_column(tmp_path, column, values, words):
    from emotic.training.image_datasets import read_value_dataset

    task = "au" if column.startswith("AU") else "va"
    columns = {column: values}
    if column == "valence":
        columns["arousal"] = [0.0, 0.0]
    if task == "au":
        columns.update({name: [0, 0] for name in ["AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24",
                                                  "AU25", "AU26"]})
    with pytest.raises(ValueError, match=re.escape(f"bad (train), {words}")):
        read_value_dataset(str(value_parquet(tmp_path / "bad", columns)), "train", task)


def test_finetune_trains_a_multitask_head_on_a_dataset_with_abaw7s_columns(tmp_path):
    from emotic.training import finetune

    rng = np.random.default_rng(0)
    columns = {"valence": rng.uniform(-1, 1, 8).tolist(), "arousal": [-5.0] * 2 + rng.uniform(-1, 1, 6).tolist(),
               "expression": [4, -1, 0, 2, 6, 4, 1, 3],
               **{name: rng.integers(0, 2, 8).tolist() for name in
                  ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]}}
    data = value_parquet(tmp_path / "mtl", columns)
    results = finetune.main(["--task", "multitask", "--dataset_name", str(data), "--output_dir", str(tmp_path / "run"),
                             "--model_size", "tiny", "--image_size", "32", "--max_steps", "2",
                             "--per_device_train_batch_size", "4", "--geometry", "template", "--report_to", "none",
                             "--disable_tqdm", "true", "--save_strategy", "no", "--dataloader_num_workers", "0"])
    assert results["num_frames"] == 8 and results["expr_frames"] == 7 and results["va_frames"] == 6
    record = json.loads((tmp_path / "run" / "emotic_run.json").read_text())
    assert record["track"] == "multitask" and record["dataset"] == "mtl"
