"""The per-frame features file, one per video (`features/<video>.parquet`): written by `emotic features`, read by
`emotic finetune-temporal` and by any `datasets.load_dataset("parquet", ...)`. Columns: `video`, `frame` (0-based
position), `image_location` (`video/00042.jpg`), `status` (`face`, `no_face`, `unreadable`) and `features`
(`width` float32 values: the pooled feature the frame model's head sees)."""

import os
from pathlib import Path

import numpy as np

ROWS_PER_GROUP = 256  # rows held before they are written: a Parquet row group
COLUMNS = ("video", "frame", "image_location", "status", "features")


def schema(width: int):
    import pyarrow as pa

    return pa.schema([("video", pa.string()), ("frame", pa.int32()), ("image_location", pa.string()),
                      ("status", pa.string()), ("features", pa.list_(pa.float32(), width))])


class FeaturesWriter:
    """One video's features file, written row group by row group as frames arrive (memory stays flat over a long
    video): `write(location, status, features)` per frame, in order, then `close()` (or use it as a context)."""

    def __init__(self, path: str | os.PathLike, video: str, width: int, rows_per_group: int = ROWS_PER_GROUP):
        import pyarrow.parquet as pq

        self.video, self.width, self.rows_per_group = video, width, rows_per_group
        self.writer = pq.ParquetWriter(Path(path), schema(width))
        self.rows = {"location": [], "status": [], "features": []}
        self.written = 0

    def write(self, location: str, status: str, features) -> None:
        self.rows["location"].append(location)
        self.rows["status"].append(status)
        self.rows["features"].append(features)
        if len(self.rows["location"]) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        count = len(self.rows["location"])
        if not count:
            return
        values = np.asarray(self.rows["features"], dtype=np.float32).reshape(-1)
        self.writer.write_table(pa.table({
            "video": [self.video] * count, "frame": list(range(self.written, self.written + count)),
            "image_location": self.rows["location"], "status": self.rows["status"],
            "features": pa.FixedSizeListArray.from_arrays(pa.array(values), self.width)}, schema=schema(self.width)))
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
    (positions), `statuses` and `features` (`(frames, width)` float32). A file that is not such a table is a
    `ValueError` naming it."""
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
    return {"locations": table.column("image_location").to_pylist(), "frames": table.column("frame").to_pylist(),
            "statuses": table.column("status").to_pylist(), "features": features}


def count_statuses(path: str | os.PathLike, statuses) -> dict:
    """The frame counts by status of a finished features file: `frames`, then each of `statuses`."""
    import pyarrow.parquet as pq

    found = pq.read_table(path, columns=["status"]).column("status").to_pylist()
    return {"frames": len(found), **{status: found.count(status) for status in statuses}}
