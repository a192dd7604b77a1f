"""Per-frame embeddings of videos, frame folders and images: the fused, pooled feature the model's head sees
(`forward_head(forward_features(...), pre_logits=True)`), written per video as Parquet that `datasets` reads.

    emotic features MODEL INPUT... --output_dir FEATS
    datasets.load_dataset("parquet", data_files="FEATS/features/*.parquet")   # one row per frame

INPUT is what `emotic predict` takes (videos, frame folders, folders of those, images). Each input gets
`features/<video>.parquet` with the columns `video`, `frame` (0-based index), `image_location`, `status` (`face`,
`no_face`, `unreadable`: as in predict's CSV) and `features` (`hidden_size` float32 values). Frames without a face
and unreadable frames carry the features of the nearest earlier frame with a face (the first later one at the start),
as predict carries its predictions; their status says so. Frames stream through in batches and each file is written
row group by row group, so memory stays flat over a long video; each finished video is renamed into place at once,
so a run started again with the same command skips the videos it finished (`--overwrite` redoes them).
`summary.json` counts frames per video and lists what was skipped, with reasons.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from emotic.commands import command_parser
from emotic.inference.predict import (
    FACE,
    MODEL_HELP,
    NO_FACE,
    UNREADABLE,
    FramePredictor,
    _read_summary,
    add_precision_options,
    claim_output,
    load_model,
    precision_of,
    predict_sequence,
)
from emotic.inference.processes import Processes, merge_shares, report_problems, work_share
from emotic.inference.sources import Source, check_decoded, collect_sources, frame_files, iter_frames
from emotic.processing.image_processing_emotic import GEOMETRIES

ROWS_PER_GROUP = 256  # rows held before they are written: a Parquet row group


class FeatureExtractor(FramePredictor):
    """`FramePredictor` that gives, per frame, the pooled feature the head classifies (`(frames, hidden_size)`)."""

    def _placeholder(self, count: int) -> np.ndarray:
        return np.zeros((count, self.model.config.hidden_size))

    def _outputs(self, pixel_values, pixel_values_aux) -> torch.Tensor:
        tokens = self.model.forward_features(pixel_values, pixel_values_aux)
        return self.model.forward_head(tokens, pre_logits=True)


def write_features(source: Source, extractor: FeatureExtractor, features_dir: Path, show_progress: bool) -> dict:
    """`features_dir/<video>.parquet` for one input, written to a partial file of this process and renamed when
    complete: the frame counts by status."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    width = extractor.model.config.hidden_size
    schema = pa.schema([("video", pa.string()), ("frame", pa.int32()), ("image_location", pa.string()),
                        ("status", pa.string()), ("features", pa.list_(pa.float32(), width))])
    counts = {"frames": 0, FACE: 0, NO_FACE: 0, UNREADABLE: 0}
    final = features_dir / f"{source.name}.parquet"
    partial = features_dir / f"{source.name}.parquet.{os.getpid()}.partial"
    files, notes = frame_files(source), {}
    rows = {"location": [], "status": [], "features": []}

    def flush(writer):
        count = len(rows["location"])
        if count:
            start = counts["frames"] - count
            values = np.asarray(rows["features"], dtype=np.float32).reshape(-1)
            writer.write_table(pa.table({
                "video": [source.name] * count, "frame": list(range(start, start + count)),
                "image_location": rows["location"], "status": rows["status"],
                "features": pa.FixedSizeListArray.from_arrays(pa.array(values), width)}, schema=schema))
            for column in rows.values():
                column.clear()

    try:
        with pq.ParquetWriter(partial, schema) as writer, \
                tqdm(total=len(files) if files is not None else None, desc=source.name, unit="frame",
                     disable=not show_progress, leave=False) as progress:
            frames = iter_frames(source, files, notes)
            for location, status, _, filled in predict_sequence(extractor, frames, 1, "mean", source.sequential,
                                                                progress):
                counts["frames"] += 1
                counts[status] += 1
                rows["location"].append(location)
                rows["status"].append(status)
                rows["features"].append(filled)
                if len(rows["location"]) >= ROWS_PER_GROUP:
                    flush(writer)
            flush(writer)
        incomplete = check_decoded(source, counts["frames"], counts[UNREADABLE], notes, "features")
        if incomplete:
            counts["incomplete"] = incomplete
        os.replace(partial, final)  # only a finished video has its .parquet: a restarted run skips it
    finally:
        partial.unlink(missing_ok=True)
    return counts


def main(argv=None) -> int:
    parser = command_parser("emotic features", __doc__)
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("inputs", nargs="+", help="videos, frame folders, folders of those, or images")
    parser.add_argument("--output_dir", default="features")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--geometry", choices=GEOMETRIES, default=None,
                        help="template for aligned crops (Aff-Wild2 cropped_aligned), detector to find faces; "
                             "default: the processor's (auto)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    add_precision_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="redo videos already finished in --output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.backend != "pytorch":
        parser.error("--backend onnxruntime runs the exported classifier, whose graph ends in the head's logits; "
                     "features come from the PyTorch model")
    processes = Processes()  # under `accelerate launch`, this process's share of the inputs
    try:
        sources = collect_sources(args.inputs)
        model, processor = load_model(args.model, args.device or processes.device, args.dtype, args.quantize)
        extractor = FeatureExtractor(model, processor, args.batch_size, args.geometry).quiet()
    except ValueError as error:
        parser.error(str(error))

    output = Path(args.output_dir)
    features_dir = output / "features"
    settings = {"model": str(args.model), "precision": precision_of(model, args.quantize),
                "geometry": args.geometry or processor.geometry, "hidden_size": model.config.hidden_size}
    if processes.is_main:  # held until the process ends: one run per output folder
        lock = claim_output(output, features_dir, "*.parquet.*.partial", "features_settings.json", settings,
                            args.overwrite, parser, "features", "emotic run")
    processes.wait()

    earlier = {} if args.overwrite else _read_summary(output / "summary.json")
    mine = work_share(processes, sources, lambda source: features_dir / f"{source.name}.parquet", count_written,
                      lambda source: write_features(source, extractor, features_dir, not args.quiet), earlier,
                      args.overwrite)
    summary = merge_shares(processes.gather(mine), sources, settings)
    code = 1 if summary["skipped"] or summary["incomplete"] else 0
    if processes.is_main:
        (output / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"features of {len(summary['videos'])} of {len(sources)} inputs ({summary['totals']['already_done']} "
              f"already done), {summary['totals']['frames']} frames of {model.config.hidden_size} values, in "
              f"{features_dir}")
        report_problems(summary, output / "summary.json", "given features of part of their frames only")
    processes.close()
    return code


def count_written(path: Path) -> dict:
    """The frame counts by status of a finished features file."""
    import pyarrow.parquet as pq

    statuses = pq.read_table(path, columns=["status"]).column("status").to_pylist()
    return {"frames": len(statuses), **{status: statuses.count(status) for status in (FACE, NO_FACE, UNREADABLE)}}


if __name__ == "__main__":
    sys.exit(main())
