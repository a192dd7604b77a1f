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
`summary.json` counts frames per video and lists what was skipped, with reasons; `frame_model.json` names the model
and holds its signature, with which `emotic finetune-temporal` marks the heads it trains on these features (a head is
never run on another model's features). Features holding NaN or infinity are never written: the video is skipped
and said.

The command runs the one loop of `emotic predict` (`emotic.inference.stream`) with the frame model in its features
mode and the largest face of each frame, and writes with `emotic.training.frame_features.FeaturesWriter`.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from emotic.inference.arguments import (
    MODEL_HELP,
    AudioArguments,
    CommandParser,
    FramesArguments,
    OutputArguments,
    PrecisionArguments,
    ProgressArguments,
)
from emotic.inference.audio import AudioEncoder, read_audio
from emotic.inference.faces import OneFace
from emotic.inference.outputs import (
    OutputRefused,
    claim_output,
    merge_shares,
    read_summary,
    report_problems,
    work_share,
    written_when_complete,
)
from emotic.inference.processes import Processes
from emotic.inference.results import STATUSES, UNREADABLE
from emotic.inference.runtime import Runtime, check_backend
from emotic.inference.sources import UnreadableInput, check_decoded, collect_sources, frame_files, open_frames
from emotic.inference.stream import stream
from emotic.training.frame_features import FeaturesWriter, NonFiniteFeatures, count_statuses, write_frame_model


@dataclass
class FeaturesArguments:
    output_dir: str = field(default="features")


def write_features(source, runtime: Runtime, faces: OneFace, features_dir: Path, show_progress: bool,
                   audio: AudioEncoder | None = None) -> dict:
    """`features_dir/<video>.parquet` for one input, written to a partial file of this process and renamed when
    complete: the frame counts by status (and with `audio`, the frames with sound, `with_audio`, and whether the
    input has an audio track, `audio_track`)."""
    from tqdm.auto import tqdm

    counts = {"frames": 0, **{status: 0 for status in STATUSES}}
    files = frame_files(source)
    sound = read_audio(source.path) if audio is not None and source.kind == "video" else None
    if audio is not None:
        counts.update(with_audio=0, audio_track=sound is not None)
        windows = audio.window_features(sound) if sound is not None else None
    with written_when_complete(features_dir / f"{source.name}.parquet") as partial:
        with FeaturesWriter(partial, source.name, runtime.frame.width,
                            audio_width=audio.width if audio else None) as writer, \
                tqdm(total=len(files) if files is not None else None, desc=source.name, unit="frame",
                     disable=not show_progress, leave=False) as progress:
            frames = open_frames(source, files)
            for result in stream(frames, runtime, faces, progress=progress):  # smoothed: the features, filled
                counts["frames"] += 1
                counts[result.status] += 1
                row = None
                if audio is not None:  # the frame's time from its position: frames of a video are evenly spaced
                    time = result.frame / frames.fps if frames.fps else 0.0
                    values, present = audio.frame_features(sound, [time], windows)
                    row = (values[0], present[0])
                    counts["with_audio"] += int(present[0])
                writer.write(result.location, result.status, result.smoothed, audio=row)
        incomplete = check_decoded(source, counts["frames"], counts[UNREADABLE], frames.notes, "features")
        if incomplete:
            counts["incomplete"] = incomplete
    return counts


def main(argv=None) -> int:
    parser = CommandParser("emotic features", __doc__, (FeaturesArguments, FramesArguments, AudioArguments,
                                                        PrecisionArguments, OutputArguments, ProgressArguments),
                           positionals=[(("model",), {"metavar": "MODEL", "help": MODEL_HELP}),
                                        (("inputs",), {"nargs": "+", "help": "videos, frame folders, folders of "
                                                                             "those, or images"})])
    inputs, args, frames_args, audio_args, precision, output_args, progress = parser.parse(argv)
    processes = Processes()  # under `accelerate launch`, this process's share of the inputs
    try:
        check_backend(precision.backend, features=True)
        sources = collect_sources(inputs.inputs)
        runtime = Runtime.load(inputs.model, precision.device or processes.device, precision.dtype,
                               precision.quantize, precision.backend, frames_args.batch_size, features=True)
        faces = OneFace(runtime.processor, frames_args.geometry)
        audio = audio_args.encoder(str(runtime.frame.device))
    except ValueError as error:
        parser.error(str(error))

    output = Path(args.output_dir)
    features_dir = output / "features"
    settings = {"model": str(inputs.model), "precision": runtime.precision,
                "geometry": frames_args.geometry or runtime.processor.geometry,
                "hidden_size": runtime.model.config.hidden_size, **(audio.settings if audio else {})}
    if processes.is_main:  # held until the process ends: one run per output folder
        try:
            lock = claim_output(output, features_dir, "*.parquet.*.partial", "features_settings.json",  # noqa: F841
                                settings, output_args.overwrite, "features", "emotic run")
        except OutputRefused as error:
            parser.error(str(error))
        write_frame_model(output, str(inputs.model), runtime.model)  # what a temporal head checks its model by
    processes.wait()

    earlier = {} if output_args.overwrite else read_summary(output / "summary.json")
    mine = work_share(processes, sources, lambda source: features_dir / f"{source.name}.parquet",
                      lambda path: count_statuses(path, STATUSES),
                      lambda source: write_features(source, runtime, faces, features_dir, not progress.quiet, audio),
                      earlier, output_args.overwrite, skip=(UnreadableInput, NonFiniteFeatures))
    summary = merge_shares(processes.gather(mine), sources, settings,
                           count_keys=("frames", *(("with_audio", "audio_track") if audio else ())))
    code = 1 if summary["skipped"] or summary["incomplete"] else 0
    if processes.is_main:
        (output / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"features of {len(summary['videos'])} of {len(sources)} inputs ({summary['totals']['already_done']} "
              f"already done), {summary['totals']['frames']} frames of {runtime.model.config.hidden_size} values, in "
              f"{features_dir}")
        if audio:  # frames without sound get the temporal head's missing-audio token: said, with how many
            totals = summary["totals"]
            print(f"audio features ({audio.width} values, {audio.settings['audio_model']} layer {audio.layer}): "
                  f"{totals['with_audio']} of {totals['frames']} frames with sound; "
                  f"{totals['videos'] - totals['audio_track']} inputs without an audio track")
        report_problems(summary, output / "summary.json", "given features of part of their frames only")
    processes.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
