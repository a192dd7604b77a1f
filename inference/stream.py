"""The one frame loop of inference: frames -> faces -> frame model (-> temporal head) -> smoothing, as a stream of
`FrameResult`s. `emotic predict`, `emotic features`, `emotic evaluate`, the app's video tab and Python code all run
their frames through `stream`; what they differ in is what they compose it of and what they write.

    from emotic.inference.faces import TrackedFaces
    from emotic.inference.runtime import Runtime
    from emotic.inference.sources import collect_sources, open_frames
    from emotic.inference.stream import stream

    runtime = Runtime.load("runs/dual-view")
    people = TrackedFaces(runtime.processor, max_faces=8, max_gap=2.0, detect_every=1)
    for source in collect_sources(["interview.mp4"]):
        for result in stream(open_frames(source), runtime, people, smoothing=(15, "mean")):
            result.frame, result.time, result.track, result.face, result.raw, result.smoothed

Frames are decoded, their faces found and their views built in a background thread while the model runs on the
previous batch (`runtime.pipelined`): at most two batches are held, and memory stays flat over a long video.
"""

import numpy as np

from emotic.inference.results import has_image
from emotic.inference.runtime import Runtime, pipelined
from emotic.inference.smoothing import smooth_batches
from emotic.inference.sources import Frames


def frame_results(frames: Frames, runtime: Runtime, faces, progress=None):
    """Every result of `frames` with the frame model's `raw` row, unsmoothed, in order, batch by batch (lists).
    `faces`: an `emotic.inference.faces` strategy. `progress.update(n)` after each batch of n frames."""
    fps = frames.fps if frames.sequential else None
    faces.start(fps)

    def numbered(index, location, image):  # what `faces.prepare` takes: (location, frame, time, image)
        return location, index if frames.sequential else None, index / fps if fps else None, image

    items = (numbered(index, location, image) for index, (location, image) in enumerate(frames.items))
    take, taken = None, 0
    if frames.take is not None:  # a live source: each batch is what has arrived
        def take():
            nonlocal taken
            batch = [numbered(taken + i, location, image) for i, (location, image) in enumerate(frames.take(taken))]
            taken += len(batch)
            return batch

    def prepare(batch):
        return (len(batch), *faces.prepare(batch))

    def infer(count, results, views, viewed):
        score(runtime, results, views, viewed)
        if faces.fills_frames:  # a row for every frame: the ones without a usable face take their neighbours'
            for result in results:
                if result.raw is None:
                    result.raw = runtime.frame.no_face()
        if progress is not None:
            progress.update(count)
        return results

    timed = None
    if frames.timed is not None:
        def timed(stage, batch, seconds):  # frames dropped or missing cost nothing: they do not count
            frames.timed(stage, sum(has_image(item[3]) for item in batch), seconds)

    yield from pipelined(items, runtime.batch_size, prepare, infer, take=take, timed=timed)


def score(runtime: Runtime, results: list, views, viewed: list) -> None:
    """The frame model on `views` (what `faces.prepare` built, or None): each `results[viewed[i]].raw` set to the
    i-th view's outputs."""
    if views is not None:
        for index, values in zip(viewed, runtime.frame(views).astype(np.float64)):
            results[index].raw = values


def stream(frames: Frames, runtime: Runtime, faces, smoothing: tuple[int, str] = (1, "mean"), progress=None):
    """The results of every frame of `frames` (every face of it, with tracked faces) through `runtime`, smoothed
    over `smoothing` (window, mode) frames, in order, streaming (see the module's docstring).

    With one face a frame, frames without a usable face carry the nearest earlier face frame's outputs (the first
    later one at the start of a video) before smoothing; tracked faces are smoothed within each person's track.
    With a temporal head (`runtime.temporal`), the frame model gives features, the head every frame's outputs over
    the whole video (held while its windows run; a live source's as its windows run, `TemporalHead.trailing`),
    which are then smoothed. Separate images (`frames.sequential` false) are each their own: neither filled nor
    smoothed."""
    window, mode = smoothing
    if runtime.temporal is not None and faces.tracked:
        raise ValueError("--temporal_model predicts one face per frame from its neighbours; with a temporal head "
                         "use --faces largest")
    if not frames.sequential:
        window = 1
    batches = frame_results(frames, runtime, faces, progress)
    if runtime.temporal is not None:
        filled = smooth_batches(batches, 1, "mean", fill=True)
        if frames.take is not None:  # a live source: each frame's outputs once the windows over it have run
            heads = runtime.temporal.trailing(filled)
        else:
            heads = _whole_video(runtime.temporal, filled, frames)
        batches = smooth_batches(heads, window, mode, fill=False)
    else:
        batches = smooth_batches(batches, window, mode, fill=frames.sequential and faces.fills_frames,
                                 tracked=faces.tracked)
    return (result for batch in batches for result in batch)


def _whole_video(temporal, filled, frames: Frames):
    """The temporal head's outputs of a video as one batch, once its last frame's features are in (lazily: nothing
    runs before the stream is read); a head that hears gets the sound of the video file the frames come from."""
    yield temporal.over((result for batch in filled for result in batch), frames.path, frames.fps, frames.name)
