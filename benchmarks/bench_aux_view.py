"""Where the auxiliary view's regions fall on real faces, with each geometry: the template (the crop taken as an
aligned face) and the detectors' landmarks (BlazeFace or HOG finding the face, dlib's 68 points fitted after
upscaling), on FER+'s 48x48 grey test faces and on the real photos the test extras ship.

    python benchmarks/bench_aux_view.py --output_dir OUT [--ferplus_dir FERPLUS] [--faces 600]
        [--sheet docs/images/aux_view_real_faces.png]

The reference is independent of the regions' boxes: BlazeFace's own keypoints (eye centres, nose tip, mouth
centre), regressed by its network, not fitted by dlib. A face counts as placed when both eye keypoints lie in the
eyes box, the nose tip in the nose box and the mouth centre in the mouth box; faces BlazeFace does not find have no
reference and are left out (counted). `real_faces_aux_view.json` holds every number; the contact sheet shows each
face beside its auxiliary view under each geometry (only the bundled photos: FER+'s images stay out of the
repository, their sheet goes to OUT).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

GEOMETRIES = {"template": ("template", None), "BlazeFace": ("detector", "blazeface"), "HOG": ("detector", "hog")}


def bundled_faces() -> dict:
    """The real photos of the test extras as FER-like crops: 48x48 grey, and the astronaut at 112 px in colour."""
    from people import portraits

    faces = {}
    for (photo, box), name in zip(portraits(), ("astronaut", "Grace Hopper", "astronaut, turned")):
        width = box[2] - box[0]
        cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + 0.08 * width, 0.62 * width
        crop = photo.crop((cx - half, cy - half, cx + half, cy + half))
        faces[f"{name}, 48x48 grey"] = crop.convert("L").resize((48, 48), Image.Resampling.BILINEAR)
        if name == "astronaut":
            faces[f"{name}, 112x112"] = crop.resize((112, 112), Image.Resampling.BILINEAR)
    return faces


def placed(regions: dict, keypoints: np.ndarray) -> dict:
    """Per region, whether BlazeFace's keypoints for it lie inside the region's box."""
    def inside(box, *points):
        return all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in points)

    right_eye, left_eye, nose, mouth = keypoints[:4]
    return {"eyes": inside(regions["eyes"], right_eye, left_eye), "nose": inside(regions["nose"], nose),
            "mouth": inside(regions["mouth"], mouth)}


def measure(faces: dict) -> dict:
    """Per geometry: faces whose regions come from it (the detectors fall back to the whole image when they find no
    face), and the share of the faces with a reference whose eyes, nose and mouth are placed."""
    from emotic import EmoticImageProcessor
    from emotic.processing.face_geometry import BlazeFace, set_face_detector

    reference = BlazeFace()
    keypoints = {}
    for name, image in faces.items():
        found = reference(np.asarray(image.convert("RGB")))
        if found:
            keypoints[name] = max(found, key=lambda face: face[1])[2]
    results = {"faces": len(faces), "with_reference": len(keypoints), "geometries": {}}
    for label, (geometry, detector) in GEOMETRIES.items():
        set_face_detector(detector)
        processor = EmoticImageProcessor(size=64, geometry=geometry, aux_regions=["eyes", "nose", "mouth"])
        counts = {"eyes": 0, "nose": 0, "mouth": 0, "all": 0, "found_by_geometry": 0}
        for name, image in faces.items():
            regions = processor(image, return_regions=True)["regions"][0]
            counts["found_by_geometry"] += regions["geometry"] in ("template", "detector")
            if name in keypoints:
                hits = placed(regions, keypoints[name])
                for region, hit in hits.items():
                    counts[region] += hit
                counts["all"] += all(hits.values())
        results["geometries"][label] = {key: value / (len(faces) if key == "found_by_geometry" else
                                                      max(1, len(keypoints))) for key, value in counts.items()}
    set_face_detector(None)
    return results


def contact_sheet(faces: dict, path: Path, size: int = 128) -> None:
    """Each face (upscaled to `size`) with the eyes and mouth boxes of each geometry drawn in its colour, then its
    auxiliary view (eyes, nose and mouth side by side) under each geometry."""
    from emotic import EmoticImageProcessor
    from emotic.processing.face_geometry import set_face_detector

    colours = dict(zip(GEOMETRIES, ("yellow", "lime", "red")))
    columns = ["face; boxes: " + ", ".join(f"{label} {colours[label]}" for label in GEOMETRIES)] + [
        f"aux: {label}" for label in GEOMETRIES]
    label_height, gap = 14, 4
    width = len(columns) * (size + gap)
    sheet = Image.new("RGB", (width, 2 * label_height + len(faces) * (size + label_height + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((2, 2), columns[0], fill="black")
    for column, title in enumerate(columns[1:], start=1):
        draw.text((column * (size + gap) + 2, label_height + 2), title, fill="black")
    for row, (name, image) in enumerate(faces.items()):
        top = 2 * label_height + row * (size + label_height + gap)
        draw.text((2, top), name, fill="black")
        top += label_height
        sheet.paste(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), (0, top))
        scale = size / image.width
        for column, (label, (geometry, detector)) in enumerate(GEOMETRIES.items(), start=1):
            set_face_detector(detector)
            processor = EmoticImageProcessor(size=size, geometry=geometry, do_normalize=False, do_rescale=False,
                                              aux_regions=["eyes", "nose", "mouth"])
            views = processor(image, return_regions=True)
            aux = views["pixel_values_aux"][0].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
            sheet.paste(Image.fromarray(aux), (column * (size + gap), top))
            regions = views["regions"][0]
            for region in ("eyes", "mouth"):
                box = [v * scale for v in regions[region]]
                draw.rectangle([box[0], top + box[1], box[2], top + box[3]], outline=colours[label])
            if regions["geometry"] == "full_image":
                draw.text((column * (size + gap) + 2, top + size - 12), "no face found", fill="yellow")
    set_face_detector(None)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def ferplus_faces(folder: Path, count: int) -> dict:
    files = sorted(folder.glob("*/*.png"))
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    return {f"{path.parent.name}/{path.name}": Image.open(path).convert("L") for path in chosen}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--ferplus_dir", help="FER+ image folders (write_folders.py ferplus DIR): its test faces")
    parser.add_argument("--faces", type=int, default=600, help="FER+ test faces measured (spread over the classes)")
    parser.add_argument("--sheet", help="where to write the bundled photos' contact sheet (default: OUT)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundled = bundled_faces()
    results = {"bundled photos": measure(bundled)}
    contact_sheet(bundled, Path(args.sheet) if args.sheet else out / "aux_view_bundled.png")
    if args.ferplus_dir:
        fer = ferplus_faces(Path(args.ferplus_dir) / "test", args.faces)
        results["FER+ test (48x48 grey)"] = measure(fer)
        contact_sheet(dict(list(fer.items())[:: max(1, len(fer) // 12)][:12]), out / "aux_view_ferplus.png")
    (out / "real_faces_aux_view.json").write_text(json.dumps(results, indent=1))
    for source, result in results.items():
        print(f"{source}: {result['faces']} faces, {result['with_reference']} with BlazeFace keypoints")
        print(f"  {'geometry':22s} {'own':>6s} {'eyes':>6s} {'nose':>6s} {'mouth':>6s} {'all':>6s}")
        for label, row in result["geometries"].items():
            print(f"  {label:22s} {row['found_by_geometry']:6.1%} {row['eyes']:6.1%} {row['nose']:6.1%} "
                  f"{row['mouth']:6.1%} {row['all']:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
