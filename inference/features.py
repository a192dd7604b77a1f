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
    TextArguments,
)
from emotic.inference.audio import AudioEncoder, read_audio, sound_file, video_rate
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
from emotic.inference.transcripts import (
    TextEncoder,
    TranscriptRefused,
    cue_spans,
    read_subtitles,
    recognised_cues,
    transcript_file,
)
from emotic.training.affwild2 import annotation_index
from emotic.training.frame_features import FeaturesWriter, NonFiniteFeatures, count_statuses, write_frame_model


@dataclass
class FeaturesArguments:
    output_dir: str = field(default="features")


@dataclass
class Modalities:
    """What `emotic features` stores besides the frame model's features: `audio` (an `AudioEncoder`), `text` (a
    `TextEncoder`) with its words from `transcripts` (a folder of subtitle files) or `recogniser` (a speech-recognition
    pipeline), and `audio_dir`, the videos frame folders were cut from (their sound)."""

    audio: AudioEncoder | None = None
    text: TextEncoder | None = None
    transcripts: str | None = None
    recogniser: object = None
    audio_dir: str | None = None

    @property
    def widths(self) -> dict:
        return {name: encoder.width for name, encoder in (("audio", self.audio), ("text", self.text)) if encoder}

    @property
    def settings(self) -> dict:
        """What the features record of how they were made (a local folder by its name only, never its path)."""
        if self.text is not None and not self.transcripts:
            recogniser = str(self.recogniser.model.name_or_path)
            words = f"asr {Path(recogniser).name if Path(recogniser).exists() else recogniser}"
        else:
            words = "subtitles"
        return {**(self.audio.settings if self.audio else {}), **(self.text.settings(words) if self.text else {})}


def write_features(source, runtime: Runtime, faces: OneFace, features_dir: Path, show_progress: bool,
                   modalities: Modalities | None = None) -> dict:
    """`features_dir/<video>.parquet` for one input, written to a partial file of this process and renamed when
    complete: the frame counts by status, and with `modalities`: the frames with sound (`with_audio`) and whether
    the input has an audio track (`audio_track`; a frame folder: the video it was cut from in `audio_dir`); the
    frames with words around them (`with_text`), whether it has a transcript (`transcript`), and its cues out of
    order, overlapping or starting after the last frame (`cues_out_of_order`, `cues_overlapping`,
    `cues_after_end`)."""
    from tqdm.auto import tqdm

    extra = modalities or Modalities()
    counts = {"frames": 0, **{status: 0 for status in STATUSES}}
    files = frame_files(source)
    file = sound_file(source.path if source.kind == "video" else None, source.name, extra.audio_dir) \
        if (extra.audio or extra.text) and source.kind in ("video", "frames") else None
    sound = read_audio(file) if file is not None and (extra.audio or extra.recogniser) else None
    video_fps = video_rate(file) if file is not None and source.kind == "frames" else None  # a frame folder's
    # times: its video's rate (a video's own is in its header, read with its frames)
    windows, cues, said, spans = None, None, {}, None
    if extra.audio is not None:
        counts.update(with_audio=0, audio_track=sound is not None,
                      corrupt_audio_packets=sound.notes["corrupt_packets"] if sound is not None else 0)
        windows = extra.audio.window_features(sound) if sound is not None else None
    if extra.text is not None:
        if extra.transcripts:
            subtitles = transcript_file(extra.transcripts, source.name)
            cues, notes = read_subtitles(subtitles) if subtitles else ([], {})
        else:
            cues, notes = recognised_cues(extra.recogniser, sound), {}
        counts.update(with_text=0, transcript=bool(cues), cues_out_of_order=notes.get("out_of_order", 0),
                      cues_overlapping=notes.get("overlapping", 0))
        spans = cue_spans(cues) if cues else None  # looked up at every frame
    last_time = 0.0
    with written_when_complete(features_dir / f"{source.name}.parquet") as partial:
        with FeaturesWriter(partial, source.name, runtime.frame.width, modalities=extra.widths) as writer, \
                tqdm(total=len(files) if files is not None else None, desc=source.name, unit="frame",
                     disable=not show_progress, leave=False) as progress:
            frames = open_frames(source, files)
            for result in stream(frames, runtime, faces, progress=progress):  # smoothed: the features, filled
                counts["frames"] += 1
                counts[result.status] += 1
                row = {}
                # the frame's time from its number (00042.jpg: 41) at the video's rate (a frame folder: its video's)
                rate = frames.fps or video_fps
                time = annotation_index(result.location, result.frame) / rate if rate else None
                last_time = max(last_time, time or 0.0)
                if extra.audio is not None:
                    values, present = extra.audio.frame_features(sound if time is not None else None, [time or 0.0],
                                                                 windows)
                    row["audio"] = (values[0], present[0])
                    counts["with_audio"] += int(present[0])
                if extra.text is not None:
                    values, present = extra.text.at(cues if time is not None else None, time or 0.0, said, spans)
                    row["text"] = (values, present)
                    counts["with_text"] += int(present)
                writer.write(result.location, result.status, result.smoothed, row)
        if (extra.audio or extra.text) and not (frames.fps or video_fps) and source.kind != "images":
            counts["no_frame_rate"] = True  # a frame folder without its video: sound and words cannot be placed
        if cues:  # a transcript of another cut of the video: said, counted
            counts["cues_after_end"] = sum(cue.start > last_time + 1.0 for cue in cues)
        incomplete = check_decoded(source, counts["frames"], counts[UNREADABLE], frames.notes, "features")
        if incomplete:
            counts["incomplete"] = incomplete
    return counts


def main(argv=None) -> int:
    parser = CommandParser("emotic features", __doc__, (FeaturesArguments, FramesArguments, AudioArguments,
                                                        TextArguments, PrecisionArguments, OutputArguments,
                                                        ProgressArguments),
                           positionals=[(("model",), {"metavar": "MODEL", "help": MODEL_HELP}),
                                        (("inputs",), {"nargs": "+", "help": "videos, frame folders, folders of "
                                                                             "those, or images"})])
    inputs, args, frames_args, audio_args, text_args, precision, output_args, progress = parser.parse(argv)
    processes = Processes()  # under `accelerate launch`, this process's share of the inputs
    try:
        check_backend(precision.backend, features=True)
        sources = collect_sources(inputs.inputs)
        runtime = Runtime.load(inputs.model, precision.device or processes.device, precision.dtype,
                               precision.quantize, precision.backend, frames_args.batch_size, features=True)
        faces = OneFace(runtime.processor, frames_args.geometry)
        device, dtype = str(runtime.frame.device), runtime.model.dtype  # the encoders compute as the frame model
        modalities = Modalities(audio_args.encoder(device, dtype=dtype), text_args.encoder(device, dtype),
                                text_args.transcripts, text_args.recogniser(device), audio_args.audio_dir)
        if audio_args.audio_dir and not (modalities.audio or modalities.recogniser):
            raise ValueError(f"--audio_dir {audio_args.audio_dir}: for --audio_model or --asr_model (the sound of "
                             f"frame folders)")
    except ValueError as error:
        parser.error(str(error))

    output = Path(args.output_dir)
    features_dir = output / "features"
    settings = {"model": str(inputs.model), "precision": runtime.precision,
                "geometry": frames_args.geometry or runtime.processor.geometry,
                "hidden_size": runtime.model.config.hidden_size, **modalities.settings}
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
                      lambda source: write_features(source, runtime, faces, features_dir, not progress.quiet,
                                                   modalities),
                      earlier, output_args.overwrite, skip=(UnreadableInput, NonFiniteFeatures, TranscriptRefused))
    summary = merge_shares(processes.gather(mine), sources, settings,
                           count_keys=("frames", *(("no_frame_rate",) if modalities.audio or modalities.text else ()),
                                       *(("with_audio", "audio_track", "corrupt_audio_packets")
                                         if modalities.audio else ()),
                                       *(("with_text", "transcript", "cues_out_of_order", "cues_overlapping",
                                          "cues_after_end") if modalities.text else ())))
    code = 1 if summary["skipped"] or summary["incomplete"] else 0
    if processes.is_main:
        (output / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"features of {len(summary['videos'])} of {len(sources)} inputs ({summary['totals']['already_done']} "
              f"already done), {summary['totals']['frames']} frames of {runtime.model.config.hidden_size} values, in "
              f"{features_dir}")
        totals, audio, text = summary["totals"], modalities.audio, modalities.text
        if totals.get("no_frame_rate"):
            print(f"{totals['no_frame_rate']} frame folders have no video of theirs in --audio_dir to give their frame "
                  f"rate: their sound and words could not be placed in time (without audio and text)")
        if audio:  # frames without sound get the temporal head's missing-audio token: said, with how many
            print(f"audio features ({audio.width} values, {audio.settings['audio_model']} layer {audio.layer}): "
                  f"{totals['with_audio']} of {totals['frames']} frames with sound; "
                  f"{totals['videos'] - totals['audio_track']} inputs without an audio track"
                  + (f"; {totals['corrupt_audio_packets']} corrupt audio packets skipped (their sound is silence)"
                     if totals["corrupt_audio_packets"] else ""))
        if text:
            print(f"text features ({text.width} values, {text.settings('')['text_model']}, words within "
                  f"{text.window:g} s): {totals['with_text']} of {totals['frames']} frames with words around them; "
                  f"{totals['videos'] - totals['transcript']} inputs without a transcript"
                  + (f"; cues out of order (sorted): {totals['cues_out_of_order']}" if totals["cues_out_of_order"]
                     else "")
                  + (f"; overlapping: {totals['cues_overlapping']}" if totals["cues_overlapping"] else "")
                  + (f"; {totals['cues_after_end']} cues start after their video's last frame (a transcript of "
                     f"another cut?)" if totals["cues_after_end"] else ""))
        report_problems(summary, output / "summary.json", "given features of part of their frames only")
    processes.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
