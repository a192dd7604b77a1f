"""`emotic push EXPORT_DIR REPO_ID`: one commit of an exported folder to the Hub through `huggingface_hub`.

    emotic push exported/ your-name/emotic-affwild2 [--private] [--revision BRANCH] [--commit-message TEXT]

The folder must hold safetensors weights, `config.json`, `preprocessor_config.json` and the card (`README.md`), and
nothing that looks like a secret or a path of this machine; pickled weights are refused. The token comes from
`HF_TOKEN` or `hf auth login`, and is never written anywhere.
"""

import os
import re
import sys
from pathlib import Path

from emotic.cli import command_parser
from emotic.hub_cards.card import REPO_ID_PLACEHOLDER

REQUIRED = {
    "config.json": "config (config.json)",
    "preprocessor_config.json": "processor config (preprocessor_config.json)",
    "README.md": "model card (README.md)",
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TEXT_SUFFIXES = (".json", ".md", ".py", ".txt", ".yaml", ".yml", ".cfg")
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{30,}")


def missing_parts(folder: Path) -> list[str]:
    """What a Hub-ready folder lacks, in words."""
    missing = [] if any(folder.glob("*.safetensors")) else ["weights (*.safetensors)"]
    return missing + [words for name, words in REQUIRED.items() if not (folder / name).is_file()]


def find_secrets(folder: Path, local_paths=()) -> list[str]:
    """Files of `folder` that hold an access token or a local path (home folder, the given paths): 'file: what'."""
    tokens = {value for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if (value := os.environ.get(name))}
    paths = {str(Path(p).resolve()) for p in local_paths} | {str(Path.home())}
    paths = {p for p in paths if len(p) > 1}  # a home of "/" is not a path to look for
    found = []
    for file in sorted(folder.rglob("*")):
        if not file.is_file() or file.suffix.lower() not in TEXT_SUFFIXES:
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        name = file.relative_to(folder)
        if TOKEN_PATTERN.search(text) or any(token in text for token in tokens if len(token) >= 8):
            found.append(f"{name}: an access token")
        for path in paths:
            if path in text:
                found.append(f"{name}: the local path {path}")
    return found


def check_publishable(folder: Path, local_paths=()) -> None:
    """Raise a `ValueError` naming what is missing or what must not be published."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (make one with `emotic export RUN_DIR EXPORT_DIR`)")
    missing = missing_parts(folder)
    if missing:
        raise ValueError(f"{folder} cannot be pushed: it has no {', '.join(missing)}; make a complete folder with "
                         f"`emotic export RUN_DIR EXPORT_DIR`")
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"{folder} holds pickled files {pickles}; only safetensors weights are published (pickles "
                         f"can run code when loaded)")
    secrets = find_secrets(folder, local_paths)
    if secrets:
        raise ValueError(f"{folder} must not be published as it is: {'; '.join(secrets)}")


def push(folder, repo_id: str, private: bool = False, revision: str | None = None,
         commit_message: str | None = None, token: str | None = None):
    """Create the repository if needed and upload the folder as one commit; returns the `CommitInfo`."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    check_publishable(folder)
    card = folder / "README.md"
    text = card.read_text(encoding="utf-8")
    if REPO_ID_PLACEHOLDER in text:  # the card's usage snippets name the repository now that it is known
        card.write_text(text.replace(REPO_ID_PLACEHOLDER, repo_id), encoding="utf-8")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    repo_id = repo.repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(folder_path=folder, repo_id=repo_id, revision=revision,
                             commit_message=commit_message or "Upload emotic expression classifier")


def main(argv=None) -> int:
    parser = command_parser("emotic push", __doc__)
    parser.add_argument("export_dir", help="a folder made by `emotic export`")
    parser.add_argument("repo_id", help="namespace/name on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    parser.add_argument("--commit-message", default=None)
    args = parser.parse_args(argv)
    try:
        commit = push(args.export_dir, args.repo_id, args.private, args.revision, args.commit_message)
    except ValueError as error:
        print(f"emotic push: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.export_dir} to {args.repo_id}: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
