"""Image processor throughput: EmoticImageProcessor building BOTH views vs transformers' ViTImageProcessor building
ONE view, on the same decoded images, alternating runs after a warm-up, medians reported.

    python benchmarks/bench_processor.py [--images 64] [--repeats 7]

Goal: both views at >= 1.0x the throughput of ViTImageProcessor's one view.
"""

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import ViTImageProcessor

from emotic import EmoticImageProcessor
from emotic.training.synthetic import Identity, random_pose, render_face


def make_images(count: int, size: int) -> tuple[list, list]:
    rng = np.random.default_rng(0)
    images, landmarks = [], []
    for index in range(count):
        image, points = render_face(index % 8, 1.0, Identity.random(rng), random_pose(rng), rng, size=size)
        images.append(image)
        landmarks.append(points)
    return images, landmarks


def timed(function):
    def run():
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)

    candidates = {}
    try:
        candidates["ViTImageProcessor (default backend), 1 view"] = ViTImageProcessor()
    except Exception as error:  # no torchvision
        print(f"ViTImageProcessor default backend unavailable: {error}")
    from transformers import ViTImageProcessorPil

    candidates["ViTImageProcessorPil, 1 view"] = ViTImageProcessorPil()
    print(f"{args.images} decoded images per batch, output 224x224, torch threads 1, medians of {args.repeats}")
    for source_size in (112, 512):
        images, landmarks = make_images(args.images, source_size)
        ours = {
            "emotic template, 2 views": (EmoticImageProcessor(geometry="template"), {}),
            "emotic landmarks, 2 views": (EmoticImageProcessor(), {"landmarks": landmarks}),
        }
        runs = {name: timed(lambda p=p: p(images, return_tensors="pt")) for name, p in candidates.items()}
        runs.update({name: timed(lambda p=p, kw=kw: p(images, return_tensors="pt", **kw))
                     for name, (p, kw) in ours.items()})
        for run in runs.values():  # warm-up
            run()
        samples = {name: [] for name in runs}
        for _ in range(args.repeats):  # alternate, so machine noise hits every candidate alike
            for name, run in runs.items():
                samples[name].append(run())
        medians = {name: statistics.median(values) for name, values in samples.items()}
        baselines = {name: seconds for name, seconds in medians.items() if name in candidates}
        print(f"\nsource images {source_size}x{source_size}:")
        for name, seconds in medians.items():
            ratios = "  ".join(f"{base.split(',')[0]}: {reference / seconds:4.2f}x"
                               for base, reference in baselines.items())
            print(f"  {name:45s} {args.images / seconds:7.1f} images/s   throughput ratio vs {ratios}")


if __name__ == "__main__":
    main()
