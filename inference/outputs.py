"""The output folder of an inference command (`emotic predict`, `emotic features`): claimed by one run at a time,
resumable, never half-written.

- `claim_output`: the folder's lock (`filelock`, released when the process ends, also when it is killed), the
  partial files a killed run left removed, the run's settings recorded (a folder made with other settings is
  refused unless `--overwrite`);
- `written_when_complete`: a video's file written under a name of this process's own and renamed into place when
  complete, so that a file in place is always whole and a restarted run skips it;
- `work_share` and `merge_shares`: each process's share of the inputs (under `accelerate launch`) done and recorded,
  then one `summary.json` for them all; `report_problems` says what was skipped or is partial.
"""

import contextlib
import json
import os
import sys
from pathlib import Path

from emotic.inference.sources import UnreadableInput

LOCK_NAME = ".emotic-predict.lock"


class OutputRefused(ValueError):
    """The output folder cannot be used by this run (in use, or holding another run's outputs): nothing written."""


def lock_output(output: Path, command: str):
    """An exclusive lock on the output folder, held until it is released or the process ends; `OutputRefused`
    when another process holds it."""
    from filelock import FileLock, Timeout

    path = output / LOCK_NAME
    # never opened through a link: filelock 3.x (3.29.7 still) opens the lock with O_TRUNC, emptying what it follows
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OutputRefused(f"{path}: is not a plain file, so it cannot be this folder's lock; remove it or choose "
                            f"another --output_dir")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputRefused(f"{output} is in use by another {command} (lock {output / LOCK_NAME}); wait for it to "
                            f"finish or choose another --output_dir") from None
    except OSError as error:  # a link put there since, or a folder that cannot be written
        raise OutputRefused(f"{path}: cannot be this folder's lock ({error}); remove it or choose another "
                            f"--output_dir") from None
    return lock


def claim_output(output: Path, files_dir: Path, partial_files: str, settings_file: str, settings: dict,
                 overwrite: bool, what: str, command: str):
    """The main process's claim on an output folder, before any process works in it: its lock (returned: hold it
    until the end; another run is refused), the partial files (`partial_files` in `files_dir`) a killed run left,
    removed, and the run's settings kept (`keep_settings`). `OutputRefused` when the folder cannot be used."""
    files_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_output(output, command)
    for stale in files_dir.glob(partial_files):  # left by a run that was killed mid-video (we hold the lock)
        stale.unlink()
    keep_settings(output / settings_file, settings, overwrite, what)
    return lock


def keep_settings(path: Path, settings: dict, overwrite: bool, what: str) -> None:
    """Record the settings of a run in `path`; a folder holding `what` made with other settings is refused (unless
    `overwrite`), naming the settings that changed, so that one folder never mixes two runs."""
    if path.is_file() and not overwrite:
        previous = json.loads(path.read_text())
        if previous != settings:
            changed = sorted(key for key in settings if previous.get(key) != settings[key])
            raise OutputRefused(f"{path.parent} holds {what} made with other settings ({', '.join(changed)}); pass "
                                f"--overwrite to redo them or choose another --output_dir")
    path.write_text(json.dumps(settings, indent=2))


def read_summary(path: Path) -> dict:
    """An earlier run's `summary.json`, or nothing."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def written_when_complete(final: Path):
    """The path to write `final` under: this process's own partial file (`<final>.<pid>.partial`, never another
    process's), renamed to `final` when the block ends without an error and removed when it does not."""
    partial = final.with_name(f"{final.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, final)  # only a finished video has its file: a restarted run skips it
    finally:
        partial.unlink(missing_ok=True)


def merge_shares(shares: list, sources, settings: dict, count_keys=("frames",)) -> dict:
    """The run's `summary.json` from every process's share (`videos`: counts per finished input, `skipped` and
    `incomplete`: reasons, `already`: inputs finished by an earlier run), in the order of the inputs, with totals of
    `count_keys` over the videos."""
    summary = {"settings": settings, "videos": {}, "skipped": {}, "incomplete": {}}
    for source in sources:
        for key in ("videos", "skipped", "incomplete"):
            for share in shares:
                if source.name in share[key]:
                    summary[key][source.name] = share[key][source.name]
    totals = {key: sum(counts.get(key, 0) for counts in summary["videos"].values()) for key in count_keys}
    summary["totals"] = {**totals, "videos": len(summary["videos"]), "skipped_videos": len(summary["skipped"]),
                         "already_done": sum(share["already"] for share in shares),
                         "incomplete_videos": len(summary["incomplete"]), "processes": len(shares)}
    return summary


def work_share(processes, sources, finished, count_finished, write, earlier: dict, overwrite: bool,
               skip=(UnreadableInput,)) -> dict:
    """This process's share of `sources` (`processes.share`), done: an input whose output `finished(source)`
    exists is counted by `count_finished` and skipped (unless `overwrite`; still partial if the `earlier` summary
    said so), the others written by `write(source)` (its counts; `incomplete`: why part is missing); an input whose
    writing raises one of `skip` (unreadable, by default) is skipped and said. The share's record for
    `merge_shares`."""
    mine = {"videos": {}, "skipped": {}, "incomplete": {}, "already": 0}
    for source in processes.share(sources):
        done = finished(source)
        if done.is_file() and not overwrite:
            mine["videos"][source.name] = count_finished(done)
            if source.name in earlier.get("incomplete", {}):  # still partial: say so again
                mine["incomplete"][source.name] = earlier["incomplete"][source.name]
            mine["already"] += 1
            continue
        try:
            counts = write(source)
        except skip as error:
            mine["skipped"][source.name] = str(error)
            print(f"skipped {source.name}: {error}", file=sys.stderr)
            continue
        if "incomplete" in counts:
            mine["incomplete"][source.name] = counts.pop("incomplete")
            print(f"incomplete {source.name}: {mine['incomplete'][source.name]}", file=sys.stderr)
        mine["videos"][source.name] = counts
    return mine


def report_problems(summary: dict, summary_path, partial: str) -> int:
    """Say on standard error which inputs were skipped and which are `partial` ("predicted only in part"), pointing
    at the reasons in `summary_path`: the exit status, 1 when there is any, else 0."""
    if summary["skipped"]:
        print(f"{len(summary['skipped'])} inputs could not be read: {', '.join(summary['skipped'])} "
              f"(reasons in {summary_path})", file=sys.stderr)
    if summary["incomplete"]:
        print(f"{len(summary['incomplete'])} videos were {partial}: {', '.join(summary['incomplete'])} "
              f"(reasons in {summary_path})", file=sys.stderr)
    return 1 if summary["skipped"] or summary["incomplete"] else 0
