"""Dataset readers on files written in the real formats, the metrics, and the synthetic dataset writer."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotic.tracks import inverse_frequency_weights
from emotic.training.affwild2 import read_affwild2
from emotic.training.image_datasets import read_image_folder, read_unlabelled_faces
from emotic.training.transforms import ViewTransform
from emotic.training.metrics import expression_metrics
from emotic.training.synthetic import write_synthetic_affwild2

HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


def write_video(root, video, labels, missing=(), header=HEADER, annotations=Path("annotations")):
    """An Aff-Wild2 video: <annotations>/<video>.txt (EXPR by default) and cropped_aligned/<video>/<00001>.jpg."""
    (root / annotations).mkdir(parents=True, exist_ok=True)
    (root / annotations / f"{video}.txt").write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
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
    assert "2 frames not annotated, 1 annotated frames without an image" in report.format()


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


def test_the_same_frames_copied_elsewhere_are_augmented_alike(tmp_path):
    """Augmentation is keyed by the row, not by where the data lies: a run on a copy of the data (another machine,
    another folder) draws the same flips and jitter, epoch by epoch; another epoch or seed draws others."""
    import shutil

    from emotic import EmoticImageProcessor

    write_video(tmp_path / "here", "v", [0, 4, 6, 1, 2, 3, 5, 7])
    shutil.copytree(tmp_path / "here", tmp_path / "elsewhere" / "copy")
    processor = EmoticImageProcessor(size=32, geometry="template")

    def views(root, epoch=0, seed=0):
        dataset, _ = read_affwild2(root / "annotations", root / "cropped_aligned")
        transform = ViewTransform(processor, hflip=True, color_jitter=0.3, seed=seed, crop_scale=0.7, rotation=15,
                                  erasing=0.5)
        transform.epoch = epoch
        return transform(dataset.with_format(None)[:8])["pixel_values"]

    here = views(tmp_path / "here")
    assert torch.equal(here, views(tmp_path / "elsewhere" / "copy"))
    assert not torch.equal(here, views(tmp_path / "here", epoch=1))
    assert not torch.equal(here, views(tmp_path / "here", seed=1))


def test_the_fer_augmentations_keep_a_small_grey_face_whole_and_each_changes_it():
    """FER2013-sized faces (48x48 grey): each augmentation keeps the image's size and mode, changes the pixels, and
    draws alike for the same (seed, epoch, row); values outside their range are refused naming the option."""
    from emotic import EmoticImageProcessor

    processor = EmoticImageProcessor(size=32, geometry="template")
    ramp = np.add.outer(np.arange(48), np.arange(48)).astype(np.uint8) * 2
    face = processor.to_rgb(Image.fromarray(ramp, mode="L"), "face.png")
    for option in (dict(crop_scale=0.5), dict(rotation=30), dict(erasing=1.0)):
        transform = ViewTransform(processor, **option)
        out = transform.augment(face, key=3)
        assert out.size == (48, 48) and out.mode == "RGB", option
        assert not np.array_equal(np.asarray(out), np.asarray(face)), option
        assert np.array_equal(np.asarray(out), np.asarray(ViewTransform(processor, **option).augment(face, key=3)))
    assert not ViewTransform(processor).augments
    for option, value in (("crop_scale", 0), ("crop_scale", 1.5), ("rotation", -5), ("erasing", 2)):
        with pytest.raises(ValueError, match=f"--{option} {value}"):
            ViewTransform(processor, **{option: value})


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

    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
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


# -- the other ABAW tracks: valence-arousal and action units ----------------------------------------------------------

VA_HEADER = "valence,arousal"
AU_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def write_track(root, folder, video, header, lines, missing=()):
    """An Aff-Wild2 video of one track: <folder>/Train_Set/<video>.txt and cropped_aligned/<video>/<00001>.jpg."""
    write_video(root, video, lines, missing, header, annotations=Path(folder) / "Train_Set")


def test_va_reader_skips_unannotated_frames_and_missing_images_for_both_subjects_of_a_video(tmp_path):
    from emotic.training.affwild2 import affwild2_annotations

    write_track(tmp_path, "VA_Estimation_Challenge", "10-60-1280x720_left", VA_HEADER,
                ["0.5,-0.25", "-5,-5", "1,-1", "0.1,0.2"], missing={4})
    write_track(tmp_path, "VA_Estimation_Challenge", "10-60-1280x720_right", VA_HEADER, ["-0.3,0.7", "0.2,-5"])
    folder = affwild2_annotations(tmp_path, "va", "Train_Set")
    dataset, report = read_affwild2(folder, tmp_path / "cropped_aligned", task="va")
    assert report.videos == 2 and report.frames == 3
    assert report.ignored_unlabelled == 2 and report.missing_images == 1  # -5 in either value: not annotated
    assert dataset["label"] == [[0.5, -0.25], [1.0, -1.0], [-0.3, 0.7]]
    assert dataset["video"] == ["10-60-1280x720_left"] * 2 + ["10-60-1280x720_right"]
    assert dataset["frame"] == ["00001.jpg", "00003.jpg", "00001.jpg"]


def test_au_reader_keeps_frames_with_every_unit_annotated_and_counts_each_units_frames(tmp_path):
    from emotic.training.affwild2 import affwild2_annotations

    lines = ["1,0,0,0,0,0,1,0,0,0,1,0", "0,0,0,0,0,0,1,0,0,0,0,-1", "0,1,0,0,0,0,1,0,0,0,0,1",
             "1,1,1,1,1,1,1,1,1,1,1,1"]
    write_track(tmp_path, "AU_Detection_Challenge", "v", AU_HEADER, lines, missing={3})
    dataset, report = read_affwild2(affwild2_annotations(tmp_path, "au", "Train_Set"), tmp_path / "cropped_aligned",
                                    task="au")
    assert report.frames == 2 and report.ignored_unlabelled == 1 and report.missing_images == 1
    assert dataset["label"][0] == [1.0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0] and dataset["label"][1] == [1.0] * 12
    assert report.class_counts["AU1"] == 2 and report.class_counts["AU2"] == 1 and report.class_counts["AU12"] == 2


@pytest.mark.parametrize("folder", ["EXPR_Recognition_Challenge", "EXPR_Classification_Challenge", "annotations"])
def test_expression_annotations_are_found_under_both_challenge_folder_spellings(tmp_path, folder):
    from emotic.training.affwild2 import affwild2_annotations

    write_track(tmp_path, folder, "v", HEADER, ["4", "-1", "6"])
    dataset, report = read_affwild2(affwild2_annotations(tmp_path, "expr", "Train_Set"), tmp_path / "cropped_aligned")
    assert dataset["label"] == [4, 6] and report.ignored_unlabelled == 1
    with pytest.raises(ValueError, match=r"no VA annotation folder for Train_Set: expected one of "
                                         r"\['VA_Estimation_Challenge/Train_Set'\]"):
        affwild2_annotations(tmp_path, "va", "Train_Set")


def test_multitask_reader_masks_each_tasks_unannotated_values_and_counts_missing_images(tmp_path):
    from emotic.training.affwild2 import read_multitask_annotations

    (tmp_path / "batch1" / "1").mkdir(parents=True)
    for name in ("00001.jpg", "00002.jpg", "00003.jpg"):
        Image.new("RGB", (48, 48)).save(tmp_path / "batch1" / "1" / name)
    rows = ["batch1/1/00001.jpg,0.5,0.25,4," + ",".join("1" if i in (3, 6) else "0" for i in range(12)),
            "batch1/1/00002.jpg,-5,-5,-1," + ",".join(["-1"] * 12),  # nothing annotated: skipped
            "batch1/1/00003.jpg,-5,-5,2," + ",".join(["-1"] + ["0"] * 11),
            "batch1/1/00004.jpg,0.1,0.1,1," + ",".join(["0"] * 12)]  # no image: skipped, counted
    (tmp_path / "training_set_annotations.txt").write_text(
        "image,valence,arousal,expression," + AU_HEADER + "\n" + "\n".join(rows) + "\n")
    dataset, report = read_multitask_annotations(tmp_path / "training_set_annotations.txt", tmp_path)
    assert report.frames == 2 and report.missing_images == 1 and report.ignored_unlabelled == 1
    assert dataset["expression"] == [4, 2]
    assert dataset["valence_arousal"][0] == [0.5, 0.25] and all(np.isnan(dataset["valence_arousal"][1]))
    assert dataset["action_units"][0][3] == 1 and dataset["action_units"][0][6] == 1
    assert all(np.isnan(dataset["action_units"][1]))  # one AU not annotated: the frame's AUs are left out
    first, second = np.array(dataset["label"][0]), np.array(dataset["label"][1])  # a multi-task head's 15 labels
    assert first.tolist() == [0.5, 0.25, 4.0, *[1.0 if i in (3, 6) else 0.0 for i in range(12)]]
    assert np.isnan(second[:2]).all() and second[2] == 2 and np.isnan(second[3:]).all()
    assert dataset["video"] == ["batch1/1", "batch1/1"] and dataset["frame"] == ["00001.jpg", "00003.jpg"]


def _sklearn_free_ccc(x, y):
    """Lin's CCC written out independently: population moments from sums."""
    n = len(x)
    mean_x, mean_y = sum(x) / n, sum(y) / n
    var_x, var_y = sum((a - mean_x) ** 2 for a in x) / n, sum((b - mean_y) ** 2 for b in y) / n
    cov = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y)) / n
    return 2 * cov / (var_x + var_y + (mean_x - mean_y) ** 2)


def test_va_metric_module_loads_offline_and_equals_an_independent_ccc_and_hand_computed_cases():
    import evaluate

    from emotic.training.metrics import METRIC_PATHS, valence_arousal_metrics

    metric = evaluate.load(str(METRIC_PATHS["va"]))
    rng = np.random.default_rng(5)
    labels = rng.uniform(-1, 1, (300, 2))
    predictions = 0.6 * labels + rng.normal(0, 0.3, (300, 2)) + [0.1, -0.2]
    labels[:7, 0], labels[7:10, 1] = -5, -5  # not annotated: each value scored over its annotated frames
    result = metric.compute(predictions=predictions, references=labels)
    expected_valence = _sklearn_free_ccc(predictions[7:, 0].tolist(), labels[7:, 0].tolist())
    expected_arousal = _sklearn_free_ccc(np.delete(predictions[:, 1], range(7, 10)).tolist(),
                                         np.delete(labels[:, 1], range(7, 10)).tolist())
    assert result["ccc_valence"] == pytest.approx(expected_valence, abs=1e-12)
    assert result["ccc_arousal"] == pytest.approx(expected_arousal, abs=1e-12)
    assert result["va_score"] == pytest.approx((expected_valence + expected_arousal) / 2, abs=1e-12)
    assert result["num_frames"] == 290
    labels_nan = np.where(labels == -5, np.nan, labels)  # as the readers give unannotated values
    assert valence_arousal_metrics(predictions, labels_nan) == result

    truth = np.array([[-0.5, 0.1], [0.0, 0.4], [0.5, 0.9], [0.2, -0.3]])
    assert valence_arousal_metrics(truth, truth)["va_score"] == pytest.approx(1.0)  # perfect
    assert valence_arousal_metrics(-truth + 2 * truth.mean(0), truth)["va_score"] == pytest.approx(-1.0)  # mirrored
    shifted = valence_arousal_metrics(truth + 0.5, truth)  # perfectly correlated, but off by 0.5: CCC < 1
    variances = truth.var(axis=0)
    assert shifted["ccc_valence"] == pytest.approx(2 * variances[0] / (2 * variances[0] + 0.25))
    assert shifted["ccc_arousal"] == pytest.approx(2 * variances[1] / (2 * variances[1] + 0.25))
    assert valence_arousal_metrics(np.zeros((4, 2)), truth)["va_score"] == 0.0  # a constant predictor scores 0


def test_au_metric_module_equals_scikit_learn_and_thresholds_are_chosen_per_unit():
    import evaluate
    from sklearn.metrics import f1_score

    from emotic.training.metrics import METRIC_PATHS, action_unit_metrics, choose_thresholds

    metric = evaluate.load(str(METRIC_PATHS["au"]))
    rng = np.random.default_rng(7)
    labels = (rng.uniform(size=(400, 12)) < np.linspace(0.05, 0.6, 12)).astype(float)
    probabilities = np.clip(labels * rng.uniform(0.2, 0.9, (400, 12)) + rng.uniform(0, 0.5, (400, 12)), 0, 1)
    labels[:5, 2] = -1  # frames with an unannotated unit are left out
    result = metric.compute(predictions=probabilities, references=labels)
    kept = (labels >= 0).all(axis=1)
    per_unit = [f1_score(labels[kept, i], probabilities[kept, i] >= 0.5, zero_division=0) for i in range(12)]
    assert list(result["per_au_f1"].values()) == pytest.approx(per_unit, abs=1e-12)
    assert result["au_score"] == pytest.approx(np.mean(per_unit)) and result["num_frames"] == 395
    assert list(result["per_au_f1"])[:3] == ["AU1", "AU2", "AU4"] and list(result["per_au_f1"])[-1] == "AU26"

    thresholds = choose_thresholds(probabilities, labels)
    assert len(thresholds) == 12 and all(0 < value < 1 for value in thresholds)
    tuned = action_unit_metrics(probabilities, labels, thresholds)
    assert tuned["au_score"] >= result["au_score"]  # the grid holds 0.5: tuned is never worse on these frames
    for unit, threshold in enumerate(thresholds):  # each chosen one is the best of the grid for its unit
        best = max(f1_score(labels[kept, unit], probabilities[kept, unit] >= t, zero_division=0)
                   for t in np.linspace(0.05, 0.95, 19))
        assert tuned["per_au_f1"][list(tuned["per_au_f1"])[unit]] == pytest.approx(best)
        assert tuned["thresholds"][unit] == threshold
    all_positive = action_unit_metrics(np.ones_like(probabilities), labels)["au_score"]
    assert tuned["au_score"] > all_positive


def test_multitask_module_equals_an_independent_sum_of_the_three_scores_over_each_tracks_annotated_frames():
    from sklearn.metrics import f1_score

    from emotic.training.metrics import abaw_metric, multitask_metrics

    rng = np.random.default_rng(3)
    frames = 300
    truth_va = np.clip(rng.normal(0, 0.4, (frames, 2)), -1, 1)
    truth_expr = rng.integers(0, 8, frames)
    truth_au = rng.integers(0, 2, (frames, 12))
    references = np.concatenate([truth_va, truth_expr[:, None], truth_au], axis=1).astype(float)
    references[:40, :2] = -5  # not annotated, as in ABAW7's files
    references[30:90, 2] = -1
    references[60:140, 3] = -1  # one unit missing: the frame's units are left out
    outputs = np.concatenate([np.clip(truth_va + rng.normal(0, 0.3, (frames, 2)), -1, 1),
                              rng.dirichlet(np.ones(8), frames) + np.eye(8)[truth_expr] * rng.random((frames, 1)),
                              np.clip(truth_au * 0.6 + rng.random((frames, 12)) * 0.5, 0, 1)], axis=1)
    result = multitask_metrics(outputs, references)

    va = [_sklearn_free_ccc(outputs[40:, i].tolist(), truth_va[40:, i].tolist()) for i in (0, 1)]
    keep = np.r_[0:30, 90:frames]
    expr = f1_score(truth_expr[keep], outputs[keep, 2:10].argmax(1), labels=range(8), average="macro",
                    zero_division=0)
    units = np.r_[0:60, 140:frames]
    au = f1_score(truth_au[units], outputs[units, 10:] >= 0.5, average="macro", zero_division=0)
    assert result["va_score"] == pytest.approx(np.mean(va)) and result["expr_score"] == pytest.approx(expr)
    assert result["au_score"] == pytest.approx(au)
    assert result["mtl_score"] == pytest.approx(np.mean(va) + expr + au)
    assert (result["va_frames"], result["expr_frames"], result["au_frames"]) == (260, 240, 220)
    # the same as the three tracks' own modules, which it is written apart from
    assert result["mtl_score"] == pytest.approx(result["va"]["va_score"] + result["expr"]["macro_f1"]
                                                + result["au"]["au_score"])
    with pytest.raises(ValueError, match="expected two arrays of shape \\(frames, 15\\)"):
        abaw_metric("multitask").compute(predictions=[[0.0] * 14], references=[[0.0] * 14])


def test_the_training_transform_counts_the_geometry_each_view_was_built_from(tmp_path):
    """With `--geometry auto` each training image's auxiliary view comes from the detector where it finds the face,
    else from the whole image; the run records how many of each (emotic_run.json `geometries`)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from people import real_people

    from emotic import EmoticImageProcessor

    face = real_people()[0].convert("L").resize((64, 64))
    face.save(tmp_path / "face.png")
    Image.new("L", (64, 64), 128).save(tmp_path / "blank.png")
    transform = ViewTransform(EmoticImageProcessor(size=32), geometry="auto")
    transform({"image": [str(tmp_path / "face.png"), str(tmp_path / "blank.png")], "label": [0, 0]})
    assert transform.geometries == {"detector": 1, "full_image": 1}



def test_training_finds_each_face_once_and_moves_its_landmarks_with_every_crop_rotation_and_mirror(tmp_path,
                                                                                                monkeypatch):
    """Unaligned faces (`--geometry auto`): each image's face is found once, on the image as read, and its landmarks
    go where the crop, rotation and mirror take the face: on each augmented real face they agree with the landmarks
    found on that augmented image afresh (eyes, nose and mouth corners within a fifth of the eyes' distance, and each
    of the 68 points on its own part: a mirror that kept the points' order would put the left jaw's points on the
    right). Epochs after the first find nothing."""
    import sys

    from PIL import ImageOps

    sys.path.insert(0, str(Path(__file__).parent))
    from people import real_people

    from emotic import EmoticImageProcessor
    from emotic.processing.face_geometry import FaceLandmarker, five_points

    faces = [person.resize((128, 128)) for person in real_people()]
    landmarker = FaceLandmarker.shared()

    def agrees(transform, face, key) -> Image.Image:
        image, moved = transform.augment_with_landmarks(face, key, transform._landmarks(face, key))
        fresh = landmarker(np.asarray(image))
        assert fresh is not None, key
        expected, ours = five_points(fresh), five_points(moved)
        eyes = np.linalg.norm(expected[0] - expected[1])
        assert np.linalg.norm(ours - expected, axis=1).max() < 0.2 * eyes, (key, ours, expected)
        assert np.linalg.norm(moved - fresh, axis=1).mean() < 0.15 * eyes, key  # each of the 68 points keeps its part
        return image

    everything = ViewTransform(EmoticImageProcessor(size=32), geometry="auto", crop_scale=0.75, rotation=20,
                               hflip=True, seed=3)
    for key in range(6):
        agrees(everything, faces[key % 2], key)
    mirror = ViewTransform(EmoticImageProcessor(size=32), geometry="auto", hflip=True)
    flipped = [key for key in range(8) if np.array_equal(np.asarray(agrees(mirror, faces[0], key)),
                                                         np.asarray(ImageOps.mirror(faces[0])))]
    assert 0 < len(flipped) < 8  # both sides of the coin were checked

    calls = []
    original = FaceLandmarker.__call__
    monkeypatch.setattr(FaceLandmarker, "__call__", lambda self, rgb: calls.append(1) or original(self, rgb))
    paths = []
    for name, image in (("a", faces[0]), ("b", faces[1]), ("blank", Image.new("RGB", (128, 128), (128,) * 3))):
        image.save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    transform = ViewTransform(EmoticImageProcessor(size=32), geometry="auto", crop_scale=0.75, rotation=20,
                              hflip=True)
    for epoch in range(3):
        transform.epoch = epoch
        views = transform({"image": paths, "index": [0, 1, 2], "label": [0, 1, 2]})
        assert views["pixel_values_aux"].shape == (3, 3, 32, 32)
    assert len(calls) == 3  # once per image, not per image and epoch
    assert transform.geometries == {"detector": 6, "full_image": 3}
