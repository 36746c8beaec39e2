"""The repository explains itself and checks itself: what a new clone has is what its README names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make_target(name: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_readme_points_only_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme
    assert "docs/architecture.md" in readme
    # Every relative link of the form `../x` would leave the clone.
    assert not re.findall(r"`\.\./[^`]+`", readme)


def test_make_test_runs_ruff_on_the_whole_tree():
    recipe = _make_target("test")
    assert any("ruff check src tests bench" in line for line in recipe), recipe
    assert any("lint-imports" in line for line in recipe), recipe


def test_ruff_passes_on_the_whole_tree():
    ruff = Path(sys.executable).parent / "ruff"
    command = [str(ruff)] if ruff.exists() else [shutil.which("ruff") or "ruff"]
    result = subprocess.run(
        [*command, "check", "--no-cache", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
