"""Inference split across processes: under `accelerate launch` (several processes, GPUs or machines), each process
takes its share of the inputs, writes its own videos (each renamed into place when finished, as in one process),
and the main process writes what covers them all once every process is done.

    accelerate launch -m emotic.inference.predict MODEL INPUT... --output_dir OUT
    accelerate launch -m emotic.inference.features MODEL INPUT... --output_dir FEATS

Without a launcher (or with one process) it is the single process, and nothing distributed is imported.
"""

import os
import sys

from emotic.inference.sources import UnreadableInput


class Processes:
    """This process's place among the processes of a launch: `index` of `count`, `is_main` for index 0."""

    def __init__(self):
        self.state = None
        self.index, self.count = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # set by `accelerate launch` (torchrun) for every process
            import torch
            from accelerate import PartialState

            # the process group: gloo on CPUs (without `cpu=True` Accelerate would run each CPU process alone), NCCL
            # on GPUs
            cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
            self.state = PartialState(cpu=cpu)
            self.index, self.count = self.state.process_index, self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def device(self) -> str | None:
        """The device of this process under a launch (its own GPU), else None (the command's default)."""
        if self.state is None:
            return None
        return "cpu" if self.state.device.type == "cpu" else str(self.state.device)

    def share(self, items: list) -> list:
        """This process's inputs: every `count`-th from `index` (all of them for one process)."""
        return items[self.index::self.count]

    def wait(self) -> None:
        """Every process reaches this point before any goes on."""
        if self.state is not None:
            self.state.wait_for_everyone()

    def gather(self, item) -> list:
        """`item` of every process, in process order, on every process."""
        if self.state is None:
            return [item]
        from accelerate.utils import gather_object

        return gather_object([item])

    def close(self) -> None:
        """Wait for every process, then close the process group (see `finish_distributed`)."""
        if self.state is not None:
            from emotic.training.trainer import finish_distributed

            finish_distributed()


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


def work_share(processes: Processes, sources, finished, count_finished, write, earlier: dict, overwrite: bool) -> dict:
    """This process's share of `sources`, done: an input whose output `finished(source)` exists is counted by
    `count_finished` and skipped (unless `overwrite`; still partial if the `earlier` summary said so), the others
    written by `write(source)` (its counts; `incomplete`: why part is missing); an unreadable input is skipped and
    said. The share's record for `merge_shares`."""
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
        except UnreadableInput as error:
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
