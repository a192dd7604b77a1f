"""emotic on real expression data: FER+ through emotic's own commands, against the plain loops a user would write.

    python benchmarks/bench_real_faces.py --ferplus_dir FERPLUS --output_dir OUT --preset cpu [--fer2013_dir FER2013]
        [--seeds 0 1] [--jobs 2]
    python benchmarks/bench_real_faces.py --smoke --output_dir OUT   # generated 48x48 grey faces: checks the script

FERPLUS is the folder `write_folders.py ferplus FERPLUS` writes beside the packed data (`train/`, `validation/`,
`test/`, one sub-folder per class, 48x48 grey PNGs); FER2013 (`write_folders.py fer2013`) adds its training images
to the unlabelled faces of MAE pre-training. Every row trains on FER+ `train` (contempt mapped onto ABAW's Other)
and is scored on FER+ `test` (3,137 faces), with the same augmentation, batch size and number of epochs:

- `cnn`: a plain 3-block CNN at 48 px, the 40-line PyTorch loop a sceptical user writes first (cross-entropy, AdamW);
- `vit_loop`: the same loop around timm's VisionTransformer of emotic's encoder size (the preset's width, depth,
  heads, patch and resolution), i.e. what emotic adds to a ViT of that size;
- `emotic_scratch_none`: `emotic finetune` from random weights, no auxiliary view (`--fusion_strategy none`);
- `mae_pretrain`: `emotic pretrain` on the unlabelled training faces (FER+ train, and FER2013 train if given): once,
  shared by the three rows below (its seed is the first of `--seeds`);
- `emotic_mae_none`, `emotic_mae_attention`, `emotic_mae_concat_linear`: `emotic finetune` from that encoder, without
  the auxiliary view, with attention fusion (the paper's), and with concat_linear; FER+ faces are taken as aligned
  crops (`--geometry template`: the template's boxes);
- `emotic_mae_none_found`, `emotic_mae_attention_found` (with `--rows all`, not in the default matrix): the same with
  each face found by the detector (`--geometry auto`: found once per image, its landmarks moved with each
  augmentation), so the auxiliary view lands on the eyes, nose and mouth of faces the template misses.

Each row runs once per seed in its own folder (`OUT/<row>/seed-<n>/`, the model kept) and counts as finished once
its `result.json` is written: started again, the benchmark skips finished rows and emotic's commands resume from
their last checkpoint (the plain loops from their last epoch). `--jobs N` runs N workers side by side, each on its
share of the cores (rows are claimed with a lock, so two workers never run the same one). Outputs: `real_faces.md`
(mean and spread over seeds of accuracy, macro-F1 and wall time, per-class F1, the machine and budget),
`real_faces.json` (every number, with each row's confusion matrix) and `real_faces.png`.

Presets: `cpu` (emotic's `tiny` encoder at 64 px, 10 fine-tuning epochs, 15 pre-training epochs; its whole matrix
with 2 seeds and `--jobs 2` is sized for about 2 hours on 2 cores) and `gpu` (the `small` encoder, ViT-S/16 at
112 px, 30 epochs, 100 pre-training epochs, bf16). Numbers from generated faces (`--smoke`) say nothing about real
ones.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FERPLUS_CLASSES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
LABEL_MAP = {"contempt": "Other"}  # FER+'s eighth class is ABAW's Other
AUGMENTATION = dict(crop_scale=0.8, rotation=10.0, hflip=True, color_jitter=0.2, erasing=0.25)

PRESETS = {
    "cpu": dict(model_size="tiny", image_size=64, patch_size=8, width=64, depth=4, heads=4, mlp=128, epochs=10,
                pretrain_epochs=15, batch_size=64, learning_rate=1e-3, pretrain_learning_rate=1.5e-3,
                pretrain_batch_size=128, bf16=False),
    "gpu": dict(model_size="small", image_size=112, patch_size=16, width=384, depth=12, heads=6, mlp=1536, epochs=30,
                pretrain_epochs=100, batch_size=128, learning_rate=5e-4, pretrain_learning_rate=1.5e-4 * 2,
                pretrain_batch_size=512, bf16=True),
    "smoke": dict(model_size="tiny", image_size=64, patch_size=8, width=64, depth=4, heads=4, mlp=128, epochs=1,
                  pretrain_epochs=1, batch_size=16, learning_rate=1e-3, pretrain_learning_rate=1.5e-3,
                  pretrain_batch_size=16, bf16=False),
}
# row -> (fusion strategy, from the MAE encoder, face geometry)
EMOTIC_ROWS = {"emotic_scratch_none": ("none", False, "template"), "emotic_mae_none": ("none", True, "template"),
               "emotic_mae_attention": ("attention", True, "template"),
               "emotic_mae_concat_linear": ("concat_linear", True, "template"),
               "emotic_mae_none_found": ("none", True, "auto"),
               "emotic_mae_attention_found": ("attention", True, "auto")}
ROWS = ["cnn", "vit_loop", "emotic_scratch_none", "emotic_mae_none", "emotic_mae_attention",
        "emotic_mae_concat_linear"]  # the default matrix
ALL_ROWS = [*ROWS, "emotic_mae_none_found", "emotic_mae_attention_found"]
DESCRIPTIONS = {
    "always_neutral": "always the training set's most frequent class (no model)",
    "cnn": "plain loop: 3-block CNN at 48 px",
    "vit_loop": "plain loop: timm ViT of emotic's encoder size",
    "emotic_scratch_none": "emotic from scratch, fusion none",
    "emotic_mae_none": "emotic MAE-pre-trained, fusion none",
    "emotic_mae_attention": "emotic MAE-pre-trained, attention fusion",
    "emotic_mae_concat_linear": "emotic MAE-pre-trained, concat_linear fusion",
    "emotic_mae_none_found": "emotic MAE-pre-trained, fusion none, faces found (`--geometry auto`)",
    "emotic_mae_attention_found": "emotic MAE-pre-trained, attention fusion, faces found (`--geometry auto`)",
}


def emotic_command() -> list[str]:
    return [sys.executable, "-m", "emotic.cli"]


def abaw_index() -> dict:
    """FER+ folder name -> ABAW expression index (the order of every confusion matrix here)."""
    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
    from emotic.training.labels import map_labels

    label2id = {name: index for index, name in enumerate(ABAW_EXPRESSION_LABELS)}
    return map_labels({name: name for name in FERPLUS_CLASSES}, label2id, LABEL_MAP)


# ---------------------------------------------------------------------------------------------------- data


def write_smoke_data(root: Path, per_class: int = 12) -> Path:
    """FER+'s layout with generated 48x48 grey faces (emotic's drawn expressions): train/validation/test."""
    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
    from emotic.training.synthetic import Identity, random_pose, render_face

    index = abaw_index()
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("validation", 4), ("test", 4)):
        for name in FERPLUS_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                image, _ = render_face(index[name], 1.0, Identity.random(rng), random_pose(rng), rng, size=48)
                image.convert("L").save(folder / f"{ABAW_EXPRESSION_LABELS[index[name]]}-{number}.png")
    return root


def read_split(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A split's images (N, 48, 48) uint8 grey and ABAW label indices, for the plain loops."""
    from PIL import Image

    index = abaw_index()
    images, labels = [], []
    for name in FERPLUS_CLASSES:
        for path in sorted((folder / name).glob("*.png")):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("L").resize((48, 48))))
            labels.append(index[name])
    if not images:
        raise SystemExit(f"{folder}: no PNG images in class folders {FERPLUS_CLASSES}; write FER+ with "
                         f"write_folders.py ferplus DIR")
    return np.stack(images), np.asarray(labels)


# ---------------------------------------------------------------------------------------------------- plain loops


def small_cnn(num_classes: int):
    import torch.nn as nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(128, num_classes))


def plain_vit(preset: dict, num_classes: int):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=preset["image_size"], patch_size=preset["patch_size"],
                             embed_dim=preset["width"], depth=preset["depth"], num_heads=preset["heads"],
                             mlp_ratio=preset["mlp"] / preset["width"], num_classes=num_classes, drop_path_rate=0.1)


def plain_loop(row: str, folder: Path, data: Path, preset: dict, seed: int) -> dict:
    """The loop a user writes: torchvision's augmentation, cross-entropy, AdamW with warmup and cosine; a checkpoint
    per epoch (resumed from), then accuracy on the test split."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file
    from torchvision.transforms import v2

    torch.manual_seed(seed)
    train_images, train_labels = read_split(data / "train")
    test_images, test_labels = read_split(data / "test")
    size = 48 if row == "cnn" else preset["image_size"]
    model = small_cnn(8) if row == "cnn" else plain_vit(preset, 8)
    augment = v2.Compose([
        v2.RandomResizedCrop(size, scale=(AUGMENTATION["crop_scale"], 1.0), antialias=True),
        v2.RandomRotation(AUGMENTATION["rotation"]), v2.RandomHorizontalFlip(),
        v2.ColorJitter(AUGMENTATION["color_jitter"], AUGMENTATION["color_jitter"]),
        v2.RandomErasing(AUGMENTATION["erasing"], value="random")])

    def batch_of(images, train: bool):
        x = torch.from_numpy(images).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
        if train:
            x = torch.stack([augment(image) for image in x])
        elif size != 48:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        return (x - 0.5) / 0.5

    steps_per_epoch = math.ceil(len(train_labels) / preset["batch_size"])
    total, warmup = steps_per_epoch * preset["epochs"], max(1, int(0.05 * steps_per_epoch * preset["epochs"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset["learning_rate"], weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, step / total))))
    state_file, start = folder / "checkpoint.pt", 0
    if state_file.exists():  # resume from the last finished epoch
        state = torch.load(state_file, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = state["epoch"]
    for epoch in range(start, preset["epochs"]):
        model.train()
        torch.manual_seed(seed * 1000 + epoch)  # the augmentation draws of this epoch, resumed or not
        order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for begin in range(0, len(order), preset["batch_size"]):
            chosen = order[begin:begin + preset["batch_size"]].numpy()
            loss = F.cross_entropy(model(batch_of(train_images[chosen], True)), torch.from_numpy(train_labels[chosen]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        partial = folder / "checkpoint.pt.partial"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "epoch": epoch + 1}, partial)
        os.replace(partial, state_file)
        print(f"{row} seed {seed}: epoch {epoch + 1}/{preset['epochs']} loss {loss.item():.3f}", flush=True)
    model.eval()
    predictions = []
    with torch.no_grad():
        for begin in range(0, len(test_labels), 256):
            predictions.append(model(batch_of(test_images[begin:begin + 256], False)).argmax(-1))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    load_file(folder / "model.safetensors")  # the kept weights read back
    return scores(torch.cat(predictions).numpy(), test_labels)


def scores(predictions, labels) -> dict:
    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS
    from emotic.training.metrics import expression_metrics

    metrics = expression_metrics(predictions, labels, 8, ABAW_EXPRESSION_LABELS)
    return {key: metrics[key] for key in ("accuracy", "macro_f1", "per_class_f1", "confusion_matrix", "num_frames")}


# ---------------------------------------------------------------------------------------------------- emotic rows


def run(command: list[str], log: Path) -> None:
    with open(log, "a") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{' '.join(command[2:5])} failed (exit status {code}); the end of {log}:\n{tail}")


def pretrain(folder: Path, face_dirs: list[Path], preset: dict, seed: int) -> dict:
    run([*emotic_command(), "pretrain", "--face_dirs", *map(str, face_dirs), "--output_dir", str(folder),
         "--model_size", preset["model_size"], "--image_size", str(preset["image_size"]),
         "--num_train_epochs", str(preset["pretrain_epochs"]), "--per_device_train_batch_size",
         str(preset["pretrain_batch_size"]), "--learning_rate", str(preset["pretrain_learning_rate"]),
         "--warmup_steps", "0.05", "--seed", str(seed), "--logging_steps", "50", "--save_total_limit", "1",
         "--report_to", "none", "--disable_tqdm", "true", *(["--bf16"] if preset["bf16"] else [])], folder / "log.txt")
    summary = json.loads((folder / "emotic_run.json").read_text())
    return {"images": summary["images"], "first_loss": summary["losses"][0] if summary["losses"] else None,
            "last_loss": summary["losses"][-1] if summary["losses"] else None}


def finetune(row: str, folder: Path, data: Path, preset: dict, seed: int, pretrained: Path | None) -> dict:
    strategy, _, geometry = EMOTIC_ROWS[row]
    run([*emotic_command(), "finetune", "--train_dir", str(data / "train"), "--eval_dir", str(data / "test"),
         "--label_map", json.dumps(LABEL_MAP), "--output_dir", str(folder), "--fusion_strategy", strategy,
         "--geometry", geometry,
         *(["--model_name_or_path", str(pretrained)] if pretrained else
           ["--model_size", preset["model_size"], "--image_size", str(preset["image_size"])]),
         "--num_train_epochs", str(preset["epochs"]), "--per_device_train_batch_size", str(preset["batch_size"]),
         "--learning_rate", str(preset["learning_rate"]), "--seed", str(seed), "--class_weights", "false",
         "--crop_scale", str(AUGMENTATION["crop_scale"]), "--rotation", str(AUGMENTATION["rotation"]),
         "--erasing", str(AUGMENTATION["erasing"]), "--color_jitter", str(AUGMENTATION["color_jitter"]),
         "--eval_strategy", "no", "--save_total_limit", "1", "--logging_steps", "50", "--report_to", "none",
         "--disable_tqdm", "true", *(["--bf16"] if preset["bf16"] else [])], folder / "log.txt")
    evaluation = json.loads((folder / "emotic_run.json").read_text())["eval"]
    return {key: evaluation[key] for key in ("accuracy", "macro_f1", "per_class_f1", "confusion_matrix", "num_frames")}


# ---------------------------------------------------------------------------------------------------- scheduling


def tasks(seeds: list[int], rows=ROWS) -> list[tuple[str, int]]:
    """(row, seed) in the order workers claim them: pre-training first (the MAE rows wait for it), then each seed's
    rows."""
    return [("mae_pretrain", seeds[0])] + [(row, seed) for seed in seeds for row in rows]


def folder_of(out: Path, row: str, seed: int) -> Path:
    return out / row if row == "mae_pretrain" else out / row / f"seed-{seed}"


def run_task(row: str, seed: int, args, preset: dict, out: Path, data: Path) -> None:
    folder = folder_of(out, row, seed)
    resumed = any(path.name != ".claim.lock" for path in folder.iterdir())  # an earlier attempt left its work
    started = time.perf_counter()
    if row == "mae_pretrain":
        face_dirs = [data / "train"] + ([Path(args.fer2013_dir) / "train"] if args.fer2013_dir else [])
        result = pretrain(folder, face_dirs, preset, seed)
    elif row in EMOTIC_ROWS:
        result = finetune(row, folder, data, preset, seed, folder_of(out, "mae_pretrain", 0)
                          if EMOTIC_ROWS[row][1] else None)
    else:
        result = plain_loop(row, folder, data, preset, seed)
    # wall time of this (last) attempt: a resumed row counts only the part it ran after resuming
    result.update(row=row, seed=seed, wall_seconds=round(time.perf_counter() - started, 1),
                  resumed=resumed)
    partial = folder / "result.json.partial"
    partial.write_text(json.dumps(result, indent=1))
    os.replace(partial, folder / "result.json")
    print(f"{row} seed {seed}: done in {result['wall_seconds']:.0f} s"
          + (f", accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}" if "accuracy" in result else ""),
          flush=True)


def worker(args, preset: dict, out: Path, data: Path) -> None:
    """Claim unfinished tasks one at a time (a lock per task) until none is left; a MAE row waits for pre-training."""
    from filelock import FileLock, Timeout

    pending = tasks(args.seeds, args.rows)
    pretrained = folder_of(out, "mae_pretrain", 0) / "result.json"
    while pending:
        claimed = False
        for row, seed in list(pending):
            folder = folder_of(out, row, seed)
            if (folder / "result.json").exists():
                pending.remove((row, seed))
                continue
            if row in EMOTIC_ROWS and EMOTIC_ROWS[row][1] and not pretrained.exists():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(folder / ".claim.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:  # another worker runs it
                continue
            try:
                if not (folder / "result.json").exists():
                    run_task(row, seed, args, preset, out, data)
                pending.remove((row, seed))
                claimed = True
            finally:
                lock.release()
            break
        if pending and not claimed:
            time.sleep(2 if args.smoke else 15)  # the rest is claimed by others, or waits for pre-training


# ---------------------------------------------------------------------------------------------------- report


def machine() -> str:
    import torch

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    extras = [name for name in ("avx512_bf16", "amx_bf16") if name in flags]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return f"{gpu + ', ' if gpu else ''}{model} ({os.cpu_count()} cores{', ' + ', '.join(extras) if extras else ''})"


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def report(args, preset: dict, out: Path, data: Path) -> dict:
    from emotic.modeling.heads_emotic import ABAW_EXPRESSION_LABELS

    results = {}
    for row, seed in tasks(args.seeds, ALL_ROWS):  # every row finished in this folder, asked for this time or not
        path = folder_of(out, row, seed) / "result.json"
        if path.exists():
            results.setdefault(row, []).append(json.loads(path.read_text()))
    _, test_labels = read_split(data / "test")
    _, train_labels = read_split(data / "train")
    majority = int(np.bincount(train_labels).argmax())
    results["always_neutral"] = [{**scores(np.full(len(test_labels), majority), test_labels), "seed": None,
                                  "wall_seconds": 0.0}]
    missing = [f"{row} seed {seed}" for row, seed in tasks(args.seeds, args.rows)
               if not (folder_of(out, row, seed) / "result.json").exists()]
    lines = [f"# emotic on FER+ ({'generated faces: smoke run, not real data' if args.smoke else 'real faces'})", "",
             f"Machine: {machine()}; `--preset {args.preset}` ({preset['model_size']} encoder at "
             f"{preset['image_size']} px, {preset['epochs']} epochs, batch {preset['batch_size']}; MAE pre-training "
             f"{preset['pretrain_epochs']} epochs on {results.get('mae_pretrain', [{}])[0].get('images', '?')} "
             f"unlabelled training faces); seeds {args.seeds}, {args.jobs} worker(s) side by side. Test split: "
             f"{len(test_labels)} faces. Mean ± standard deviation over the seeds.", ""]
    if missing:
        lines += [f"**Partial**: not finished: {', '.join(missing)}.", ""]
    lines += ["| row | accuracy | macro-F1 | wall time per run (s) | seeds |", "| --- | --- | --- | --- | --- |"]
    for row in ["always_neutral", *ALL_ROWS]:
        if row in results:
            runs = results[row]
            lines.append(f"| {DESCRIPTIONS[row]} | {spread([r['accuracy'] for r in runs])} | "
                         f"{spread([r['macro_f1'] for r in runs])} | "
                         f"{statistics.fmean(r['wall_seconds'] for r in runs):.0f} | {len(runs)} |")
    if "mae_pretrain" in results:
        pre = results["mae_pretrain"][0]
        lines += ["", f"MAE pre-training (once, shared by the MAE rows): {pre['wall_seconds']:.0f} s, "
                      f"loss {pre['first_loss']} -> {pre['last_loss']}."]
    lines += ["", "Per-class F1 (mean over seeds):", "",
              "| row | " + " | ".join(ABAW_EXPRESSION_LABELS) + " |", "| --- |" + " --- |" * 8]
    for row in ALL_ROWS:
        if row in results:
            cells = [statistics.fmean(r["per_class_f1"][name] for r in results[row]) for name in ABAW_EXPRESSION_LABELS]
            lines.append(f"| {row} | " + " | ".join(f"{value:.2f}" for value in cells) + " |")
    lines += ["", "![accuracy and macro-F1 per row](real_faces.png)", ""]
    (out / "real_faces.md").write_text("\n".join(lines))
    summary = {"machine": machine(), "preset": args.preset, "budget": preset, "augmentation": AUGMENTATION,
               "seeds": args.seeds, "jobs": args.jobs, "partial": missing, "results": results}
    (out / "real_faces.json").write_text(json.dumps(summary, indent=1))
    plot(out / "real_faces.png", results)
    return summary


def plot(path: Path, results: dict) -> None:
    from emotic.inference.report import pyplot, save_figure

    rows = [row for row in ["always_neutral", *ALL_ROWS] if row in results]
    figure, axes = pyplot().subplots(1, 2, figsize=(12, 4.5))
    for axis, key in zip(axes, ("accuracy", "macro_f1")):
        values = [[r[key] for r in results[row]] for row in rows]
        axis.barh(rows, [statistics.fmean(v) for v in values],
                  xerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values], color="steelblue")
        for y, v in enumerate(values):
            axis.scatter(v, [y] * len(v), color="black", s=10, zorder=3)
        axis.invert_yaxis()
        axis.set_xlabel(f"{key} on the FER+ test split (bars: mean, dots: seeds)")
    save_figure(figure, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ferplus_dir")
    parser.add_argument("--fer2013_dir", help="FER2013 folders: its training faces join MAE pre-training")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--preset", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="workers side by side (the cores shared among them)")
    parser.add_argument("--rows", nargs="+", choices=[*ALL_ROWS, "all"], default=ROWS,
                        help="the rows to run (default: the matrix without the *_found rows; all: every row)")
    parser.add_argument("--smoke", action="store_true", help="generated faces, one epoch: checks the script")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = ALL_ROWS if "all" in args.rows else [row for row in ALL_ROWS if row in args.rows]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.preset = "smoke"
        data = out / "smoke_faces"
        if not (data / "test").exists():
            write_smoke_data(data)
    elif not args.ferplus_dir:
        parser.error("--ferplus_dir: the FER+ image folders (write_folders.py ferplus DIR), or --smoke")
    else:
        data = Path(args.ferplus_dir)
        for split in ("train", "test"):
            if not (data / split).is_dir():
                parser.error(f"--ferplus_dir {data}: no {split}/ folder; expected write_folders.py ferplus's layout")
    preset = PRESETS[args.preset]
    if args.worker or args.jobs == 1:
        worker(args, preset, out, data)
        if args.worker:
            return 0
    else:
        threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--worker"]
        workers = [subprocess.Popen(command, env=env) for _ in range(args.jobs)]
        failed = [process.wait() for process in workers]
        if any(failed):
            print(f"{sum(1 for code in failed if code)} worker(s) failed; the report below is partial",
                  file=sys.stderr)
    summary = report(args, preset, out, data)
    print((out / "real_faces.md").read_text())
    return 1 if summary["partial"] else 0


if __name__ == "__main__":
    sys.exit(main())
