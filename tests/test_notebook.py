"""The quickstart notebook runs top to bottom (nbclient, a real kernel) in well under a minute."""

from __future__ import annotations

import time

import pytest
from conftest import REPO, TEST_TINY

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs_plots_and_renders_a_tree(tmp_path, monkeypatch):
    # the tests' small tiny model (trained once, cached); the kernel imports this checkout's sisearch
    monkeypatch.setenv("SISEARCH_QUICKSTART", " ".join(f"model.{k}={v}" for k, v in TEST_TINY.items()))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.time()
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert time.time() - start < 60
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no accuracy plot"
    pages = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    trees = [page for page in pages if "sisearch tree" in page]
    assert len(trees) == 1 and "<details" in trees[0]
