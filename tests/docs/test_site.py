"""The documentation site builds with every link and anchor resolved (mkdocs --strict)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_site_builds_strict(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "iam" / "index.html").exists()
    nav = [p.relative_to(ROOT / "docs") for p in (ROOT / "docs").rglob("*.md")]
    listed = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    unlisted = [str(p) for p in nav if p.name != "index.md" and str(p) not in listed]
    assert not unlisted, f"docs/index.md does not list {unlisted}"
