"""The package's import order: every module imports only modules of its own layer or below, so that data flows one
way (models and views → training → inference → the command line and the demo), and the files copied into Hub
repositories import only what a user without emotic has."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"modeling": "emotic.modeling", "processing": "emotic.processing", "training": "emotic.training",
           "inference": "emotic.inference", "hub_cards": "emotic.hub_cards", "emotic": "emotic"}
# lowest first; a module may import its own layer and those below, never one above
LAYERS = [
    {"emotic.modeling", "emotic.processing"},
    {"emotic", "emotic.commands"},  # the package entry (registration) and the commands' argument parser
    {"emotic.hub_cards"},
    {"emotic.training"},
    {"emotic.inference"},
    {"emotic.cli", "emotic.demo", "emotic.ablate", "emotic.app"},  # what drives every stage
]
# copied verbatim into Hub repositories for `trust_remote_code`: the standard library, these packages and siblings
REMOTE_CODE = ["modeling/configuration_emotic.py", "modeling/modeling_emotic.py", "modeling/heads_emotic.py",
               "modeling/configuration_emotic_temporal.py", "modeling/modeling_emotic_temporal.py",
               "processing/image_processing_emotic.py", "processing/face_geometry.py"]
REMOTE_CODE_PACKAGES = {"torch", "transformers", "numpy", "PIL",
                        "dlib", "face_recognition_models"}  # the optional face detector: imported only when installed


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    parts = [FOLDERS[relative.parts[0]], *relative.parts[1:-1]]
    if relative.stem != "__init__":
        parts.append(relative.stem)
    return ".".join(parts)


def layer(module: str) -> int:
    """The layer of `emotic...` module `module`: its longest listed prefix."""
    candidates = [(len(name), index) for index, names in enumerate(LAYERS) for name in names
                  if module == name or module.startswith(name + ".")]
    assert candidates, f"{module} is in no layer; add it to LAYERS"
    return max(candidates)[1]


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, at the top or inside functions."""
    package = module_name(path)
    if path.stem != "__init__":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's own package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                found += [(target if node.module else f"{base}.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((node.module, node.lineno))
    return found


SOURCES = sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


def test_every_module_imports_only_its_own_layer_or_below():
    upward = []
    for path in SOURCES:
        importer = module_name(path)
        for target, line in imports(path):
            if (target == "emotic" or target.startswith("emotic.")) and layer(target) > layer(importer):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({importer}, layer {layer(importer)}) imports "
                              f"{target} (layer {layer(target)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_models_and_processing_do_not_import_each_other_or_the_package_entry():
    crossing = []
    for path in SOURCES:
        importer = module_name(path)
        if layer(importer) != 0:
            continue
        own = importer.split(".")[1]
        for target, line in imports(path):
            if target == "emotic" or target.startswith("emotic.") and target.split(".")[1] != own:
                crossing.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize("file", REMOTE_CODE)
def test_remote_code_files_import_only_the_standard_library_torch_transformers_and_siblings(file):
    path = ROOT / file
    package = module_name(path).rsplit(".", 1)[0]
    for target, line in imports(path):
        top = target.split(".")[0]
        sibling = target.startswith(package + ".") and path.with_name(target.split(".")[2] + ".py").is_file()
        assert sibling or top in REMOTE_CODE_PACKAGES or top in sys.stdlib_module_names, \
            f"{file}:{line} imports {target}, which a Hub repository's remote code cannot"


def test_the_layers_test_sees_the_real_imports():
    """The checks above would pass on an empty list: make sure they read the package's imports."""
    found = {target for path in SOURCES for target, _ in imports(path)}
    assert {"emotic.commands", "emotic.training.affwild2", "emotic.inference.smoothing",
            "emotic.modeling.configuration_emotic"} <= found
    relative = {target for target, _ in imports(ROOT / "processing/image_processing_emotic.py")}
    assert "emotic.processing.face_geometry" in relative  # `from .face_geometry import ...`, resolved
    assert layer("emotic.inference.predict") > layer("emotic.training.affwild2") > layer("emotic.modeling")


# import names whose distribution the installed metadata does not record as providing them
DISTRIBUTION_OF = {"dlib": "dlib-bin"}


def test_every_third_party_module_the_package_imports_is_declared_in_pyproject():
    """A user who installs emotic with the extra a feature names gets every module that feature imports (the
    tracker's scipy once came only with the test extras). The `test` extra does not count: it is not for users."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    def normalised(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalised(r) for r in project["dependencies"]}
    declared |= {normalised(r) for extra, requirements in project["optional-dependencies"].items() if extra != "test"
                 for r in requirements if not r.startswith("emotic")}
    providers = packages_distributions()
    missing = {}
    for path in SOURCES:
        for module, line in imports(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "emotic":
                continue
            names = {normalised(name) for name in providers.get(top, [DISTRIBUTION_OF.get(top, top)])}
            if not names & declared:
                missing.setdefault(top, f"{path.relative_to(ROOT)}:{line}")
    assert not missing, f"imported but not declared in pyproject.toml (core or a user extra): {missing}"
