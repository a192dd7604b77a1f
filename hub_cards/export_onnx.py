"""`emotic export-onnx MODEL --output_dir OUT`: the classifier as an ONNX graph, checked against PyTorch.

    emotic export-onnx runs/dual-view --output_dir onnx [--opset 18]

Writes `model.onnx` (inputs `pixel_values` and `pixel_values_aux`, each `(batch, 3, H, W)` float32 as the image
processor returns them, with a dynamic batch; output `logits` `(batch, num_labels)`), and beside it the model's
`config.json` (labels) and `preprocessor_config.json` (how to build the two views). The graph comes from torch's
dynamo exporter (`torch.onnx.export(dynamo=True)`); before the command succeeds, ONNX Runtime runs it on the image
processor's views of generated faces at batch 1 and 7 and its logits must match PyTorch's within 1e-4. Needs the
`onnx` extra (`pip install "emotic[onnx]"`).
"""

import sys
from pathlib import Path

import numpy as np

from emotic.commands import command_parser

TOLERANCE = 1e-4  # max |logit difference| between ONNX Runtime and PyTorch
INPUTS = ("pixel_values", "pixel_values_aux")


def parity_views(processor, count: int, size: int, seed: int = 0) -> dict:
    """The processor's views of `count` generated faces (aligned crops), as numpy arrays."""
    import torch
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(40, 200, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):  # blobs where eyes, nose and mouth sit on an aligned crop
            x, y = rng.uniform(0.25, 0.75) * size, rng.uniform(0.3, 0.9) * size
            draw.ellipse((x - size / 12, y - size / 20, x + size / 12, y + size / 20),
                         fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        images.append(image)
    views = processor(images, return_tensors="pt", geometry="template")
    return {name: views[name].to(torch.float32).numpy() for name in INPUTS}


class OnnxRuntimeClassifier:
    """The graph of an `emotic export-onnx` folder run by ONNX Runtime (CPU), called like the PyTorch classifier:
    `classifier(pixel_values=..., pixel_values_aux=...).logits` (torch tensors in and out), with its `config`."""

    precision = "float32 (onnxruntime)"

    def __init__(self, folder, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise ValueError('--backend onnxruntime needs the onnx extra: pip install "emotic[onnx]"') from None
        import torch
        from transformers import AutoConfig

        folder = Path(folder)
        if not (folder / "model.onnx").is_file():
            raise ValueError(f"{folder} has no model.onnx; --backend onnxruntime takes a folder written by "
                             f"`emotic export-onnx MODEL --output_dir FOLDER`")
        self.config = AutoConfig.from_pretrained(folder)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = [entry.name for entry in self.session.get_inputs()]  # a `none` model has no auxiliary input
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def eval(self):
        return self

    def __call__(self, pixel_values, pixel_values_aux=None):
        import torch
        from transformers.modeling_outputs import ImageClassifierOutput

        views = {"pixel_values": pixel_values, "pixel_values_aux": pixel_values_aux}
        feed = {name: views[name].detach().to("cpu", torch.float32).numpy() for name in self.inputs}
        (logits,) = self.session.run(["logits"], feed)
        return ImageClassifierOutput(logits=torch.from_numpy(logits))


def export_onnx(model_dir, output_dir, opset: int = 18) -> dict:
    """Export, save and check; returns the parity report `{batch: max |Δ|}` with the opset."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError('ONNX export needs the onnx extra: pip install "emotic[onnx]"') from None
    import torch
    from torch.export import Dim
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    output = Path(output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"--output_dir {output} exists and is not an empty folder; choose a new one (nothing there "
                         f"is overwritten)")
    model = AutoModelForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    size = processor.size
    example = tuple(torch.zeros(2, 3, size["height"], size["width"]) for _ in INPUTS)
    batch = Dim("batch", min=1, max=4096)
    program = torch.onnx.export(model, example, dynamo=True, opset_version=opset, input_names=list(INPUTS),
                                output_names=["logits"], dynamic_shapes=({0: batch}, {0: batch}))
    output.mkdir(parents=True, exist_ok=True)
    program.save(str(output / "model.onnx"))
    model.config.save_pretrained(output)
    processor.save_pretrained(output)

    session = onnxruntime.InferenceSession(str(output / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [entry.name for entry in session.get_inputs()]  # a `none` model may not use the auxiliary view
    differences = {}
    for count in (1, 7):
        views = parity_views(processor, count, max(size["height"], size["width"]), seed=count)
        (logits,) = session.run(["logits"], {name: views[name] for name in names})
        with torch.no_grad():
            expected = model(**{name: torch.from_numpy(value) for name, value in views.items()}).logits.numpy()
        differences[count] = float(np.abs(logits - expected).max())
        if logits.shape != expected.shape or differences[count] > TOLERANCE:
            raise RuntimeError(f"ONNX Runtime's logits differ from PyTorch's at batch {count} by "
                               f"{differences[count]:.2e} (allowed {TOLERANCE:.0e}); {output / 'model.onnx'} is "
                               f"not to be trusted")
    return {"opset": opset, "max_abs_difference": differences, "inputs": names}


def main(argv=None) -> int:
    parser = command_parser("emotic export-onnx", __doc__)
    parser.add_argument("model", metavar="MODEL", help="a fine-tuned model folder or Hub id")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset of the graph")
    args = parser.parse_args(argv)
    try:
        report = export_onnx(args.model, args.output_dir, args.opset)
    except ValueError as error:
        print(f"emotic export-onnx: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"emotic export-onnx: {error}", file=sys.stderr)
        return 1
    print(f"wrote {Path(args.output_dir) / 'model.onnx'} (opset {report['opset']}, inputs {report['inputs']}, "
          f"dynamic batch); ONNX Runtime matches PyTorch: max |Δ logits| "
          + ", ".join(f"{d:.1e} at batch {b}" for b, d in report["max_abs_difference"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
