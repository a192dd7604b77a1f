"""`emotic push EXPORT_DIR REPO_ID`: one commit of an exported folder to the Hub through `huggingface_hub`.

    emotic push exported/ your-name/emotic-affwild2 [--private] [--revision BRANCH] [--commit_message TEXT]
    emotic push space/ your-name/emotic-demo --repo_type space

A model folder must hold safetensors weights, `config.json`, `preprocessor_config.json` and the card (`README.md`);
a Space folder (`emotic export --space`) its `app.py`, `requirements.txt` and a `README.md` whose metadata names the
SDK. Only the files `emotic export` writes are published, in one commit; a folder holding anything else (dotfiles,
credentials, pickles, symbolic links, sub-folders) or a secret or path of this machine in any file is refused
before the Hub is contacted. The folder itself is never changed. The token comes from
`HF_TOKEN` or `hf auth login`, and is never written anywhere.
"""

import mmap
import os
import re
import sys
from pathlib import Path

from emotic.commands import command_parser
from emotic.hub_cards.card import REPO_ID_PLACEHOLDER

REQUIRED = {
    "config.json": "config (config.json)",
    "preprocessor_config.json": "processor config (preprocessor_config.json)",
    "README.md": "model card (README.md)",
}
# What `emotic export` writes, and so all that `emotic push` publishes: the config, the processor config, the card,
# safetensors weights (one file or shards with their index), the remote-code files `save_pretrained` copies and, with
# `--include_metric`, the track's ABAW metric module (`evaluate.load` takes the script's path).
EXPORT_FILES = (*REQUIRED, "model.safetensors", "model.safetensors.index.json", "configuration_emotic.py",
                "heads_emotic.py", "modeling_emotic.py", "image_processing_emotic.py", "face_geometry.py",
                "abaw_expression.py", "abaw_action_units.py", "abaw_valence_arousal.py", "abaw_multitask.py")
# What `emotic export --space` writes: the Gradio app that loads the model by its Hub id, its requirements, and the
# Space card (metadata with `sdk: gradio`).
SPACE_REQUIRED = {"app.py": "app (app.py)", "requirements.txt": "requirements (requirements.txt)",
                  "README.md": "Space card (README.md)"}
SPACE_SDK = re.compile(r"^sdk:\s*(\S+)\s*$", re.MULTILINE)
REPO_TYPES = ("model", "space")
WEIGHT_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKEN_PATTERN = re.compile(rb"hf_[A-Za-z0-9]{30,}")


class PushError(Exception):
    """The Hub could not be reached or refused the upload: one line for the user, nothing changed locally."""


def is_export_file(name: str, repo_type: str = "model") -> bool:
    """Whether `name` (a file name at the top of a folder) is one that `emotic export` writes for `repo_type`."""
    if repo_type == "space":
        return name in SPACE_REQUIRED
    return name in EXPORT_FILES or WEIGHT_SHARD.fullmatch(name) is not None


def space_sdk(folder: Path) -> str | None:
    """The `sdk:` of a Space folder's card metadata (between the leading `---` lines), or None."""
    text = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else ""
    parts = text.split("---\n", 2) if text.startswith("---\n") else []
    match = SPACE_SDK.search(parts[1]) if len(parts) == 3 else None
    return match[1] if match else None


def missing_parts(folder: Path, repo_type: str = "model") -> list[str]:
    """What a Hub-ready folder lacks, in words."""
    if repo_type == "space":
        missing = [words for name, words in SPACE_REQUIRED.items() if not (folder / name).is_file()]
        if (folder / "README.md").is_file() and space_sdk(folder) is None:
            missing.append("`sdk:` in the metadata of README.md")
        return missing
    missing = [] if any(folder.glob("*.safetensors")) else ["weights (*.safetensors)"]
    return missing + [words for name, words in REQUIRED.items() if not (folder / name).is_file()]


def _scan(path: Path, needles: dict) -> list[str]:
    """What a file's bytes give away (memory-mapped: weights of any size): any Hub token, and the label of each
    needle found."""
    if path.stat().st_size == 0:
        return []
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = ["an access token"] if TOKEN_PATTERN.search(data) else []
        found += [label for needle, label in needles.items() if data.find(needle) >= 0]
    return list(dict.fromkeys(found))


def find_secrets(folder: Path, local_paths=()) -> list[str]:
    """Files of `folder` (every regular file, weights included) that hold an access token or a local path (home
    folder, the given paths): 'file: what'."""
    tokens = {value for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if (value := os.environ.get(name))}
    paths = {str(Path(p).resolve()) for p in local_paths} | {str(Path.home())}
    needles = {path.encode(): f"the local path {path}" for path in sorted(paths) if len(path) > 1}  # not a "/" home
    needles.update({token.encode(): "an access token" for token in tokens if len(token) >= 8})
    found = []
    for file in sorted(folder.rglob("*")):
        if file.is_file() and not file.is_symlink():
            found += [f"{file.relative_to(folder)}: {what}" for what in _scan(file, needles)]
    return found


def check_publishable(folder: Path, local_paths=(), repo_type: str = "model") -> list[Path]:
    """The files to publish (regular files that `emotic export` writes for `repo_type`), or a `ValueError` naming
    what is missing or what must not be published: symbolic links, pickles, secrets, and anything export does not
    write."""
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo type {repo_type!r}; allowed: {', '.join(REPO_TYPES)}")
    make = "emotic export RUN_DIR --output_dir EXPORT_DIR" + (" --repo_id ID --space SPACE_DIR"
                                                              if repo_type == "space" else "")
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (make one with `{make}`)")
    missing = missing_parts(folder, repo_type)
    if missing:
        raise ValueError(f"{folder} cannot be pushed as a {repo_type}: it has no {', '.join(missing)}; make a "
                         f"complete folder with `{make}`")
    entries = sorted(folder.rglob("*"))
    links = [f"{p.relative_to(folder)} -> {os.readlink(p)}" for p in entries if p.is_symlink()]
    if links:
        raise ValueError(f"{folder} holds symbolic links ({'; '.join(links)}); push publishes regular files only, "
                         f"never what a link points to")
    pickles = sorted(p.name for p in entries if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"{folder} holds pickled files {pickles}; only safetensors weights are published (pickles "
                         f"can run code when loaded)")
    secrets = find_secrets(folder, local_paths)
    if secrets:
        raise ValueError(f"{folder} must not be published as it is: {'; '.join(secrets)}")
    foreign = [str(p.relative_to(folder)) + ("/" if p.is_dir() else "") for p in entries
               if p.parent != folder or p.is_dir() or not is_export_file(p.name, repo_type)]
    if foreign:
        allowed = (", ".join(SPACE_REQUIRED) if repo_type == "space"
                   else f"{', '.join(EXPORT_FILES[:4])}, safetensors weights and the model code")
        raise ValueError(f"{folder} holds files `emotic export` does not write: {', '.join(foreign)}; push publishes "
                         f"only {allowed}: move the others out (dotfiles and credentials are never published)")
    return [p for p in entries if p.is_file()]


def push(folder, repo_id: str, private: bool = False, revision: str | None = None,
         commit_message: str | None = None, token: str | None = None, repo_type: str = "model"):
    """Create the repository (a model, or a Space with its card's SDK) if needed and upload the folder's export
    files as one commit; returns the `CommitInfo`. Nothing in the folder changes (the card names the repository in
    the uploaded copy only); an unreachable or refusing Hub raises `PushError` with one line."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    files = check_publishable(folder, repo_type=repo_type)
    operations = []
    for file in files:
        content = file
        if file.name == "README.md":  # the card's usage snippets name the repository now that it is known
            content = file.read_text(encoding="utf-8").replace(REPO_ID_PLACEHOLDER, repo_id).encode("utf-8")
        operations.append(CommitOperationAdd(path_in_repo=file.name, path_or_fileobj=content))
    api = HfApi(token=token)
    try:
        sdk = space_sdk(folder) if repo_type == "space" else None
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type,
                                  space_sdk=sdk).repo_id
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
        default = "Upload emotic expression classifier" if repo_type == "model" else "Upload emotic demo Space"
        return api.create_commit(repo_id, operations, revision=revision, repo_type=repo_type,
                                 commit_message=commit_message or default)
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PushError(f"the Hub refused the push to {repo_id} (HTTP {status}): {first}") from None
    except Exception as error:
        # transport failures: OSError, or the errors of huggingface_hub's HTTP client (httpx), which do not derive
        # from it
        if not isinstance(error, OSError) and not type(error).__module__.startswith("httpx"):
            raise
        cause = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise PushError(f"the Hub at {api.endpoint} could not be reached ({type(error).__name__}: {cause}); nothing "
                        f"was published") from None


def main(argv=None) -> int:
    parser = command_parser("emotic push", __doc__)
    parser.add_argument("export_dir", help="a folder made by `emotic export` (or by its --space)")
    parser.add_argument("repo_id", help="namespace/name on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--repo_type", choices=REPO_TYPES, default="model",
                        help="model (an `emotic export` folder) or space (an `emotic export --space` folder)")
    args = parser.parse_args(argv)
    try:
        commit = push(args.export_dir, args.repo_id, args.private, args.revision, args.commit_message,
                      repo_type=args.repo_type)
    except ValueError as error:
        print(f"emotic push: {error}", file=sys.stderr)
        return 2
    except PushError as error:
        print(f"emotic push: {error}", file=sys.stderr)
        return 1
    print(f"pushed {args.export_dir} to {args.repo_id}: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
