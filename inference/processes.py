"""Inference split across processes: under `accelerate launch` (several processes, GPUs or machines), each process
takes its share of the inputs, writes its own videos (each renamed into place when finished, as in one process),
and the main process writes what covers them all once every process is done (`emotic.inference.outputs`).

    accelerate launch -m emotic.inference.predict MODEL INPUT... --output_dir OUT
    accelerate launch -m emotic.inference.features MODEL INPUT... --output_dir FEATS

Without a launcher (or with one process) it is the single process, and nothing distributed is imported.
"""

import os


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
