"""A local server that speaks the Hugging Face Hub's HTTP API, for the real `huggingface_hub` and `datasets` clients.

Tests point `HF_ENDPOINT` at it (with `HF_HUB_DISABLE_XET=1`) and then use the clients exactly as users do:
`create_repo`, `upload_folder`, `Dataset.push_to_hub`, `snapshot_download`, `hf_hub_download`,
`load_dataset(repo_id)` (streaming too). It keeps repositories in memory, one branch (`main`) each with the tree
of every commit, and the files' bytes on disk by content (a folder removed when it stops: uploaded checkpoints take
gigabytes), and implements the endpoints those calls use: repo creation and info, preupload, the LFS batch API
with basic transfers, ndjson commits, tree and paths-info listings, refs, commits, and `resolve` with ranges; info,
listings and `resolve` answer at `main` or at any commit id (`revision=`). Errors carry
the `X-Error-Code` headers the client turns into `RepositoryNotFoundError` / `EntryNotFoundError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

LFS_SUFFIXES = (".parquet", ".arrow", ".safetensors", ".bin", ".pt", ".pth", ".wav", ".flac", ".mp3", ".png", ".onnx")
KNOWN_LICENSES = {"mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0", "cc-by-nc-4.0", "other", "unknown"}
PIPELINE_TAGS = {"text-to-speech", "text-to-audio", "automatic-speech-recognition", "audio-to-audio"}
PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass(frozen=True)
class StoredFile:
    """One file of a repo: its bytes on disk under their SHA-256, and the two ids the Hub reports for it."""

    path: Path
    lfs: bool
    size: int
    sha256: str
    git_oid: str

    @classmethod
    def store(cls, folder: Path, data: bytes, lfs: bool, sha256: str | None = None) -> "StoredFile":
        """Writes `data` under its SHA-256 (`sha256`: already computed and checked by the caller)."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        path = folder / sha256
        if not path.exists():
            partial = folder / f".{sha256}.{threading.get_ident()}"
            partial.write_bytes(data)
            os.replace(partial, path)
        git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return cls(path, lfs, len(data), sha256, git_oid)

    @property
    def content(self) -> bytes:
        return self.path.read_bytes()

    def read(self, start: int, end: int) -> bytes:
        """Bytes `start` to `end`, both included (an HTTP range)."""
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(end - start + 1)


class RepoFiles(Mapping):
    """`{path: bytes}` of a repo's files, each read from disk when asked for."""

    def __init__(self, files: dict[str, StoredFile]):
        self._files = files

    def __getitem__(self, path: str) -> bytes:
        return self._files[path].content

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    files: dict[str, StoredFile] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)
    trees: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    """The files at each commit (`files` is the tree of `main`, the newest)."""

    @property
    def head(self) -> str:
        return self.commits[-1]["id"]

    def commit(self, title: str) -> str:
        digest = hashlib.sha1(f"{self.repo_id}:{len(self.commits)}:{time.time_ns()}".encode()).hexdigest()
        self.commits.append({"id": digest, "title": title, "message": title, "authors": [{"user": "test"}],
                             "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())})
        self.trees[digest] = dict(self.files)
        return digest

    def at(self, revision: str | None) -> tuple[str, dict[str, StoredFile]] | None:
        """(commit, files) of `main` or of a commit id; None for a revision the repo does not have."""
        commit = self.head if revision in (None, "", "main") else revision
        return (commit, self.trees[commit]) if commit in self.trees else None


class HubState:
    def __init__(self, storage: Path):
        self.storage = storage
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, StoredFile] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    base_url: str

    def log_message(self, *args):  # quiet
        pass

    # -- helpers ---------------------------------------------------------------------------------------------------
    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, payload=b"", content_type="application/json", headers: dict | None = None,
             head: bool = False, length: int | None = None):
        """`length`: the Content-Length of a HEAD answer whose body is not read (that of the GET)."""
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def error(self, status: int, code: str, message: str, head: bool = False):
        self.send(status, {"error": message}, headers={"X-Error-Code": code, "X-Error-Message": message}, head=head)

    def repo(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.state.repos.get((repo_type, repo_id))

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base_url}/{PREFIXES[repo.repo_type]}{repo.repo_id}"

    def entries(self, files: dict[str, StoredFile], folder: str, recursive: bool) -> list[dict]:
        folder = folder.strip("/")
        prefix = f"{folder}/" if folder else ""
        out, dirs = [], set()
        for path, stored in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                parts = rest.split("/")
                for depth in range(1, len(parts) if recursive else 2):
                    dirs.add(prefix + "/".join(parts[:depth]))
                if not recursive:
                    continue
            out.append(self.file_entry(path, stored))
        out += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                for d in sorted(dirs)]
        return out

    @staticmethod
    def file_entry(path: str, stored: StoredFile) -> dict:
        entry = {"type": "file", "oid": stored.git_oid, "size": stored.size, "path": path}
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": 134}
        return entry

    def repo_info(self, repo: Repo, revision: str | None = None) -> dict:
        commit, files = repo.at(revision)
        return {
            "id": repo.repo_id, "_id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": commit, "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": [], "lastModified": repo.commits[-1]["date"], "createdAt": repo.commits[0]["date"],
            "siblings": [{"rfilename": p, "size": f.size} for p, f in sorted(files.items())],
        }

    # -- routing ------------------------------------------------------------------------------------------------------
    def do_HEAD(self):
        self.route("HEAD")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def route(self, method: str):
        url = urlparse(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.state.requests.append(f"{method} {path}")
        with self.state.lock:
            try:
                self.dispatch(method, path, query)
            except Exception as error:  # surfaced to the client as a 500 with the reason
                self.send(500, {"error": f"{type(error).__name__}: {error}"})

    def dispatch(self, method: str, path: str, query: dict):
        writes = method in ("POST", "PUT") and path != "/api/validate-yaml" and not path.startswith("/lfs-upload/")
        if writes and not self.headers.get("authorization"):  # as the Hub: writing needs a token
            return self.send(401, {"error": "Invalid username or password."},
                             headers={"X-Error-Message": "Invalid username or password."})
        if method == "POST" and path == "/api/repos/create":
            return self.create_repo(json.loads(self.body() or b"{}"))
        if method == "POST" and path == "/api/validate-yaml":
            return self.validate_yaml(json.loads(self.body()))
        if method == "GET" and path == "/api/whoami-v2":
            return self.send(200, {"type": "user", "name": "test", "orgs": [], "auth": {"type": "access_token"}})
        if method == "PUT" and path.startswith("/lfs-upload/"):
            return self.lfs_upload(path.rsplit("/", 1)[1])
        match = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if match and method == "POST":
            return self.lfs_batch(json.loads(self.body()))
        match = re.fullmatch(r"/api/(model|dataset|space)s/([^/]+/[^/]+)(?:/(.*))?", path)
        if match:
            repo_type, repo_id, rest = match.group(1), match.group(2), match.group(3) or ""
            return self.api(method, repo_type, repo_id, rest, query)
        match = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if match and method in ("GET", "HEAD"):
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(match.group(1) or "", "model")
            return self.resolve(repo_type, match.group(2), match.group(3), match.group(4), head=method == "HEAD")
        self.error(404, "EntryNotFound", f"no route for {method} {path}", head=method == "HEAD")

    # -- endpoints -------------------------------------------------------------------------------------------------------
    def create_repo(self, payload: dict):
        repo_type = payload.get("type") or "model"
        name, organization = payload["name"], payload.get("organization")
        repo_id = f"{organization}/{name}" if organization else f"test/{name}"
        existing = self.repo(repo_type, repo_id)
        if existing:
            return self.send(409, {"error": "You already created this repo", "url": self.repo_url(existing)})
        repo = Repo(repo_type, repo_id, private=bool(payload.get("private")))
        attributes = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
        repo.files[".gitattributes"] = StoredFile.store(self.state.storage, attributes, lfs=False)
        repo.commit("initial commit")
        self.state.repos[(repo_type, repo_id)] = repo
        self.send(200, {"url": self.repo_url(repo), "name": repo_id})

    def validate_yaml(self, payload: dict):
        """The Hub's metadata check, for the fields the project's cards set."""
        errors = []
        content = payload.get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            metadata, errors = {}, [{"message": f"invalid YAML: {error}"}]
        if not isinstance(metadata, dict):
            errors.append({"message": "metadata must be a mapping"})
            metadata = {}
        if "license" in metadata and metadata["license"] not in KNOWN_LICENSES:
            errors.append({"message": f"license {metadata['license']!r} is not a Hub licence id"})
        if "pipeline_tag" in metadata and metadata["pipeline_tag"] not in PIPELINE_TAGS:
            errors.append({"message": f"pipeline_tag {metadata['pipeline_tag']!r} is not a Hub pipeline tag"})
        languages = metadata.get("language", [])
        for language in [languages] if isinstance(languages, str) else languages or []:
            if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]+)?", str(language)):
                errors.append({"message": f"language {language!r} is not a language code"})
        for key in ("task_categories", "tags", "datasets"):
            if key in metadata and not isinstance(metadata[key], list):
                errors.append({"message": f"{key} must be a list"})
        bases = metadata.get("base_model", [])
        for base in [bases] if isinstance(bases, str) else bases:
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(base)):
                errors.append({"message": f"base_model {base!r} is not a model id"})
        if metadata.get("base_model_relation") not in (None, "adapter", "merge", "quantized", "finetune"):
            errors.append({"message": f"base_model_relation {metadata['base_model_relation']!r} is not allowed"})
        if "base_model_relation" in metadata and not bases:
            errors.append({"message": "base_model_relation needs a base_model"})
        errors += [{"message": m} for m in self.model_index_errors(metadata.get("model-index"))]
        self.send(400 if errors else 200, {"errors": errors, "warnings": []})

    @staticmethod
    def model_index_errors(index) -> list[str]:
        """The shape the Hub requires of `model-index` (name; results with task.type, dataset type and name,
        metrics with type and value)."""
        if index is None:
            return []
        if not isinstance(index, list):
            return ["model-index must be a list"]
        errors = []
        for entry in index:
            if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("results"), list):
                errors.append("model-index entries need a name and a list of results")
                continue
            for result in entry["results"]:
                if not isinstance(result.get("task"), dict) or "type" not in result["task"]:
                    errors.append("model-index result without task.type")
                dataset = result.get("dataset")
                if not isinstance(dataset, dict) or not {"type", "name"} <= set(dataset):
                    errors.append("model-index result without dataset type and name")
                for metric in result.get("metrics") or [None]:
                    if not isinstance(metric, dict) or not {"type", "value"} <= set(metric):
                        errors.append("model-index metric without type and value")
        return errors

    def lfs_batch(self, payload: dict):
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self.send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                  content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, oid: str):
        data = self.body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self.send(400, {"error": "sha256 mismatch"})
        self.state.lfs_objects[oid] = StoredFile.store(self.state.storage, data, lfs=True, sha256=oid)
        self.send(200, {})

    def api(self, method: str, repo_type: str, repo_id: str, rest: str, query: dict):
        repo = self.repo(repo_type, repo_id)
        if repo is None:
            return self.error(404, "RepoNotFound", f"Repository not found: {repo_id}", head=method == "HEAD")
        revision = rest.split("/", 1)[1] if rest.startswith(("revision/", "tree/", "paths-info/")) else None
        if rest.startswith("tree/"):
            revision = revision.split("/", 1)[0]
        if repo.at(revision) is None:
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=method == "HEAD")
        commit, files = repo.at(revision)
        if rest == "" or rest.startswith("revision/"):
            return self.send(200, self.repo_info(repo, revision), head=method == "HEAD")
        if rest.startswith("preupload/"):
            files = json.loads(self.body())["files"]
            answer = []
            for f in files:
                lfs = f["path"].endswith(LFS_SUFFIXES) or f.get("size", 0) > 1_000_000
                existing = repo.files.get(f["path"])
                answer.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                               "oid": existing.git_oid if existing else None})
            return self.send(200, {"files": answer, "commitOid": repo.head})
        if rest.startswith("commit/"):
            return self.commit(repo)
        if rest.startswith("tree/"):
            _, _, folder = rest[len("tree/"):].partition("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            if folder and not any(p.startswith(folder.rstrip("/") + "/") for p in files):
                return self.error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
            return self.send(200, self.entries(files, folder, recursive))
        if rest.startswith("paths-info/"):
            body = self.body()
            content_type = self.headers.get("Content-Type", "")
            paths = (json.loads(body)["paths"] if "json" in content_type
                     else parse_qs(body.decode()).get("paths", []))
            out = []
            for p in paths:
                p = p.strip("/")
                if p in files:
                    out.append(self.file_entry(p, files[p]))
                elif any(f.startswith(p + "/") for f in files):
                    out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
            return self.send(200, out)
        if rest == "refs":
            return self.send(200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head}],
                                   "tags": [], "converts": []})
        if rest.startswith("commits/"):
            return self.send(200, list(reversed(repo.commits)))
        self.error(404, "EntryNotFound", f"no route for {method} /api/{repo_type}s/{repo_id}/{rest}")

    def commit(self, repo: Repo):
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        title = "commit"
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                title = value.get("summary", title)
            elif key == "file":
                data = base64.b64decode(value["content"])
                repo.files[value["path"]] = StoredFile.store(self.state.storage, data, lfs=False)
            elif key == "lfsFile":
                if value["oid"] not in self.state.lfs_objects:
                    return self.send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                repo.files[value["path"]] = self.state.lfs_objects[value["oid"]]
            elif key == "deletedFile":
                repo.files.pop(value["path"], None)
            elif key == "deletedFolder":
                for p in [p for p in repo.files if p.startswith(value["path"].rstrip("/") + "/")]:
                    del repo.files[p]
        sha = repo.commit(title)
        self.send(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.repo_url(repo)}/commit/{sha}",
                        "commitMessage": title})

    def resolve(self, repo_type: str, repo_id: str, revision: str, file_path: str, head: bool):
        repo = self.repo(repo_type, repo_id)
        if repo is None:
            return self.error(404, "RepoNotFound", f"Repository not found: {repo_id}", head=head)
        if repo.at(revision) is None:
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        commit, files = repo.at(revision)
        stored = files.get(file_path)
        if stored is None:
            return self.error(404, "EntryNotFound", f"{file_path} does not exist on {revision}", head=head)
        size = stored.size
        headers = {"X-Repo-Commit": commit, "ETag": f'"{stored.sha256 if stored.lfs else stored.git_oid}"',
                   "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(size)})
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and size:
            start = int(match.group(1)) if match.group(1) else max(0, size - int(match.group(2)))
            end = int(match.group(2)) if match.group(1) and match.group(2) else size - 1
            end = min(end, size - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            status = 206
        content = b"" if head else stored.read(start, end)
        self.send(status, content, content_type="application/octet-stream", headers=headers, head=head,
                  length=end - start + 1)


class LocalHub:
    """Runs the server on 127.0.0.1 in a thread: `with LocalHub() as hub: os.environ["HF_ENDPOINT"] = hub.url`."""

    def __init__(self, port: int = 0):
        self.state = HubState(Path(tempfile.mkdtemp(prefix="local-hub-")))
        handler = type("Handler", (HubHandler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.state.storage, ignore_errors=True)

    def files(self, repo_id: str, repo_type: str = "model") -> Mapping[str, bytes]:
        """`{path: bytes}` of the repo's files at `main`, each read when asked for."""
        return RepoFiles(dict(self.state.repos[(repo_type, repo_id)].files))
