"""The README's Python snippets run as written."""

from __future__ import annotations

import re

from conftest import REPO_ROOT


def python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # the snippets save into the working directory
    namespace: dict = {}
    for block in blocks:  # later snippets reuse names from earlier ones, as a reader would
        exec(compile(block, "README.md", "exec"), namespace)
