"""The per-frame features file, one per video (`features/<video>.parquet`): written by `emotic features`, read by
`emotic finetune-temporal` and by any `datasets.load_dataset("parquet", ...)`. Columns: `video`, `frame` (0-based
position), `image_location` (`video/00042.jpg`), `status` (`face`, `no_face`, `unreadable`) and `features`
(`width` float32 values: the pooled feature the frame model's head sees). With features of other modalities
(`emotic features --audio_model`, `--text_model`), also `audio` / `text` (float32 values of the encoder's width)
and `audio_present` / `text_present` (False where the frame has no sound to encode, or nobody speaks around it: its
values are zeros and mean nothing)."""

import os
from pathlib import Path

import numpy as np

MODALITIES = ("audio", "text")  # besides the frame model's features
# what `emotic features` records of how a modality's features were made (features_settings.json), and a temporal
# head trained on them keeps (`EmoticTemporalConfig.audio_settings`, `text_settings`)
SETTINGS = {"audio": ("audio_model", "audio_layer", "audio_window", "audio_stride", "audio_size"),
            "text": ("text_model", "text_window", "text_size", "transcripts")}
ROWS_PER_GROUP = 256  # rows held before they are written: a Parquet row group


class NonFiniteFeatures(ValueError):
    """Features holding NaN or infinity: never written, never read (a head trained on them learns nothing, silently)."""


def check_finite(features: np.ndarray, where: str) -> None:
    """`NonFiniteFeatures` naming `where` and the first row with a NaN or infinite value, if there is one."""
    bad = ~np.isfinite(features).reshape(len(features), -1).all(axis=1)
    if bad.any():
        raise NonFiniteFeatures(f"{where}: row {int(np.argmax(bad))} (and {int(bad.sum()) - 1} more) holds NaN or "
                                f"infinite feature values; expected finite numbers")
COLUMNS = ("video", "frame", "image_location", "status", "features")


def schema(width: int, modalities: dict | None = None):
    """The table's columns; `modalities`: name -> width of the other modalities' features it holds."""
    import pyarrow as pa

    fields = [("video", pa.string()), ("frame", pa.int32()), ("image_location", pa.string()),
              ("status", pa.string()), ("features", pa.list_(pa.float32(), width))]
    for name, size in (modalities or {}).items():
        fields += [(name, pa.list_(pa.float32(), size)), (f"{name}_present", pa.bool_())]
    return pa.schema(fields)


class FeaturesWriter:
    """One video's features file, written row group by row group as frames arrive (memory stays flat over a long
    video): `write(location, status, features)` per frame, in order, then `close()` (or use it as a context).
    `modalities` (name -> width: `audio`, `text`): the file has their columns too, and each `write` gives
    `extra={name: (values, present)}` for each."""

    def __init__(self, path: str | os.PathLike, video: str, width: int, rows_per_group: int = ROWS_PER_GROUP,
                 modalities: dict | None = None):
        import pyarrow.parquet as pq

        self.video, self.width, self.rows_per_group = video, width, rows_per_group
        self.modalities = dict(modalities or {})
        self.writer = pq.ParquetWriter(Path(path), schema(width, self.modalities))
        self.rows = {"location": [], "status": [], "features": [],
                     **{key: [] for name in self.modalities for key in (name, f"{name}_present")}}
        self.written = 0

    def write(self, location: str, status: str, features, extra: dict | None = None) -> None:
        """One frame's row; `NonFiniteFeatures` for features holding NaN or infinity (a broken model's)."""
        extra = extra or {}
        for name, values in (("features", features), *((f"{name} features", extra[name][0]) for name in extra)):
            if not np.isfinite(values).all():
                raise NonFiniteFeatures(f"{self.video}: frame {self.written + len(self.rows['location'])} "
                                        f"({location}): the model gave NaN or infinite {name}; nothing is written "
                                        f"for this video")
        self.rows["location"].append(location)
        self.rows["status"].append(status)
        self.rows["features"].append(features)
        for name in self.modalities:
            values, present = extra[name]
            self.rows[name].append(values)
            self.rows[f"{name}_present"].append(bool(present))
        if len(self.rows["location"]) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        count = len(self.rows["location"])
        if not count:
            return
        values = np.asarray(self.rows["features"], dtype=np.float32).reshape(-1)
        columns = {"video": [self.video] * count, "frame": list(range(self.written, self.written + count)),
                   "image_location": self.rows["location"], "status": self.rows["status"],
                   "features": pa.FixedSizeListArray.from_arrays(pa.array(values), self.width)}
        for name, size in self.modalities.items():
            values = np.asarray(self.rows[name], dtype=np.float32).reshape(-1)
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values), size)
            columns[f"{name}_present"] = self.rows[f"{name}_present"]
        self.writer.write_table(pa.table(columns, schema=schema(self.width, self.modalities)))
        self.written += count
        for column in self.rows.values():
            column.clear()

    def close(self) -> None:
        self.flush()
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:  # the file is abandoned: whoever made it removes it
            self.writer.close()


def read_video_features(path: str | os.PathLike) -> dict:
    """One video's features as `emotic features` writes them (`features/<video>.parquet`): `locations`, `frames`
    (positions), `statuses` and `features` (`(frames, width)` float32). A file that is not such a table, or holds a
    NaN or infinite value, is a `ValueError` naming it (and the row)."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises its own errors for files that are not Parquet
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    missing = {"image_location", "frame", "status", "features"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: lacks the column(s) {sorted(missing)}; expected the files `emotic features` "
                         f"writes (video, frame, image_location, status, features)")
    values = table.column("features").combine_chunks()
    width = getattr(values.type, "list_size", None)
    if width is None or table.num_rows == 0:
        raise ValueError(f"{path}: {table.num_rows} rows of {values.type}; expected one row per frame with a "
                         f"fixed-size list of features")
    features = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(table.num_rows, width)
    check_finite(features, str(path))
    read = {"locations": table.column("image_location").to_pylist(), "frames": table.column("frame").to_pylist(),
            "statuses": table.column("status").to_pylist(), "features": features}
    for name in MODALITIES:  # and their flags: frames without sound, without words
        if name in table.column_names:
            column = table.column(name).combine_chunks()
            read[name] = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(
                table.num_rows, column.type.list_size)
            check_finite(read[name], f"{path} ({name})")
            read[f"{name}_present"] = np.asarray(table.column(f"{name}_present").to_pylist(), dtype=bool)
    return read


def count_statuses(path: str | os.PathLike, statuses) -> dict:
    """The frame counts by status of a finished features file: `frames`, then each of `statuses`; for a file with
    audio (text) features, the frames with sound (words), `with_audio` (`with_text`), and whether there were any,
    `audio_track` (`transcript`)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    flags = [f"{name}_present" for name in MODALITIES if f"{name}_present" in names]
    table = pq.read_table(path, columns=["status", *flags])
    found = table.column("status").to_pylist()
    counts = {"frames": len(found), **{status: found.count(status) for status in statuses}}
    for name, any_key in (("audio", "audio_track"), ("text", "transcript")):
        if f"{name}_present" in flags:
            present = sum(table.column(f"{name}_present").to_pylist())
            counts.update({f"with_{name}": present, any_key: present > 0})
    return counts


FRAME_MODEL_FILE = "frame_model.json"  # beside the features: the model that made them and its signature
SIGNATURE_VALUES = 16  # values kept of each probe's features
SIGNATURE_TOLERANCE = 0.15  # relative difference within which two signatures are one model's (bfloat16, int8: a few %)


def frame_model_signature(model) -> list[float]:
    """What identifies a frame model's features, in a few numbers: its pooled features (what its head sees, and what
    `emotic features` writes) of fixed probe images (a smooth gradient and seeded noise, as both views), projected
    onto `SIGNATURE_VALUES` fixed random directions. Another model's lie about their own size apart; the same model
    loaded in bfloat16 or quantized to int8 differs by a few percent (`same_frame_model`)."""
    import torch

    config = model.config
    size, channels = config.image_size, config.num_channels
    generator = torch.Generator().manual_seed(0)
    gradient = torch.linspace(-1.0, 1.0, size).expand(channels, size, size)
    probes = torch.stack([gradient, torch.randn(channels, size, size, generator=generator)])  # [2, C, H, W]
    device = next(model.parameters()).device
    with torch.inference_mode():
        probes = probes.to(device)
        features = model.forward_head(model.forward_features(probes, probes), pre_logits=True).float().cpu()
    projection = torch.randn(features.shape[1], SIGNATURE_VALUES, generator=torch.Generator().manual_seed(1))
    values = features @ projection / features.shape[1] ** 0.5  # [2, SIGNATURE_VALUES]
    return [round(float(value), 6) for value in values.reshape(-1)]


def signature_difference(ours, theirs) -> float:
    """How far apart two signatures are, relative to the second's size (0: the same)."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        return float("inf")
    return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-12))


def same_frame_model(ours, theirs) -> bool:
    """Whether two `frame_model_signature`s are of one frame model (within `SIGNATURE_TOLERANCE`)."""
    return signature_difference(ours, theirs) <= SIGNATURE_TOLERANCE


def write_frame_model(folder, model_name: str, model) -> None:
    """`frame_model.json` in an `emotic features` output folder: the frame model that made its features (as given)
    and its `frame_model_signature`, which `emotic finetune-temporal` records in the head it trains."""
    import json

    (Path(folder) / FRAME_MODEL_FILE).write_text(json.dumps({"model": model_name,
                                                             "signature": frame_model_signature(model)}, indent=2))


def read_frame_model(folder) -> dict:
    """What `write_frame_model` recorded in an `emotic features` output folder; empty for a folder without it (made
    before it was recorded) or where it cannot be read."""
    import json

    try:
        record = json.loads((Path(folder) / FRAME_MODEL_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("signature"), list) else {}
