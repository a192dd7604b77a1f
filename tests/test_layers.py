"""The package's import order: every module imports only modules of its own layer or below, so that data flows one
way (models and views → training → inference → the command line and the demo); no module imports, directly or
through others, one that imports it (imports inside functions count); inside the inference layer each module imports
only the neighbours listed for it, so that frames flow one way through one loop; and the files copied into Hub
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
    # the package entry (registration), the commands' argument parser and the registry of ABAW tracks
    {"emotic", "emotic.commands", "emotic.tracks"},
    {"emotic.hub_cards"},
    {"emotic.training"},
    {"emotic.inference"},
    {"emotic.cli", "emotic.demo", "emotic.ablate", "emotic.app"},  # what drives every stage
]
# copied verbatim into Hub repositories for `trust_remote_code`: the standard library, these packages and siblings
REMOTE_CODE = ["modeling/configuration_emotic.py", "modeling/modeling_emotic.py", "modeling/heads_emotic.py",
               "modeling/configuration_emotic_temporal.py", "modeling/modeling_emotic_temporal.py",
               "processing/image_processing_emotic.py", "processing/face_geometry.py"]
REMOTE_CODE_PACKAGES = {"torch", "transformers", "numpy", "PIL",  # and the optional face detectors, imported only
                        "dlib", "face_recognition_models", "ai_edge_litert"}  # when installed (else: none, or HOG)
# Inside the inference layer, the modules each module may import (below them in the flow sources -> faces -> runtime
# -> stream -> smoothing -> writers, under the output folder; the commands compose them). A new module is listed here.
INFERENCE_NEIGHBOURS = {
    "results": set(),  # the one record every stage hands on
    "sources": set(),
    "audio": {"sources"},  # a video's sound, per frame: beside the frames, read by the commands that store or fuse it
    "transcripts": {"audio"},  # what is said (subtitles or recognised words), per frame
    "live": {"results", "sources"},  # live sources read in a thread of their own
    "tracking": set(),
    "compound": set(),
    "processes": set(),
    "arguments": {"audio", "faces", "transcripts"},
    "smoothing": {"results"},
    "runtime": {"audio", "results", "transcripts"},
    "faces": {"results", "sources", "tracking"},
    "outputs": {"sources"},
    "stream": {"results", "runtime", "smoothing", "sources"},
    "report": {"tracking"},
    "writers": {"compound", "report", "results"},
    # the commands
    "predict": {"arguments", "compound", "faces", "live", "outputs", "processes", "results", "runtime", "smoothing",
                "sources", "stream", "transcripts", "writers"},
    "features": {"arguments", "audio", "faces", "outputs", "processes", "results", "runtime", "sources", "stream",
                 "transcripts"},
    "evaluate": {"arguments", "faces", "report", "results", "runtime", "smoothing", "sources", "stream",
                 "transcripts", "writers"},
}


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
    """(absolute module name, line) of every import in the file, at the top or inside functions; `from package import
    module` names the module."""
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
                found += [(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module,
                           node.lineno) for alias in node.names]
    return found


SOURCES = sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))
MODULES = {module_name(path) for path in SOURCES}


def import_graph() -> dict[str, set[str]]:
    """Every emotic module and the emotic modules it imports."""
    return {module_name(path): {target for target, _ in imports(path) if target in MODULES and
                                target != module_name(path)} for path in SOURCES}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`: each set of modules that reach each other (Tarjan's strongly connected
    components of more than one module), sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_every_module_imports_only_its_own_layer_or_below():
    upward = []
    for path in SOURCES:
        importer = module_name(path)
        for target, line in imports(path):
            if (target == "emotic" or target.startswith("emotic.")) and layer(target) > layer(importer):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({importer}, layer {layer(importer)}) imports "
                              f"{target} (layer {layer(target)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_module_imports_one_that_imports_it():
    found = circles(import_graph())
    assert not found, "import circles (each a set of modules that import each other, directly or through the " \
                      "others; imports inside functions count):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_circle_check_finds_circles_through_imports_inside_functions():
    """A circle hidden by an import inside a function (as `features -> predict -> temporal -> features` once was) is
    found, and so is a longer one; a graph that only points down has none."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    tree = ast.parse("def f():\n    from emotic.inference import predict\n")
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))  # `imports` walks function bodies


def test_each_inference_module_imports_only_its_listed_neighbours():
    graph = import_graph()
    inference = {module.rsplit(".", 1)[1]: targets for module, targets in graph.items()
                 if module.startswith("emotic.inference.")}
    assert set(inference) == set(INFERENCE_NEIGHBOURS), \
        f"list each inference module's neighbours: missing {sorted(set(inference) - set(INFERENCE_NEIGHBOURS))}, " \
        f"gone {sorted(set(INFERENCE_NEIGHBOURS) - set(inference))}"
    unlisted = {name: sorted(target.rsplit(".", 1)[1] for target in targets if target.startswith("emotic.inference.")
                             and target.rsplit(".", 1)[1] not in INFERENCE_NEIGHBOURS[name])
                for name, targets in inference.items()}
    assert not any(unlisted.values()), f"imports outside the listed neighbours: {unlisted}"
    # the listed order itself points one way
    assert not circles({name: neighbours for name, neighbours in INFERENCE_NEIGHBOURS.items()})


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
