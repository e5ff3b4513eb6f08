"""The README's ```python snippets run as written, in order, in one namespace (the Hub is the in-process fake of
`fake_hub.py`). ```py blocks are illustrations that need files a user downloads (fastai's WT103 weights)."""

from __future__ import annotations

import re

from conftest import REPO_ROOT
from fake_hub import FakeHub, fake_hub_fixture  # noqa: F401 (the `fake_hub` fixture)


def python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_snippets_run(tmp_path, monkeypatch, fake_hub: FakeHub):
    blocks = python_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the snippets save into the working directory
    namespace: dict = {}
    for block in blocks:  # later snippets reuse names from earlier ones, as a reader would
        exec(compile(block, "README.md", "exec"), namespace)
    assert "you/imdb-bpt3c" in fake_hub.repos
