"""The README's "Many files" walk-through runs as written, on twelve generated monthly files."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from activezarr.cli import main
from tests.catalog_files import write_series

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(heading: str) -> dict[str, list[str]]:
    text = README.read_text()
    start = text.index(f"## {heading}")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else None]
    blocks = re.findall(r"```(\w+)\n(.*?)```", body, flags=re.DOTALL)
    return {lang: [b for k, b in blocks if k == lang] for lang, _ in blocks}


def test_readme_many_files_walkthrough(tmp_path, monkeypatch, capsys):
    blocks = section_blocks("Many files: index → catalog → combine → reduce")
    assert blocks["bash"] and blocks["python"]
    write_series(tmp_path / "data", 12)
    monkeypatch.chdir(tmp_path)
    for line in blocks["bash"][0].splitlines():
        command = shlex.split(line.split("  #", 1)[0])
        assert command[0] == "activezarr"
        assert main(command[1:]) == 0, line
    out = capsys.readouterr().out
    assert "indexes/combined_tas_time.json" in out and "over 7 files" in out
    namespace: dict = {}
    exec(blocks["python"][0], namespace)  # noqa: S102 - the README's own example
    assert namespace["cat"].files_read[-1].endswith("tas_11.nc")
    assert len(namespace["hist"]) == 12  # the search
    assert len(namespace["col"].df) == 12 * 2  # the export: one row per file and data variable


@pytest.mark.parametrize("name", ["catalog.md"])
def test_docs_mention_every_catalog_command(name):
    text = (README.parent / "docs" / name).read_text()
    for command in (
        "catalog ls",
        "catalog search",
        "catalog show",
        "catalog export",
        "catalog verify",
        "catalog prune",
        "combine",
    ):
        assert f"activezarr {command}" in text
