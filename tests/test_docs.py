"""The project stands alone: what it ships cites the paper and the official repository, not files a user lacks."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "README.md", *sorted((ROOT / "configs").glob("*.yaml")), *sorted((ROOT / "docs").glob("**/*.md")),
           *sorted((ROOT / "dytune").glob("**/*.py"))]


@pytest.mark.parametrize("reference", ["official-code.md", "paper.md", "shared/reference", "../shared"])
def test_no_shipped_file_cites_a_file_outside_the_project(reference):
    citing = [str(path.relative_to(ROOT)) for path in SHIPPED if reference in path.read_text(encoding="utf-8")]
    assert not citing, f"{reference} is cited by {citing}"
