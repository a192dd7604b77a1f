"""Smoothing per-frame class probabilities of a video over a centred sliding window (whole or streamed), filling
frames without a face from their neighbours, and the loop's smoothing stage over `FrameResult`s (`smooth`): one face
a frame, or each tracked person's faces apart."""

from collections import deque
from typing import get_args

import numpy as np

from emotic.inference.results import FrameResult
from emotic.modeling.configuration_emotic import SmoothingMode, check_smoothing_window


def smoothing_kernel(window: int, mode: str) -> np.ndarray:
    """Weights of a centred window: uniform for `mean` and `mode`, a Gaussian with sigma = window / 4 for `gaussian`."""
    check_smoothing_window(window)
    if mode not in get_args(SmoothingMode):
        raise ValueError(f"smoothing_mode={mode!r}; allowed: {list(get_args(SmoothingMode))}")
    offsets = np.arange(window) - window // 2
    if mode == "gaussian":
        return np.exp(-0.5 * (offsets / (window / 4)) ** 2)
    return np.ones(window)


def smooth_probabilities(probabilities, window: int, mode: str = "mean") -> np.ndarray:
    """Smooth per-frame class probabilities `(frames, classes)` of one video over a centred sliding window.

    The window is clipped at the video's ends and the weights renormalised over the frames it covers (no padding:
    a constant sequence stays constant up to its first and last frame). `mean` averages probabilities, `gaussian`
    weights them by distance, `mode` returns each class's share of the per-frame votes (argmax) in the window,
    ties going to the class with the higher mean probability. Window 1 returns the input unchanged.
    """
    kernel = smoothing_kernel(window, mode)
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"probabilities: expected a (frames, classes) array, got shape {values.shape}")
    if window == 1 or len(values) == 0:
        return values.copy()

    def weighted(rows):
        total, norm = np.zeros_like(rows), np.zeros(len(rows))
        frames, radius = len(rows), window // 2
        for weight, offset in zip(kernel, range(-radius, radius + 1)):
            if abs(offset) >= frames:
                continue
            target = slice(max(0, -offset), frames - max(0, offset))
            source = slice(max(0, offset), frames - max(0, -offset))
            total[target] += weight * rows[source]
            norm[target] += weight
        return total / norm[:, None]

    if mode != "mode":
        return weighted(values)
    votes = np.zeros_like(values)
    votes[np.arange(len(values)), values.argmax(1)] = 1.0
    shares = weighted(votes) + 1e-6 * weighted(values)  # the mean probability only breaks ties
    return shares / shares.sum(1, keepdims=True)


class StreamingSmoother:
    """`smooth_probabilities` over a stream of row blocks, holding only `window` rows plus one block: `push` returns
    the rows that are final (their whole window has been seen), `finish` the rest. Equal to smoothing the whole
    sequence at once (tested)."""

    def __init__(self, window: int, mode: str):
        smoothing_kernel(window, mode)  # validates
        self.window, self.mode, self.radius = window, mode, window // 2
        self.buffer = None  # rows [start, start + len(buffer)) of the sequence
        self.start = self.emitted = 0

    def push(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        self.buffer = rows if self.buffer is None else np.concatenate([self.buffer, rows])
        ready = self.start + len(self.buffer) - self.radius
        if ready <= self.emitted:
            return self.buffer[:0]
        smoothed = smooth_probabilities(self.buffer, self.window, self.mode)
        out = smoothed[self.emitted - self.start:ready - self.start]
        self.emitted = ready
        keep_from = max(self.start, ready - self.radius)  # left context of the next rows
        self.buffer, self.start = self.buffer[keep_from - self.start:], keep_from
        return out

    def finish(self) -> np.ndarray:
        if self.buffer is None:
            return np.zeros((0, 0))
        out = smooth_probabilities(self.buffer, self.window, self.mode)[self.emitted - self.start:]
        self.emitted += len(out)
        self.buffer = self.buffer[:0]
        return out


class NeighbourFill:
    """Rows of frames without a usable face take the prediction of the nearest earlier frame with a face; those
    before the first face wait for it. If a video has no face at all, its frames keep their own predictions."""

    def __init__(self):
        self.last = None
        self.pending = []
        self.width = 0

    def push(self, rows: np.ndarray, has_face: np.ndarray) -> np.ndarray:
        self.width = rows.shape[1]
        out = []
        for row, ok in zip(rows, has_face):
            if ok:
                if self.pending:
                    out.extend([row] * len(self.pending))
                    self.pending = []
                self.last = row
                out.append(row)
            elif self.last is not None:
                out.append(self.last)
            else:
                self.pending.append(row)
        return np.array(out, dtype=np.float64).reshape(len(out), self.width)

    def finish(self) -> np.ndarray:
        out, self.pending = self.pending, []
        return np.array(out, dtype=np.float64).reshape(len(out), self.width)


class TrackSmoother:
    """Smoothing within each track of a multi-face stream, never across two: rows arrive in frame order, each of one
    track (or of none: a frame without a face), and come back in the same order once smoothed over their own track's
    rows (`StreamingSmoother` per track). A track unseen for more than half a window is finished there: when the
    person comes back, smoothing starts again, as at the start of a video. Holds about a window of rows per track."""

    def __init__(self, window: int, mode: str):
        smoothing_kernel(window, mode)  # validates
        self.window, self.mode, self.radius = window, mode, window // 2
        self.smoothers, self.waiting, self.last_seen = {}, {}, {}
        self.queue = deque()  # [item, smoothed, ready] in arrival order

    def push(self, frame: int, track, row, item) -> list:
        """Add one row (`row` None: nothing to smooth, as for a frame without a face); the (item, smoothed row or
        None) pairs that are now final, in arrival order."""
        entry = [item, None, track is None or row is None]
        self.queue.append(entry)
        if not entry[2]:
            if track not in self.smoothers:
                self.smoothers[track], self.waiting[track] = StreamingSmoother(self.window, self.mode), deque()
            self.waiting[track].append(entry)
            self._settle(track, self.smoothers[track].push(np.asarray(row, dtype=np.float64)[None]))
            self.last_seen[track] = frame
        for gone in [t for t, seen in self.last_seen.items() if frame - seen > self.radius]:
            self._end(gone)
        return self._ready()

    def finish(self) -> list:
        for track in list(self.smoothers):
            self._end(track)
        return self._ready()

    def _settle(self, track, rows) -> None:
        for smoothed in rows:
            entry = self.waiting[track].popleft()
            entry[1], entry[2] = smoothed, True

    def _end(self, track) -> None:
        self._settle(track, self.smoothers.pop(track).finish())
        del self.waiting[track], self.last_seen[track]

    def _ready(self) -> list:
        out = []
        while self.queue and self.queue[0][2]:
            item, smoothed, _ = self.queue.popleft()
            out.append((item, smoothed))
        return out


def smooth(results, window: int, mode: str, fill: bool = True, tracked: bool = False):
    """The smoothing stage of the loop over a video's `FrameResult`s (a list, or an iterable of them): each comes
    back, in order, with `smoothed` (a copy: results kept by a caller can be smoothed again with another window).

    One face a frame (`tracked=False`): with `fill`, the frames without a usable face first take the nearest
    earlier face frame's outputs (`NeighbourFill`), then every frame's row is smoothed (`StreamingSmoother`).
    Tracked faces: each person's rows within their own track (`TrackSmoother`); a frame without a face has no row
    and passes through. Window 1 leaves the (filled) rows as they are."""
    results = list(results)
    for batch in smooth_batches([results], window, mode, fill, tracked):
        yield from batch


def smooth_batches(batches, window: int, mode: str, fill: bool = True, tracked: bool = False):
    """`smooth` over a stream of batches of results (the loop's): for each batch, the results that are now final
    (their whole window has been seen), as a list; holds about a window of rows. Rows are smoothed a batch at a time,
    as `StreamingSmoother` takes them."""
    smoothing_kernel(window, mode)  # checked before the first result
    if tracked:
        return _smooth_tracks(batches, window, mode)
    return _smooth_frames(batches, window, mode, fill)


def _smooth_frames(batches, window: int, mode: str, fill: bool):
    filler, smoother = NeighbourFill() if fill else None, StreamingSmoother(window, mode)
    waiting: deque[FrameResult] = deque()  # results whose smoothed row is not final yet

    def settle(rows) -> list:
        return [waiting.popleft().with_(smoothed=smoothed) for smoothed in (smoother.push(rows) if len(rows) else ())]

    for batch in batches:
        if not batch:
            continue
        waiting.extend(batch)
        rows = np.stack([result.raw for result in batch]).astype(np.float64, copy=False)
        ready = settle(filler.push(rows, np.array([result.has_face for result in batch])) if filler else rows)
        if ready:
            yield ready
    ready = settle(filler.finish()) if filler else []
    ready += [waiting.popleft().with_(smoothed=smoothed) for smoothed in smoother.finish()]
    if ready:
        yield ready


def _smooth_tracks(batches, window: int, mode: str):
    smoother = TrackSmoother(window, mode)
    for batch in batches:
        ready = [item.with_(smoothed=smoothed) for result in batch
                 for item, smoothed in smoother.push(result.frame, result.track, result.raw, result)]
        if ready:
            yield ready
    ready = [item.with_(smoothed=smoothed) for item, smoothed in smoother.finish()]
    if ready:
        yield ready
