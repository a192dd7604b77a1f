"""Face detectors on real faces: recall (faces found of faces present) and speed of each `--detector`, with the
68-point landmarks fitted as `emotic predict` does.

    python benchmarks/bench_detectors.py [--json results.json]
    python benchmarks/bench_detectors.py --smoke     # a few frames and scales: checks the script, measures little

Two kinds of real footage, built from the real photos the test extras ship (scikit-image's astronaut, Eileen
Collins; matplotlib's Grace Hopper), with known truth:

1. A portrait video: 90 frames of 256x256, three portraits shown one after another (30 frames each: the astronaut,
   Grace Hopper, and the astronaut mirrored with her head turned 15 degrees), square crops with one face of 75 to
   110 pixels moving a little, noise of +-12 levels, encoded with MPEG-4 at the encoder's default rate and decoded
   back. A face counts as found when a face's landmarks centre lies inside the true face box.
2. A group photo: six people (three of each) side by side on a grey frame of 640x360 or more, with noise of +-12
   levels, scaled down step by step until the faces are a few pixels tall: at each face height, the faces found of
   six, false detections and the time of one detection.

Each detector runs in this process on the same frames, timed on the whole video (detection and landmarks: what
`--detect_every 1` costs per frame). Compare ratios within one run, never absolute numbers across machines.
"""

import argparse
import json
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from people import group_photo, matched, portrait_video  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--smoke", action="store_true", help="a few frames and scales: checks the script")
    args = parser.parse_args(argv)
    import tempfile

    from emotic.processing.face_geometry import FACE_DETECTORS, FaceLandmarker, blazeface_available

    detectors = [name for name in FACE_DETECTORS if name != "blazeface" or blazeface_available()]
    with tempfile.TemporaryDirectory() as folder:
        frames, truth = portrait_video(Path(folder) / "portraits.mp4", frames_each=3 if args.smoke else 30)
    heights = [60, 30] if args.smoke else [160, 120, 90, 70, 56, 44, 36, 30, 24, 20, 16, 12, 10]
    results = {"video": {"frames": len(frames)}, "group": {}}
    for name in detectors:
        landmarker = FaceLandmarker(detector=name)
        landmarker.detect(frames[0])  # first-call set-up is not per-frame work
        found = false = 0
        started = time.perf_counter()
        for frame, box in zip(frames, truth):
            hits, wrong = matched(landmarker.detect(frame)[0], [box])
            found, false = found + hits, false + wrong
        seconds = time.perf_counter() - started
        results["video"][name] = {"found": found, "recall": found / len(frames), "false": false,
                                  "frames_per_s": len(frames) / seconds}
        for height in heights:
            frame, boxes, actual = group_photo(height)
            started = time.perf_counter()
            hits, wrong = matched(landmarker.detect(frame)[0], boxes)
            results["group"].setdefault(f"{actual:.0f}", {})[name] = {
                "found": hits, "of": len(boxes), "false": wrong, "ms": 1000 * (time.perf_counter() - started)}
    print(f"Portrait video ({len(frames)} frames of 256x256, MPEG-4, noise): faces found, false detections, "
          f"frames/s (detection + landmarks)")
    for name in detectors:
        run = results["video"][name]
        print(f"  {name:10s} {run['found']:3d}/{len(frames)} ({run['recall']:.1%}), {run['false']} false, "
              f"{run['frames_per_s']:.1f} frames/s")
    print("Group photo (6 faces): faces found of 6 (false detections), milliseconds, per face height")
    print("  face px " + "".join(f"{name:>22s}" for name in detectors))
    for height, runs in results["group"].items():
        print(f"  {height:>7s} " + "".join(f"{runs[n]['found']:>9d}/6 ({runs[n]['false']}) {runs[n]['ms']:5.0f} ms"
                                           for n in detectors))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
