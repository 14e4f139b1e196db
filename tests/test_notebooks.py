"""Notebooks are committed with the outputs of a real run (`make notebooks`): their code must
compile and no committed output may be an error."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles_and_holds_no_error(notebook):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code
    for cell in code:
        compile("".join(cell["source"]), f"{notebook.name}", "exec")
        assert all(output["output_type"] != "error" for output in cell["outputs"]), cell["source"]
