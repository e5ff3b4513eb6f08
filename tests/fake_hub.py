"""An in-process fake of the Hugging Face Hub's HTTP API, for push/pull round trips without a network.

`FakeHub` answers the requests that `huggingface_hub` (2.x, `httpx2`) sends for `create_repo`, `create_commit` /
`upload_file` (files travel inside the commit request: every preupload answer is `uploadMode: "regular"`),
`ModelCard.validate`, `hf_hub_download` / `snapshot_download` (HEAD and GET on `/{repo}/resolve/{rev}/{file}`) and
`model_info` / `list_repo_files`. Model repositories only. Each commit stores a full snapshot of the repository, so
a file can be read back at `main` or at any commit id. Requests it does not know are answered 501 and recorded in
`FakeHub.unhandled`; the `fake_hub` fixture fails the test if there are any.

Use the `fake_hub` fixture (or `installed(hub, home)` as a context manager): it routes the shared `huggingface_hub`
HTTP client to the fake, switches offline mode off, and points HF_HOME, the hub cache and transformers' remote
code cache at a temporary folder, all restored afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httpx2
import huggingface_hub
import pytest
import transformers.dynamic_module_utils
import transformers.utils.hub
from huggingface_hub import constants
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

ENDPOINT = constants.ENDPOINT


def git_blob_sha(content: bytes) -> str:
    """The git blob id of `content`, which the Hub sends as the ETag of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class FakeRepo:
    """A model repository: the snapshot of every commit, oldest first, and the id of the head of `main`."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    head: str = "0" * 40

    @property
    def files(self) -> dict[str, bytes]:
        """The files at the head of `main`."""
        return self.commits.get(self.head, {})

    def snapshot(self, revision: str) -> dict[str, bytes] | None:
        """The files at `revision` (`main` or a commit id), None if there is no such revision."""
        if revision == "main":
            return self.files
        return self.commits.get(revision)

    def commit(self, added: dict[str, bytes], deleted: set[str]) -> str:
        """Apply one commit on `main` and return its id (a hash of the parent and of the new snapshot)."""
        files = {path: data for path, data in self.files.items() if path not in deleted}
        files.update(added)
        digest = hashlib.sha1(self.head.encode())
        for path in sorted(files):
            digest.update(f"{path}\0{git_blob_sha(files[path])}\0".encode())
        self.head = digest.hexdigest()
        self.commits[self.head] = files
        return self.head


def _error(status: int, code: str, message: str) -> httpx2.Response:
    """A Hub error answer; `huggingface_hub` maps `X-Error-Code` to its exception classes."""
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    return httpx2.Response(status, headers=headers, json={"error": message})


class FakeHub:
    """The repositories and the request router (an `httpx2.MockTransport` handler)."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[str] = []
        self.unhandled: list[str] = []

    # ---------------------------------------------------------------------------------------------------------
    # helpers for tests
    def files(self, repo_id: str) -> dict[str, bytes]:
        """The files at the head of `main` of `repo_id`."""
        return self.repos[repo_id].files

    def put(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Create `repo_id` if needed and commit `files` to it directly (as another Hub user would)."""
        return self.repos.setdefault(repo_id, FakeRepo(repo_id)).commit(files, set())

    # ---------------------------------------------------------------------------------------------------------
    # routing
    def handle(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one request of the `huggingface_hub` client."""
        path = unquote(request.url.path)
        self.requests.append(f"{request.method} {path}")
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            response = self._api(request, parts[1:])
        elif len(parts) >= 5 and parts[2] == "resolve":
            response = self._resolve(request, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        else:
            response = None
        if response is None:
            self.unhandled.append(f"{request.method} {request.url}")
            response = httpx2.Response(501, json={"error": f"fake hub: no route for {request.method} {path}"})
        return response

    def _api(self, request: httpx2.Request, parts: list[str]) -> httpx2.Response | None:
        method = request.method
        if method == "POST" and parts == ["repos", "create"]:
            return self._create_repo(json.loads(request.content))
        if method == "POST" and parts == ["validate-yaml"]:
            return httpx2.Response(200, json={})
        if method == "GET" and parts == ["agent-harnesses"]:  # huggingface_hub's user-agent telemetry registry
            return httpx2.Response(200, json={"standardEnvVars": [], "harnesses": {}})
        if len(parts) < 3 or parts[0] != "models":
            return None
        repo_id, rest = "/".join(parts[1:3]), parts[3:]
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", f"Repository {repo_id} not found")
        if method == "POST" and len(rest) >= 2 and rest[0] == "preupload":
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if method == "POST" and len(rest) >= 2 and rest[0] == "commit":
            return self._commit(repo, "/".join(rest[1:]), request.content)
        if method == "GET" and (not rest or rest[0] == "revision"):
            return self._model_info(repo, "/".join(rest[1:]) or "main")
        if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            recursive = request.url.params.get("recursive", "").lower() in ("1", "true")
            return self._tree(repo, rest[1], "/".join(rest[2:]), recursive)
        return None

    # ---------------------------------------------------------------------------------------------------------
    # endpoints
    def _create_repo(self, body: dict) -> httpx2.Response:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        self.repos.setdefault(repo_id, FakeRepo(repo_id))
        return httpx2.Response(200, json={"url": f"{ENDPOINT}/{repo_id}", "name": repo_id, "id": repo_id})

    def _commit(self, repo: FakeRepo, revision: str, body: bytes) -> httpx2.Response:
        if revision != "main":
            return _error(404, "RevisionNotFound", f"fake hub commits to main only, not {revision}")
        added: dict[str, bytes] = {}
        deleted: set[str] = set()
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                deleted.add(item["value"]["path"])
            elif item["key"] != "header":
                return _error(400, "BadRequest", f"fake hub: unsupported commit operation {item['key']}")
        oid = repo.commit(added, deleted)
        url = f"{ENDPOINT}/{repo.repo_id}/commit/{oid}"
        return httpx2.Response(200, json={"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None})

    def _model_info(self, repo: FakeRepo, revision: str) -> httpx2.Response:
        files = repo.snapshot(revision)
        if files is None:
            return _error(404, "RevisionNotFound", f"Revision {revision} not found")
        sha = repo.head if revision == "main" else revision
        siblings = [{"rfilename": path, "size": len(data)} for path, data in sorted(files.items())]
        info = {"id": repo.repo_id, "modelId": repo.repo_id, "sha": sha, "private": False, "siblings": siblings}
        return httpx2.Response(200, json=info)

    def _tree(self, repo: FakeRepo, revision: str, folder: str, recursive: bool) -> httpx2.Response:
        files = repo.snapshot(revision)
        if files is None:
            return _error(404, "RevisionNotFound", f"Revision {revision} not found")
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        inside = {path: data for path, data in files.items() if path.startswith(prefix)}
        if prefix and not inside:
            return _error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        entries: dict[str, dict] = {}
        for path, data in inside.items():
            child = path[len(prefix) :].split("/")
            if recursive or len(child) == 1:
                entries[path] = {"type": "file", "path": path, "oid": git_blob_sha(data), "size": len(data)}
            if len(child) > 1:  # the folders on the way (only the first level unless recursive)
                for depth in range(1, len(child) if recursive else 2):
                    folder_path = prefix + "/".join(child[:depth])
                    entries[folder_path] = {"type": "directory", "path": folder_path, "oid": "0" * 40, "size": 0}
        return httpx2.Response(200, json=[entries[path] for path in sorted(entries)])

    def _resolve(self, request: httpx2.Request, repo_id: str, revision: str, filename: str) -> httpx2.Response | None:
        if request.method not in ("HEAD", "GET"):
            return None
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", f"Repository {repo_id} not found")
        files = repo.snapshot(revision)
        if files is None:
            return _error(404, "RevisionNotFound", f"Revision {revision} not found")
        if filename not in files:
            return _error(404, "EntryNotFound", f"{filename} does not exist on {revision}")
        data = files[filename]
        headers = {
            "ETag": f'"{git_blob_sha(data)}"',
            "X-Repo-Commit": repo.head if revision == "main" else revision,
            "Content-Length": str(len(data)),
            "Accept-Ranges": "bytes",
        }
        return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)


@contextlib.contextmanager
def installed(hub: FakeHub, home: Path) -> Iterator[FakeHub]:
    """Route `huggingface_hub`'s HTTP client to `hub`, online, with HF_HOME at `home`; restore everything after.

    Remote code loaded from the fake Hub is imported as `transformers_modules.*` from `home / "modules"`; those
    modules are dropped from `sys.modules` on exit, so the next test imports its own copy.
    """
    modules = str(home / "modules")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"):
            mp.delenv(name, raising=False)
        mp.setenv("HF_HOME", str(home))
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setattr(constants, "HF_HOME", str(home))
        mp.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        mp.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        mp.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        mp.setattr(transformers.utils.hub, "HF_MODULES_CACHE", modules)
        mp.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", modules)
        mp.setattr(sys, "path", list(sys.path))
        for name in [name for name in sys.modules if name.split(".")[0] == "transformers_modules"]:
            mp.delitem(sys.modules, name)
        before = set(sys.modules)
        huggingface_hub.set_client_factory(
            lambda: httpx2.Client(
                transport=httpx2.MockTransport(hub.handle),
                event_hooks={"request": [hf_request_event_hook]},
                follow_redirects=True,
            )
        )
        try:
            yield hub
        finally:
            huggingface_hub.set_client_factory(default_client_factory)
            for name in set(sys.modules) - before:
                if name.split(".")[0] == "transformers_modules":
                    del sys.modules[name]


@pytest.fixture(name="fake_hub")
def fake_hub_fixture(tmp_path: Path) -> Iterator[FakeHub]:
    """A fresh `FakeHub`, installed for the duration of the test; fails the test on requests it cannot answer."""
    hub = FakeHub()
    with installed(hub, tmp_path / "hf_home"):
        yield hub
    assert not hub.unhandled, f"fake hub: unanswered requests {hub.unhandled}"
