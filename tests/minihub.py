"""A loopback stand-in for the Hugging Face Hub's HTTP API, enough for the real `huggingface_hub` client and
transformers to push and pull: whoami, repo create/delete, preupload + NDJSON commits (inline and git-LFS "basic"
uploads), model info, tree and paths-info listings, commits, and resolve downloads (HEAD/GET, ranges).

Standard library only; binds 127.0.0.1; state in memory. Run:

    python tests/minihub.py --port 0      # prints "MINIHUB_READY http://127.0.0.1:PORT" once listening

Clients need `HF_ENDPOINT=<that URL>` and `HF_HUB_DISABLE_XET=1` (the server offers no Xet, and huggingface_hub
2.x uploads LFS files through Xet without fallback unless it is disabled). Branches, but no auth, tags, PRs or Xet.
"""

import argparse
import base64
import hashlib
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

USER = "testuser"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".npy", ".npz",
                ".zip", ".gz", ".tar", ".png", ".jpg", ".jpeg")
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    """Repositories as a list of commits; each commit maps paths to blobs (sha256 → bytes)."""

    def __init__(self, lfs_threshold: int):
        self.lfs_threshold = lfs_threshold
        self.lock = threading.Lock()
        self.blobs: dict[str, bytes] = {}
        self.repos: dict[tuple, dict] = {}  # (type, repo_id) -> {"private", "commits": [...], "branches": {}}

    def is_lfs(self, path: str, size: int) -> bool:
        if self.lfs_threshold < 0:
            return False
        return size >= self.lfs_threshold or path.lower().endswith(LFS_SUFFIXES)

    def create(self, repo_type, repo_id, private, sdk=None):
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return False
            first = {"id": uuid.uuid4().hex + uuid.uuid4().hex[:8], "title": "initial commit", "message": "",
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "files": {}}
            self.repos[(repo_type, repo_id)] = {"private": bool(private), "commits": [first],
                                                "branches": {"main": first["id"]}, "sdk": sdk}
            return True

    def commit_at(self, repo, revision):
        revision = unquote(revision)
        revision = repo["branches"].get("main" if revision == "HEAD" else revision, revision)
        for commit in repo["commits"]:
            if commit["id"] == revision:
                return commit
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: Hub = None
    quiet = True

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)

    # -- plumbing --------------------------------------------------------------------------------------------------

    @property
    def endpoint(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def send(self, status, payload=None, headers=None, content_type="application/json", head=False):
        data = payload if isinstance(payload, bytes) else json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def error(self, status, code, message, head=False):
        self.send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}, head=head)

    def repo(self, repo_type, repo_id, head=False):
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            self.error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}", head)
        return repo

    # -- routing ---------------------------------------------------------------------------------------------------

    def do_GET(self):
        self.route("GET")

    def do_HEAD(self):
        self.route("HEAD")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        try:
            if path == "/health":
                return self.send(200, {"status": "ok"})
            if path == "/api/whoami-v2":
                return self.send(200, {"type": "user", "name": USER, "fullname": "Test User", "orgs": [],
                                       "auth": {"accessToken": {"displayName": "test", "role": "write"}}})
            if path == "/api/repos/create" and method == "POST":
                return self.create_repo()
            if path == "/api/repos/delete" and method == "DELETE":
                return self.delete_repo()
            if path == "/api/validate-yaml" and method == "POST":
                self.body()
                return self.send(200, {"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?", path)
            if match:
                return self.api(method, REPO_TYPES[match[1]], unquote(match[2]), match[3] or "", query)
            match = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+?)\.git/info/lfs/objects/batch", path)
            if match and method == "POST":
                return self.lfs_batch()
            match = re.fullmatch(r"/lfs-objects/([0-9a-f]{64})", path)
            if match:
                return self.lfs_object(method, match[1])
            match = re.fullmatch(r"/lfs-verify/([0-9a-f]{64})", path)
            if match:
                self.body()
                ok = match[1] in self.hub.blobs
                return self.send(200 if ok else 404, {"ok": ok})
            match = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if match and method in ("GET", "HEAD"):
                repo_type = REPO_TYPES[match[1]] if match[1] else "model"
                return self.resolve(method, repo_type, unquote(match[2]), match[3], unquote(match[4]))
            self.error(404, "EntryNotFound", f"no route for {method} {path}", method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- repos -----------------------------------------------------------------------------------------------------

    def create_repo(self):
        payload = json.loads(self.body() or b"{}")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        repo_type = payload.get("type") or "model"
        private = payload.get("private") or payload.get("visibility") == "private"  # 2.x sends "visibility"
        if repo_type == "space" and payload.get("sdk") not in ("gradio", "docker", "static"):
            return self.send(400, {"error": "Invalid sdk: a Space needs one of gradio, docker, static"})
        if not self.hub.create(repo_type, repo_id, private, payload.get("sdk")):
            return self.send(409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"})
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self.send(200, {"url": f"{self.endpoint}/{prefix}{repo_id}", "name": repo_id, "id": uuid.uuid4().hex})

    def delete_repo(self):
        payload = json.loads(self.body() or b"{}")
        key = (payload.get("type") or "model", f"{payload.get('organization') or USER}/{payload['name']}")
        with self.hub.lock:
            found = self.hub.repos.pop(key, None)
        self.send(200 if found else 404, {})

    def api(self, method, repo_type, repo_id, rest, query):
        head = method == "HEAD"
        repo = self.repo(repo_type, repo_id, head)
        if repo is None:
            return
        parts = rest.split("/", 2) if rest else []
        action = parts[0] if parts else ""
        revision = parts[1] if len(parts) > 1 else "main"
        if action in ("", "revision"):
            return self.info(repo_type, repo_id, repo, revision, head)
        if action == "branch" and method == "POST":
            self.body()
            with self.hub.lock:
                if unquote(revision) in repo["branches"]:
                    return self.send(409, {"error": "Reference already exists"})
                repo["branches"][unquote(revision)] = repo["branches"]["main"]
            return self.send(200, {})
        commit = self.hub.commit_at(repo, revision)
        if commit is None:
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}", head)
        if action == "preupload" and method == "POST":
            files = json.loads(self.body())["files"]
            return self.send(200, {"files": [
                {"path": f["path"], "uploadMode": "lfs" if self.hub.is_lfs(f["path"], f.get("size", 0)) else "regular",
                 "shouldIgnore": False} for f in files], "commitOid": commit["id"]})
        if action == "commit" and method == "POST":
            return self.commit(repo_id, repo, revision)
        if action == "tree":
            prefix = unquote(parts[2]).strip("/") if len(parts) > 2 else ""
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self.send(200, self.tree(commit, prefix, recursive))
        if action == "paths-info" and method == "POST":
            raw = self.body()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(raw).get("paths", [])
            else:
                paths = parse_qs(raw.decode()).get("paths", [])
            entries = []
            for path in paths:
                entries += [e for e in self.tree(commit, "", True) if e["path"] == path.strip("/")]
            return self.send(200, entries)
        if action == "commits":
            by_id = {c["id"]: c for c in repo["commits"]}
            history = [commit]
            while history[-1].get("parent") in by_id:
                history.append(by_id[history[-1]["parent"]])
            return self.send(200, [{"id": c["id"], "title": c["title"], "message": c["message"],
                                    "authors": [{"user": USER}], "date": c["date"]} for c in history])
        if action == "refs":
            return self.send(200, {"branches": [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": target}
                                                for name, target in repo["branches"].items()],
                                   "converts": [], "tags": []})
        self.error(404, "EntryNotFound", f"unsupported API call {action!r}", head)

    def info(self, repo_type, repo_id, repo, revision, head):
        commit = self.hub.commit_at(repo, revision)
        if commit is None:
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}", head)
        self.send(200, {"_id": repo_id, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                        "sha": commit["id"], "private": repo["private"], "disabled": False, "gated": False,
                        "tags": [], "downloads": 0, "likes": 0, "lastModified": commit["date"],
                        "createdAt": repo["commits"][0]["date"],
                        "siblings": [{"rfilename": path} for path in sorted(commit["files"])],
                        **({"sdk": repo["sdk"]} if repo_type == "space" else {})}, head=head)

    def tree(self, commit, prefix, recursive):
        entries, folders = [], set()
        for path, meta in sorted(commit["files"].items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            if "/" in rest and not recursive:
                folders.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                continue
            for depth in range(rest.count("/")):
                folders.add((prefix + "/" if prefix else "") + "/".join(rest.split("/")[:depth + 1]))
            entry = {"type": "file", "path": path, "size": meta["size"], "oid": meta["git_oid"]}
            if meta["lfs"]:
                entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
            entries.append(entry)
        return [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0}
                for folder in sorted(folders)] + entries

    def commit(self, repo_id, repo, revision):
        branch = unquote(revision)
        if branch not in repo["branches"]:
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {branch} (not a branch)")
        lines = [json.loads(line) for line in self.body().decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with self.hub.lock:
            parent = self.hub.commit_at(repo, branch)
            if header.get("parentCommit") and header["parentCommit"] != parent["id"]:
                return self.send(412, {"error": "A commit has happened since. Please refresh and try again."})
            files = dict(parent["files"])
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                        value["content"].encode()
                    sha = hashlib.sha256(data).hexdigest()
                    self.hub.blobs[sha] = data
                    files[value["path"]] = {"sha256": sha, "size": len(data), "lfs": False,
                                            "git_oid": git_blob_sha1(data)}
                elif key == "lfsFile":
                    if value["oid"] not in self.hub.blobs:
                        return self.send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                    data = self.hub.blobs[value["oid"]]
                    pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\n"
                               f"size {len(data)}\n").encode()
                    files[value["path"]] = {"sha256": value["oid"], "size": len(data), "lfs": True,
                                            "git_oid": git_blob_sha1(pointer)}
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: m for p, m in files.items() if not p.startswith(folder)}
            commit = {"id": hashlib.sha1(f"{parent['id']}{time.time_ns()}".encode()).hexdigest(),
                      "title": header.get("summary", ""), "message": header.get("description", ""),
                      "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "files": files,
                      "parent": parent["id"]}
            repo["commits"].append(commit)
            repo["branches"][branch] = commit["id"]
        self.send(200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit['id']}",
                        "commitOid": commit["id"], "pullRequestUrl": None})

    # -- LFS -------------------------------------------------------------------------------------------------------

    def lfs_batch(self):
        payload = json.loads(self.body())
        objects = []
        for item in payload.get("objects", []):
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.hub.blobs:
                entry["actions"] = {"upload": {"href": f"{self.endpoint}/lfs-objects/{item['oid']}", "header": {}},
                                    "verify": {"href": f"{self.endpoint}/lfs-verify/{item['oid']}", "header": {}}}
            objects.append(entry)
        self.send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                  content_type="application/vnd.git-lfs+json")

    def lfs_object(self, method, sha):
        if method == "PUT":
            data = self.body()
            if hashlib.sha256(data).hexdigest() != sha:
                return self.send(400, {"error": "sha256 mismatch"})
            self.hub.blobs[sha] = data
            return self.send(200, {})
        if sha not in self.hub.blobs:
            return self.error(404, "EntryNotFound", "no such LFS object", method == "HEAD")
        self.send(200, self.hub.blobs[sha], content_type="application/octet-stream", head=method == "HEAD")

    # -- downloads -------------------------------------------------------------------------------------------------

    def resolve(self, method, repo_type, repo_id, revision, path):
        head = method == "HEAD"
        repo = self.repo(repo_type, repo_id, head)
        if repo is None:
            return
        commit = self.hub.commit_at(repo, revision)
        if commit is None:
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}", head)
        meta = commit["files"].get(path)
        if meta is None:
            return self.error(404, "EntryNotFound", f"{path} does not exist at {unquote(revision)}", head)
        data = self.hub.blobs[meta["sha256"]]
        headers = {"X-Repo-Commit": commit["id"], "Accept-Ranges": "bytes",
                   "ETag": f'"{meta["sha256"] if meta["lfs"] else meta["git_oid"]}"'}
        if meta["lfs"]:
            headers.update({"X-Linked-Etag": f'"{meta["sha256"]}"', "X-Linked-Size": str(meta["size"])})
        status, ranged = 200, self.headers.get("Range")
        if ranged and (match := re.fullmatch(r"bytes=(\d+)-(\d*)", ranged.strip())):
            start = int(match[1])
            end = int(match[2]) if match[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self.send(status, data, headers, content_type="application/octet-stream", head=head)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--lfs-threshold", type=int, default=10 * 2**20,
                        help="files this large or with a weights suffix go through LFS; -1: every file inline")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    Handler.hub = Hub(args.lfs_threshold)
    Handler.quiet = not args.verbose
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"MINIHUB_READY http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
