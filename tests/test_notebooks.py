"""Every notebook in docs/notebooks runs top to bottom on a real Jupyter kernel (nbclient), in a fresh folder, with
LAB_NOTEBOOK_FAST=1 (short trainings); a notebook that breaks fails the suite. Outputs stay out of git."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "docs" / "notebooks").glob("*.ipynb"))


def test_there_are_at_least_four_notebooks():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_is_stored_without_outputs(path, tmp_path, monkeypatch):
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: strip its outputs"
    monkeypatch.setenv("LAB_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ["LAB_TEST_THREADS"])  # the cores this test has (conftest.py)
    client = NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback, on any error
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "a figure is shown"
    assert (tmp_path / "runs").is_dir() and os.listdir(tmp_path / "runs"), "it trained into LAB_RUNS"
