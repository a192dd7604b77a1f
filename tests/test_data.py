"""Dataset readers on files written in the real formats, the metrics, and the synthetic dataset writer."""

import numpy as np
import pytest
from PIL import Image

from emotic.training.readers import inverse_frequency_weights, read_affwild2, read_image_folder, read_unlabelled_faces
from emotic.training.transforms import ViewTransform
from emotic.training.metrics import expression_metrics
from emotic.training.synthetic import write_synthetic_affwild2

HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


def write_video(root, video, labels, missing=(), header=HEADER):
    """An Aff-Wild2 EXPR video: annotations/<video>.txt and cropped_aligned/<video>/<00001>.jpg."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"{video}.txt").write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
    frames = root / "cropped_aligned" / video
    frames.mkdir(parents=True, exist_ok=True)
    for index in range(len(labels)):
        if index + 1 not in missing:
            Image.new("RGB", (112, 112), (index * 10 % 255, 80, 120)).save(frames / f"{index + 1:05d}.jpg")


def test_affwild2_reader_skips_and_counts_unlabelled_frames_and_missing_images(tmp_path):
    write_video(tmp_path, "12-24-1920x1080", [0, 0, -1, 4, 4, 4, -1, 6], missing={5})
    write_video(tmp_path, "video2", [7, 1, 1])
    dataset, report = read_affwild2(tmp_path / "annotations", tmp_path / "cropped_aligned")
    assert report.videos == 2 and report.frames == 8
    assert report.ignored_unlabelled == 2 and report.missing_images == 1
    assert dataset["label"] == [0, 0, 4, 4, 6, 7, 1, 1]
    assert dataset["frame"][:5] == ["00001.jpg", "00002.jpg", "00004.jpg", "00006.jpg", "00008.jpg"]
    assert dataset["video"][-1] == "video2" and dataset["image"][0].endswith("12-24-1920x1080/00001.jpg")
    assert report.class_counts == {0: 2, 1: 2, 4: 2, 6: 1, 7: 1}
    assert "2 frames labelled -1, 1 annotated frames without an image" in report.format()


def test_affwild2_reduced_training_data_by_stride_and_per_class_cap(tmp_path):
    write_video(tmp_path, "v", [4] * 12 + [1] * 4)
    strided, report = read_affwild2(tmp_path / "annotations", tmp_path / "cropped_aligned", frame_stride=4)
    assert strided["frame"] == ["00001.jpg", "00005.jpg", "00009.jpg", "00013.jpg"]
    assert report.dropped_by_stride == 12
    capped, report = read_affwild2(tmp_path / "annotations", tmp_path / "cropped_aligned", max_frames_per_class=3)
    assert sorted(capped["label"]) == [1, 1, 1, 4, 4, 4] and report.dropped_by_cap == 10


@pytest.mark.parametrize("content, message", [
    ("Neutral,Anger,Disgust,Fear,Happy,Sadness,Surprise,Other\n0\n", r"v\.txt, line 1: expected the header"),
    (HEADER + "\n0\n4\nhappy\n", r"v\.txt, line 4: 'happy' is not an integer; expected -1..7"),
    (HEADER + "\n0\n8\n", r"v\.txt, line 3: label 8 is out of range; expected -1..7"),
    (HEADER + "\n0\n-2\n", r"v\.txt, line 3: label -2 is out of range"),
    ("", r"v\.txt, line 1: expected the header .* found 'an empty file'"),
])
def test_malformed_annotation_files_are_errors_naming_file_and_line(tmp_path, content, message):
    write_video(tmp_path, "v", [0, 0, 0])
    (tmp_path / "annotations" / "v.txt").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_affwild2(tmp_path / "annotations", tmp_path / "cropped_aligned")


def test_missing_video_folder_is_an_error_naming_it(tmp_path):
    write_video(tmp_path, "v", [0, 1])
    (tmp_path / "annotations" / "lost-video.txt").write_text(HEADER + "\n0\n")
    with pytest.raises(ValueError, match=r"lost-video\.txt: its frame folder .*lost-video does not exist"):
        read_affwild2(tmp_path / "annotations", tmp_path / "cropped_aligned")


def test_image_folder_maps_class_names_onto_the_model_labels(tmp_path):
    label2id = {name: i for i, name in enumerate(HEADER.split(","))}
    for name, count in (("happiness", 2), ("Surprise", 1)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (40, 40)).save(tmp_path / name / f"{i}.png")
    dataset, report = read_image_folder(tmp_path, label2id)
    assert sorted(dataset["label"]) == [4, 4, 6] and report.frames == 3
    (tmp_path / "contempt").mkdir()
    with pytest.raises(ValueError, match=r"class folders: dataset labels \['contempt'\] are not among the model's"):
        read_image_folder(tmp_path, label2id)


def test_unlabelled_faces_are_found_recursively(tmp_path):
    write_video(tmp_path, "a", [0, 0])
    write_video(tmp_path, "b", [0])
    assert len(read_unlabelled_faces(tmp_path / "cropped_aligned")) == 3
    with pytest.raises(ValueError, match="does not exist"):
        read_unlabelled_faces(tmp_path / "nowhere")


def test_view_transform_decodes_lazily_into_both_views(tmp_path):
    from emotic import EmoticImageProcessor

    write_video(tmp_path, "v", [0, 4, 6])
    dataset, _ = read_affwild2(tmp_path / "annotations", tmp_path / "cropped_aligned")
    dataset.set_transform(ViewTransform(EmoticImageProcessor(size=32, geometry="template")))
    batch = dataset[0:2]
    assert batch["pixel_values"].shape == batch["pixel_values_aux"].shape == (2, 3, 32, 32)
    assert batch["labels"].tolist() == [0, 4]


def test_class_weights_are_inverse_frequency():
    weights = inverse_frequency_weights([0, 0, 0, 1], num_classes=3)
    assert weights[0] == pytest.approx(4 / (3 * 3)) and weights[1] == pytest.approx(4 / 3)
    assert weights[2] == weights[1]  # an absent class gets the largest weight


def test_metrics_macro_f1_per_class_accuracy_and_confusion():
    labels = [0, 0, 1, 1, 2, -1]
    predictions = [0, 1, 1, 1, 0, 2]
    metrics = expression_metrics(predictions, labels, num_classes=3, class_names=["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert metrics["per_class_f1"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0})
    assert metrics["macro_f1"] == pytest.approx(1.3 / 3) and metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["num_frames"] == 5  # the -1 frame is ignored
    from sklearn.metrics import f1_score

    assert metrics["macro_f1"] == pytest.approx(f1_score(labels[:5], predictions[:5], average="macro"))


def test_the_metric_module_loads_offline_by_path_and_equals_scikit_learn():
    """The score a published model's users reproduce: `evaluate.load` of the module folder shipped in the package,
    equal to scikit-learn's macro-F1 over the 8 classes (absent classes count 0) on random predictions."""
    import evaluate
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    from emotic.modeling.configuration_emotic import ABAW_EXPRESSION_LABELS
    from emotic.training.metrics import METRIC_PATH

    metric = evaluate.load(str(METRIC_PATH))
    rng = np.random.default_rng(3)
    labels, predictions = rng.integers(-1, 7, 500), rng.integers(0, 8, 500)  # class 7 never true: F1 0
    result = metric.compute(predictions=predictions, references=labels)
    scored = labels >= 0
    assert result["macro_f1"] == pytest.approx(f1_score(labels[scored], predictions[scored], average="macro",
                                                        labels=list(range(8)), zero_division=0))
    assert result["accuracy"] == pytest.approx(accuracy_score(labels[scored], predictions[scored]))
    assert result["confusion_matrix"] == confusion_matrix(labels[scored], predictions[scored],
                                                          labels=list(range(8))).tolist()
    assert list(result["per_class_f1"]) == ABAW_EXPRESSION_LABELS and result["num_frames"] == int(scored.sum())
    assert expression_metrics(predictions, labels) == result  # emotic's own scores come from the same module


def test_synthetic_dataset_is_in_affwild2_layout_and_reads_back(tmp_path):
    summary = write_synthetic_affwild2(tmp_path, num_videos=3, frames_per_video=40, size=48, validation_videos=1,
                                       unlabelled_fraction=0.1, missing_fraction=0.1)
    assert "NOT facial-expression data" in (tmp_path / "README.txt").read_text()
    train, report = read_affwild2(tmp_path / "annotations" / "Train_Set", tmp_path / "cropped_aligned")
    assert report.videos == 2
    assert report.frames + report.ignored_unlabelled + report.missing_images >= 80 - 4  # both skips may coincide
    assert summary["unlabelled"] > 0 and summary["missing_images"] > 0
    assert len(set(train["label"])) == 8  # every expression appears in every video
    landmarks = np.load(tmp_path / "landmarks" / "synth-000.npy")
    assert landmarks.shape == (40, 68, 2)
    with Image.open(train["image"][0]) as image:
        assert image.size == (48, 48)
