"""The README's and docs/'s ```python snippets run as written, in order, in one namespace per file (the Hub is the
in-process fake of `fake_hub.py`). ```py blocks are illustrations that need files a user downloads or trains
(fastai's WT103 weights, the main job's folder)."""

from __future__ import annotations

import re

import pytest
from conftest import REPO_ROOT
from fake_hub import FakeHub, fake_hub_fixture  # noqa: F401 (the `fake_hub` fixture)


def python_blocks(path=REPO_ROOT / "README.md") -> list[str]:
    text = path.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_snippets_run(tmp_path, monkeypatch, fake_hub: FakeHub):
    blocks = python_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the snippets save into the working directory
    namespace: dict = {}
    for block in blocks:  # later snippets reuse names from earlier ones, as a reader would
        exec(compile(block, "README.md", "exec"), namespace)
    assert "you/imdb-bpt3c" in fake_hub.repos


DOCS_WITH_CODE = sorted(p.name for p in (REPO_ROOT / "docs").glob("*.md") if python_blocks(p))


@pytest.mark.parametrize("name", DOCS_WITH_CODE)
def test_docs_python_snippets_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(REPO_ROOT / "docs" / name):
        exec(compile(block, f"docs/{name}", "exec"), namespace)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for page in (REPO_ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in readme, page.name
    assert len(readme.splitlines()) <= 250
