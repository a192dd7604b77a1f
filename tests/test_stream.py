"""The one frame loop (`emotic.inference.stream`): every way of running a model over a video (Python, `emotic predict`,
`emotic features`, `emotic evaluate --videos_dir`, the app's video tab) goes through it, so each gives the same rows
for the same video."""

import csv
import json

import numpy as np
import torch

from emotic import ABAW_EXPRESSION_LABELS


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_python_predict_features_evaluate_and_the_app_give_the_same_rows_of_a_two_person_video(
        model_dir, two_people, tmp_path):
    from emotic.app import Analyser
    from emotic.inference import evaluate, features, predict
    from emotic.inference.faces import OneFace, TrackedFaces
    from emotic.inference.runtime import ACCELERATOR_BATCH_SIZE, CPU_BATCH_SIZE, Runtime, default_batch_size
    from emotic.inference.sources import collect_sources, open_frames
    from emotic.inference.stream import stream
    from emotic.inference.writers import write_frame_csv

    _, video = two_people
    runtime = Runtime.load(str(model_dir), "cpu")
    # batches of 8 frames on the CPU unless told (ViT-B is as fast or faster per frame than at 32, in less memory),
    # 32 on a GPU; predict runs its batches of 5 below: the rows do not depend on the batch size
    assert runtime.batch_size == CPU_BATCH_SIZE == 8 and default_batch_size("cuda:1") == ACCELERATOR_BATCH_SIZE
    (source,) = collect_sources([str(video)])

    # Python: every face tracked, smoothed over 5 frames within each person
    rows = list(stream(open_frames(source), runtime, TrackedFaces(runtime.processor), (5, "mean")))
    assert {row.track for row in rows} == {1, 2} and len({row.frame for row in rows}) == 48
    write_frame_csv(tmp_path / "python.csv", rows, runtime.labels, runtime.parts, tracked=True)

    # emotic predict: the same rows, byte for byte
    assert predict.main([str(model_dir), str(video), "--output_dir", str(tmp_path / "predict"),
                         "--smoothing_window", "5", "--subjects", "left,right", "--batch_size", "5", "--quiet"]) == 0
    predicted = tmp_path / "predict" / "frames" / "two.csv"
    assert (tmp_path / "python.csv").read_bytes() == predicted.read_bytes()

    # the app's video tab: the same rows, byte for byte
    analyser = Analyser(runtime.model, runtime.processor)
    result = analyser.people(str(video))
    csv_path, _ = analyser.write_outputs(result, analyser.smoothed(result, 5, "mean"), tmp_path / "app")
    assert csv_path.read_bytes() == predicted.read_bytes()

    # emotic evaluate --videos_dir: each person annotated with predict's own raw labels where they are seen scores
    # every annotated frame right, so its rows are predict's
    tracks = {t["track"]: t["name"] for t in json.loads((tmp_path / "predict" / "summary.json").read_text())
              ["videos"]["two"]["tracks"]}
    root = tmp_path / "affwild2" / "EXPR_Recognition_Challenge" / "Validation_Set"
    root.mkdir(parents=True)
    annotated = 0
    for track, name in tracks.items():
        labels = ["-1"] * 48
        for row in read_rows(predicted):
            if row["track"] == str(track):
                labels[int(row["frame"])] = row["raw_label"]
                annotated += 1
        (root / f"two_{name}.txt").write_text(",".join(ABAW_EXPRESSION_LABELS) + "\n" + "\n".join(labels) + "\n")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "two.mp4").write_bytes(video.read_bytes())
    assert evaluate.main([str(model_dir), str(tmp_path / "affwild2"), "--videos_dir", str(tmp_path / "videos"),
                          "--output_dir", str(tmp_path / "report"), "--smoothing_windows", "1", "--no_reliability",
                          "--quiet"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["raw"]["num_frames"] == annotated and metrics["raw"]["accuracy"] == 1.0

    # emotic features and predict with the largest face: the head on each frame's features gives predict's
    # probabilities, and Python's features mode gives the file's features
    assert features.main([str(model_dir), str(video), "--output_dir", str(tmp_path / "features"), "--quiet"]) == 0
    assert predict.main([str(model_dir), str(video), "--output_dir", str(tmp_path / "largest"), "--faces", "largest",
                         "--smoothing_window", "1", "--quiet"]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "features" / "features" / "two.parquet")
    written = np.stack(table.column("features").to_numpy(zero_copy_only=False))
    largest = read_rows(tmp_path / "largest" / "frames" / "two.csv")
    assert len(written) == len(largest) == 48
    assert table.column("status").to_pylist() == [row["status"] for row in largest]
    with torch.no_grad():
        probabilities = runtime.model.classifier(torch.from_numpy(written)).softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, [[float(row[name]) for name in ABAW_EXPRESSION_LABELS]
                                               for row in largest], atol=2e-6)
    in_python = Runtime.load(str(model_dir), "cpu", features=True)
    features_rows = list(stream(open_frames(source), in_python, OneFace(in_python.processor)))
    np.testing.assert_array_equal(np.stack([row.smoothed for row in features_rows]).astype(np.float32), written)
