"""transformers' own common test suites (`ModelTesterMixin`, `ConfigTester`, `ImageProcessingTestMixin`), from the
source distribution of the installed transformers version.

The mixins ship in transformers' sdist, not in its wheel. `ensure()` downloads the sdist of exactly the installed
version from the package registry (`pip download --no-binary :all: --no-deps transformers==X`), once, into a cache
outside the repository (`$EMOTIC_CACHE`, default `~/.cache/emotic`), and unpacks its `tests/*.py` as the package
`transformers_tests`. Nothing from transformers' tests is kept in this repository.

The sdist lacks four modules those files import. Small stand-ins are written beside them; none weakens an assertion:
- `exporters/test_export.py`: `ExportTesterMixin`, a base class of `ModelTesterMixin` holding the `torch.export`
  tests, which are not in the sdist (emotic's own `torch.export` and ONNX tests in `tests/test_deploy.py` cover it);
- `generation/test_utils.py`: `GenerationTesterMixin`, used only in `issubclass` checks (emotic does not generate);
- `utils/test_configuration_utils.py`: `config_common_kwargs`, every common `PreTrainedConfig` field with a
  non-default value (built from the installed `PreTrainedConfig`, and checked to differ from each default);
- the repository's `utils/fetch_hub_objects_for_ci.py`: `url_to_local_path`, which maps the COCO photo the image
  processor tests fetch to a real photo shipped in an installed package (scikit-image's astronaut).

    python tests/conformance/transformers_tests.py    # prints the folder holding `transformers_tests`
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

STAND_INS = {
    "exporters/test_export.py": '''\
class ExportTesterMixin:
    """Stand-in: the torch.export tests are not in transformers' sdist (emotic tests torch.export itself)."""
''',
    "generation/test_utils.py": '''\
class GenerationTesterMixin:
    """Stand-in: used only in issubclass checks; emotic's models do not generate."""
''',
    "utils/test_configuration_utils.py": '''\
import torch
from transformers import PreTrainedConfig

# Every common config field with a non-default value (checked below against the installed PreTrainedConfig).
config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}

_defaults = PreTrainedConfig()
_public = {key.removeprefix("_") for key in vars(_defaults)} - {
    "transformers_version", "is_encoder_decoder", "name_or_path", "attn_implementation_internal",
    "experts_implementation_internal", "post_init_done"}
assert _public <= set(config_common_kwargs), f"config fields without a value: {_public - set(config_common_kwargs)}"
assert not [key for key, value in config_common_kwargs.items() if getattr(_defaults, key) == value and key != "dtype"]
''',
}

FETCH_HUB_OBJECTS = '''\
"""Stand-in for transformers' utils/fetch_hub_objects_for_ci.py: no network; every image URL maps to a real photo
shipped in an installed package (scikit-image's astronaut), saved once beside this file."""
import os

_PHOTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "astronaut.png")


def url_to_local_path(url, return_url_if_not_found=True):
    if not os.path.exists(_PHOTO):
        import skimage.data
        from PIL import Image

        Image.fromarray(skimage.data.astronaut()).save(_PHOTO)
    return _PHOTO
'''


def cache_root() -> Path:
    return Path(os.environ.get("EMOTIC_CACHE", Path.home() / ".cache" / "emotic"))


def ensure() -> Path:
    """The folder that holds `transformers_tests` (and `utils/`) for the installed transformers version."""
    import transformers

    version = transformers.__version__
    root = cache_root() / f"transformers-{version}-tests"
    if _complete(root):
        return root
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        f"transformers=={version}", "-d", download], check=True)
        archive = next(Path(download).glob("transformers-*.tar.gz"))
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{root.name}.partial-", dir=root.parent))  # renamed when complete
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.split("/", 1)[-1].startswith("tests/")
                       and m.name.endswith(".py") and m.name.count("/") == 2]
            tar.extractall(staging, members=members, filter="data")
        (staging / f"transformers-{version}" / "tests").rename(staging / "transformers_tests")
        (staging / f"transformers-{version}").rmdir()
        (staging / "transformers_tests" / "__init__.py").touch()
        for relative, text in STAND_INS.items():
            path = staging / "transformers_tests" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(text)
        (staging / "utils").mkdir()
        (staging / "utils" / "fetch_hub_objects_for_ci.py").write_text(FETCH_HUB_OBJECTS)
        if root.exists() and not _complete(root):  # an incomplete earlier unpacking of ours
            shutil.rmtree(root)
        try:
            staging.rename(root)  # atomic: a folder at `root` is always complete
        except OSError:
            if not _complete(root):
                raise
            shutil.rmtree(staging)  # another test run unpacked the same version meanwhile
    return root


def _complete(root: Path) -> bool:
    return (root / "transformers_tests" / "test_modeling_common.py").is_file() and \
        (root / "utils" / "fetch_hub_objects_for_ci.py").is_file()


if __name__ == "__main__":
    print(ensure())
