"""The `emotic` command: `emotic synth|pretrain|finetune|finetune-temporal|predict|features|evaluate|export|push|
export-onnx|app|ablate|demo ...`; each forwards its arguments."""

import ctypes
import os
import sys

COMMANDS = {
    "synth": ("emotic.training.synthetic", "write a generated dataset in Aff-Wild2's layout"),
    "pretrain": ("emotic.training.pretrain", "MAE pre-training on face folders"),
    "finetune": ("emotic.training.finetune", "fine-tune the dual-view classifier"),
    "finetune-temporal": ("emotic.training.temporal", "train a temporal head on a frame model's features"),
    "predict": ("emotic.inference.predict", "expressions of videos, frame folders and images, smoothed over time"),
    "features": ("emotic.inference.features", "per-frame embeddings (the head's input) as Parquet, per video"),
    "evaluate": ("emotic.inference.evaluate", "metrics and a report of a model on a labelled dataset"),
    "export": ("emotic.hub_cards.export", "a Hub-ready folder (weights, config, code, card) from a run"),
    "push": ("emotic.hub_cards.push", "upload an exported folder to the Hub in one commit"),
    "export-onnx": ("emotic.hub_cards.export_onnx", "the classifier as an ONNX graph, checked in ONNX Runtime"),
    "app": ("emotic.app", "a web demo: photos and videos as the model sees them (Gradio)"),
    "ablate": ("emotic.ablate", "fine-tune and evaluate every fusion strategy and layer, as a table"),
    "demo": ("emotic.demo", "the main job end to end on generated data"),
}


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# blocks up to this size come from the heap, and the heap is trimmed only beyond this much free memory
KEPT_MEMORY_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Keep the memory of freed tensors for the next batch instead of handing it back to the system.

    glibc's malloc serves a large block (at most 32 MiB, the ceiling of its adaptive threshold) with a fresh mmap and
    unmaps it when freed, so every batch of a model the size of ViT-B pays page faults for memory it just gave back:
    on a 2-core CPU 11-16% of `emotic predict`'s CPU time was the kernel's. With blocks up to 1 GiB taken from the
    heap and the heap trimmed only beyond 1 GiB free, the process stays near its peak, which the batch bounds
    (the job's memory does not grow with its length). Done only for the `emotic` command's own process, never on
    import; left alone where the user chose (glibc's `MALLOC_*` or `GLIBC_TUNABLES` settings, an allocator in
    `LD_PRELOAD`) and where the C library has no `mallopt`. True when applied."""
    if any(key.startswith("MALLOC_") for key in os.environ) or "GLIBC_TUNABLES" in os.environ or \
            os.environ.get("LD_PRELOAD"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS), no dlopen(NULL) (Windows)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # some glibc versions refuse a threshold above 32 MiB (the adaptive ceiling): take the largest one accepted
    if not any(mallopt(_M_MMAP_THRESHOLD, size) for size in (KEPT_MEMORY_BYTES, 32 << 20)):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, KEPT_MEMORY_BYTES))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:17s} {summary}" for name, (_, summary) in COMMANDS.items()]
        print("usage: emotic COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    keep_freed_memory()
    module = importlib.import_module(COMMANDS[argv[0]][0])
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
