"""Live sources: a network stream (`rtsp://`, `http(s)://` MPEG-TS, HLS or MJPEG, `udp://`, `srt://`), a capture
device (`/dev/video0`, with an input format PyAV's FFmpeg has) or standard input (`-`), decoded by PyAV in a thread
of their own while the loop takes the newest frames.

A frame's latency runs from its decoding to its row. With `max_latency`, a frame the model would take more than that
many seconds after it was decoded is dropped instead (`DROPPED_FRAME`: a row with status `dropped`, no image held),
and a batch holds no more frames than the loop can write in time (`Pace`): the model takes the newest frames, falls
behind by at most `max_latency`, and memory stays bounded. At most `capacity` decoded frames wait; while they are
not late the reader waits too (a producer faster than the model, such as a file piped in, is held back). Without
`max_latency` nothing is dropped: the reader waits for the model (a recorded stream that must be complete).

`stop()` ends the stream as if it had ended (what Ctrl-C and SIGTERM do in `emotic predict`): the frames read so far
go through the loop, and every file is written complete for them.
"""

import errno
import functools
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from emotic.inference.results import DROPPED_FRAME, has_image
from emotic.inference.sources import (
    DEFAULT_FPS,
    STDIN,
    Frames,
    Source,
    UnreadableInput,
    VideoHeader,
    note_size,
)

OPEN_TIMEOUT = 10.0  # seconds to open a network stream or wait for its data before it counts as gone


@dataclass
class LiveOptions:
    max_latency: float | None = 2.0  # seconds; None: drop nothing
    source_format: str | None = None  # FFmpeg's input format (`mpegts`, `v4l2`, ...); None: probed
    reconnect: int = 0  # times in a row a stream that ends or breaks off is opened again
    capacity: int = 64  # decoded frames held at most while the model is busy


class LiveFrames:
    """A live source being read (see the module's docstring): `frames()` is what the loop takes; `latency(index)`
    the seconds from a frame's decoding to now (call it when its row is written); `dropped`, the frames dropped;
    `stop()` ends it."""

    def __init__(self, source: Source, options: LiveOptions, clock=time.monotonic):
        self.source, self.options, self.clock = source, options, clock
        self.queue: deque = deque()  # [location, image or DROPPED_FRAME, when it was decoded]
        self.held = 0  # images in the queue (dropped frames hold none)
        self.arrived: dict[int, float] = {}  # frame index -> when it was decoded, until its row is written
        self.dropped = 0
        self.notes: dict = {}
        self.finished = False
        self.stopped = threading.Event()
        self.stopped_by: str | None = None  # what ended the stream before its end (`SIGINT`, `SIGTERM`), if anything
        self.changed = threading.Condition()
        self.pace = Pace(options.max_latency)
        container = self._open()
        self.fps = self.notes.get("fps")
        self.thread = threading.Thread(target=self._read_until_done, args=(container,),
                                       name=f"emotic-live-{source.name}", daemon=True)
        self.thread.start()

    # -- the reader ------------------------------------------------------------------------------------------------

    def _open(self):
        import av

        url = self.source.url
        # RTSP over TCP first (no packets lost on a busy network); a server that does not offer it (EPROTONOSUPPORT:
        # its answer to the request) is asked again for RTP over UDP, FFmpeg's default
        tries = [{"rtsp_transport": "tcp"}, {}] if url.lower().startswith(("rtsp://", "rtsps://")) else [{}]
        for options in tries:
            try:
                target = sys.stdin.buffer if url == STDIN else url
                container = av.open(target, format=self.options.source_format, options=options, timeout=OPEN_TIMEOUT)
                break
            except (av.FFmpegError, OSError) as error:  # before ValueError: FFmpeg's invalid-data error is one too
                if options is tries[-1] or getattr(error, "errno", None) != errno.EPROTONOSUPPORT:
                    raise UnreadableInput(f"{url}: cannot be opened as a live video ({error})") from None
            except ValueError as error:  # an input format FFmpeg does not have
                raise UnreadableInput(f"{url}: {error}; FFmpeg's input formats here: see `python -c \"import av; "
                                      f"print(sorted(av.formats_available))\"`") from None
        if not container.streams.video:
            container.close()
            raise UnreadableInput(f"{url}: contains no video frames (no video stream)")
        stream = container.streams.video[0]
        self.notes["fps"] = VideoHeader.read(container, stream).fps
        return container

    def _read(self, container) -> None:
        """Decode frames into the queue until the stream ends (or is stopped). With `reconnect`, a stream that ends
        or breaks off is opened again, up to `reconnect` times in a row with growing pauses (0.5 s doubling to 8 s);
        the frames its gap held are queued as missing (their time from the timestamps where those go on, else from
        the clock), so that frame numbers and times stay those of the stream."""
        import av

        index, attempts, last = 0, 0, None  # last: (timestamp, clock) of the latest frame
        while True:
            broken = None  # why decoding failed, if it did (else the stream ended)
            try:
                with container:
                    for frame in self._decoded(container):
                        if self.stopped.is_set():
                            return
                        image, now = frame.to_image(), self.clock()
                        note_size(self.notes, image.size, index)
                        if last is not None and attempts:  # the first frame after a reconnection: fill the gap
                            index = self._missing(index, frame.time, now, last)
                        attempts = 0
                        index += 1
                        last = (frame.time, now)
                        self._put([f"{self.source.name}/{index:05d}.jpg", image, now])
            except av.FFmpegError as error:
                broken = f"{self.source.url}: the stream broke off after {index} frames ({error})"
            finally:
                self.notes["frames_read"] = index
            container, reopening = None, None
            retries = 0 if self.source.url == STDIN else self.options.reconnect  # a pipe that ends has ended
            while container is None and attempts < retries:
                if self.stopped.wait(min(8.0, 0.5 * 2 ** attempts)):  # the pause, cut short by stop()
                    return
                attempts += 1
                try:
                    container = self._open()
                    self.notes["reconnections"] = self.notes.get("reconnections", 0) + 1
                except UnreadableInput as error:
                    reopening = str(error)
            if container is None:
                if self.stopped.is_set():
                    return
                tried = f"; opened again {attempts} times in vain ({reopening})" if attempts else ""
                if broken:  # broken off: what came after is missing from the output
                    self.notes["error"] = broken + tried
                elif attempts:  # it ended and did not come back: gone, said, not an error
                    self.notes["gone"] = f"{self.source.url}: the stream ended after {index} frames{tried}"
                return

    def _decoded(self, container):
        """The video frames of `container`, packet by packet: a packet the decoder refuses (a corrupt one, or one
        before the first key frame of a stream joined mid-way) is skipped and counted (`notes["corrupt_packets"]`),
        not taken for the end of the stream. Errors of the connection still end it."""
        import av

        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.InvalidDataError, av.ArgumentError) as error:  # refused by the decoder (EINVAL, bad data)
                self.notes["corrupt_packets"] = self.notes.get("corrupt_packets", 0) + 1
                self.notes.setdefault("first_corrupt", str(error))
                continue
            yield from frames

    def _missing(self, index: int, stamp, now: float, last) -> int:
        """Queue the frames a reconnection's gap held (status missing); the new frame index."""
        fps = self.fps or DEFAULT_FPS
        seconds = now - last[1]
        if stamp is not None and last[0] is not None and 0 < stamp - last[0] <= seconds + 5:
            seconds = stamp - last[0]  # the stream's own clock went on: its gap, not the clock's
        for _ in range(max(0, round(seconds * fps) - 1)):
            index += 1
            self._put([f"{self.source.name}/{index:05d}.jpg", None, now])
        return index

    def _end(self) -> None:
        with self.changed:
            self.finished = True
            self.changed.notify_all()

    def _read_until_done(self, container) -> None:
        try:
            self._read(container)
        finally:
            self._end()

    def _put(self, item) -> None:
        with self.changed:
            while _holds(item) and self.held >= self.options.capacity and not self.stopped.is_set():
                if not self._drop_late():
                    self.changed.wait(0.05)  # on time: the producer waits for the model (back-pressure)
            self.queue.append(item)
            self.held += _holds(item)
            self.changed.notify_all()

    def _late(self, item) -> bool:
        latency = self.options.max_latency
        return latency is not None and _holds(item) and self.clock() - item[2] > latency

    def _drop_late(self) -> bool:
        """Drop the oldest waiting frame if it is late; whether one was."""
        for item in self.queue:
            if _holds(item):
                if self._late(item):
                    item[1] = DROPPED_FRAME
                    self.held -= 1
                    self.dropped += 1
                    return True
                return False
        return False

    # -- what the loop takes ---------------------------------------------------------------------------------------

    def take(self, count: int, start: int) -> list:
        """Frames (location, image or `DROPPED_FRAME`), up to `count` that hold an image: waits for the first, then
        takes what has arrived, so that a batch never waits for frames still to come. With `max_latency`, the oldest
        frames are dropped here while `Pace` finds them too late to be written in time in a batch with those after
        them (the newest is always taken).
        `start`: the index of the first (for their latencies). [] once the stream has ended (or was stopped) and
        everything was taken."""
        with self.changed:
            while not self.queue and not self.finished and not self.stopped.is_set():
                self.changed.wait(0.1)
            now = self.clock()
            drop, keep = self.pace.select([now - item[2] for item in self.queue if _holds(item)], count)
            taken, kept = [], 0
            while self.queue and kept < keep:  # dropped frames cost nothing: they do not count
                item = self.queue.popleft()
                if _holds(item):
                    self.held -= 1
                    if drop:
                        item[1] = DROPPED_FRAME
                        self.dropped += 1
                        drop -= 1
                    else:
                        kept += 1
                self.arrived[start + len(taken)] = item[2]
                taken.append((item[0], item[1]))
            if not keep:  # only frames without an image wait (missing ones, queued after a reconnection)
                while self.queue:
                    item = self.queue.popleft()
                    self.arrived[start + len(taken)] = item[2]
                    taken.append((item[0], item[1]))
            self.pace.taken(kept)
            self.changed.notify_all()
        return taken

    def timed(self, stage: str, frames: int, seconds: float) -> None:
        """The loop's time for a batch in one of its stages (`Frames.timed`), for the drop rule (`Pace`)."""
        with self.changed:
            self.pace.timed(stage, frames, seconds)

    def latency(self, index: int) -> float | None:
        """Seconds from frame `index`'s decoding to now (call it when its row is written); forgets the frame."""
        arrived = self.arrived.pop(index, None)
        return None if arrived is None else self.clock() - arrived

    def stop(self, why: str | None = None) -> None:
        """End the stream; `why` (e.g. `SIGINT`) is kept as `stopped_by` when it is the first reason given."""
        if why and self.stopped_by is None:
            self.stopped_by = why
        self.stopped.set()
        with self.changed:
            self.changed.notify_all()

    def frames(self, batch_size: int) -> Frames:
        """The `Frames` the loop runs: items taken a batch at a time by `take` (`Frames.take`)."""
        return Frames(self.source.name, (), self.fps, True, self.notes, take=functools.partial(self.take, batch_size),
                      timed=self.timed)


class Pace:
    """The drop rule of a live source: which of the waiting frames the loop takes now, and which it drops.

    The loop prepares a batch (faces, views) while the model runs the one before (`runtime.pipelined`), so a batch
    of `k` frames taken now, while the model holds one of `last`, is written after `max(prepare(k), model(last))`
    and then `model(k)` seconds. Each stage's time is a line, `fixed + each * frames`, fitted to the times the loop
    reports (`timed`), recent batches weighing most; each stage's first batch (set-up, first calls) is left out.
    The oldest frames are dropped until those that wait from there on (at most a batch) are written within
    `max_latency`, with a margin of twice the spread of those two times about their lines; the newest is always
    taken (the loop goes on). A batch takes every frame kept, up to `--batch_size` (the rest wait for the next), so a
    frame is never left waiting for a batch it would reach late. A batch holds at most twice the frames of the
    largest batch both stages have been timed on (one frame until then): the lines are not stretched far beyond what
    they were fitted to (on 2 cores, both stages slow down once both run large batches side by side)."""

    STAGES = ("prepare", "model")

    def __init__(self, max_latency: float | None, memory: float = 0.8):
        self.max_latency, self.memory = max_latency, memory
        self.last = 0  # frames with an image in the batch taken last (the one the model runs while the next is taken)
        self.lines = {stage: (0.0, 0.0, 0.0) for stage in self.STAGES}  # fixed, each, spread (seconds)
        self.timed_batches = dict.fromkeys(self.STAGES, 0)
        self.largest = dict.fromkeys(self.STAGES, 0)  # the most frames a batch timed in each stage held
        self._sums = {stage: np.zeros(6) for stage in self.STAGES}  # count, sizes, times, sizes², sizes x times, times²

    def timed(self, stage: str, frames: int, seconds: float) -> None:
        """A batch of `frames` frames with an image took `seconds` in `stage` (`prepare` or `model`)."""
        self.timed_batches[stage] += 1
        if self.timed_batches[stage] == 1:
            return
        self.largest[stage] = max(self.largest[stage], frames)
        self._sums[stage] = self.memory * self._sums[stage] + np.array(
            [1.0, frames, seconds, frames * frames, frames * seconds, seconds * seconds])
        self.lines[stage] = _line(self._sums[stage])

    def select(self, ages: list[float], count: int) -> tuple[int, int]:
        """Of the waiting frames that hold an image, oldest first (`ages`: seconds since each was decoded), how many
        of the oldest to drop and how many after them to take (at most `count`)."""
        if self.max_latency is not None:  # no more than twice the frames of any batch timed: the lines hold there
            count = min(count, max(1, 2 * min(self.largest.values())))
        first = 0
        while first < len(ages) - 1 and not self._in_time(ages[first], min(count, len(ages) - first)):
            first += 1
        return first, min(count, len(ages) - first)

    def taken(self, frames: int) -> None:
        """A batch of `frames` frames with an image was taken."""
        self.last = frames

    def seconds(self, stage: str, frames: int) -> float:
        """The time `stage` takes for a batch of `frames`, by its line."""
        fixed, each, _ = self.lines[stage]
        return fixed + each * frames

    def _in_time(self, age: float, batch: int) -> bool:
        """Whether a frame `age` seconds old, the oldest of a batch of `batch`, is written within `max_latency`."""
        if self.max_latency is None:
            return True
        written = max(self.seconds("prepare", batch), self.seconds("model", self.last)) + self.seconds("model", batch)
        prepare, model = self.lines["prepare"][2], self.lines["model"][2]  # the spreads of the two times added
        margin = max(2 * float(np.hypot(max(prepare, model), model)), 0.1 * written)
        return age + written + margin <= self.max_latency


def _line(sums) -> tuple[float, float, float]:
    """`seconds = fixed + each * frames` fitted to weighted sums (count, frames, seconds, frames², frames x seconds,
    seconds²): (fixed, each, spread: the root mean square residual), neither below 0; batch sizes that hardly differ
    give `each` alone."""
    count, sizes, times, squares, products, times_squared = sums / sums[0]
    spread, covariance = squares - sizes * sizes, products - sizes * times
    each = covariance / spread if spread > 0.25 else 0.0
    fixed = times - each * sizes
    if each <= 0 or fixed < 0:  # no slope to be seen, or one steeper than the times allow
        fixed, each = (0.0, times / sizes) if sizes > 0 else (times, 0.0)
    residual = times_squared - 2 * (fixed * times + each * products) + fixed ** 2 + 2 * fixed * each * sizes \
        + each ** 2 * squares
    return float(fixed), float(each), float(np.sqrt(max(residual, 0.0)))


def _holds(item) -> bool:
    """Whether a queued frame holds a decoded image (not a dropped or missing one)."""
    return has_image(item[1])


def latency_summary(latencies: list[float]) -> dict:
    """p50 and p95 of per-frame latencies (seconds), for the summary."""
    if not latencies:
        return {}
    p50, p95 = np.percentile(np.asarray(latencies), [50, 95])
    return {"latency_p50": round(float(p50), 3), "latency_p95": round(float(p95), 3)}
