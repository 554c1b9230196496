"""The one Markdown table writer."""
import pytest

from dytune.utils.tables import markdown_table


def test_markdown_table_lines():
    assert markdown_table(["run", "acc"], [["a", "1.00"], ["b", ""], ["c", 3]]) == (
        "| run | acc |\n|---|---|\n| a | 1.00 |\n| b |  |\n| c | 3 |")
    assert markdown_table(("x",), []) == "| x |\n|---|"


def test_a_row_of_another_width_is_refused():
    with pytest.raises(ValueError, match="row 1 has 1 cells, the header 2 \\(run, acc\\)"):
        markdown_table(["run", "acc"], [["a", "1"], ["b"]])
