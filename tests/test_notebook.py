"""examples/lesson.ipynb runs end to end on every installed backend, and is stored clean.

The notebook runs in a fresh IPython kernel of this interpreter (so at the frameworks' defaults:
JAX in 32-bit mode), from examples/ as a student would open it, with ``BACKEND`` set by a cell
inserted after its ``parameters`` cell (the papermill convention).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polyconv.backends import Backend

nbformat = pytest.importorskip("nbformat", reason="running the notebook needs nbformat")
nbclient = pytest.importorskip("nbclient", reason="running the notebook needs nbclient")
pytest.importorskip("ipykernel", reason="running the notebook needs ipykernel")
pytest.importorskip("matplotlib", reason="the notebook draws with matplotlib")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "lesson.ipynb"
# The lesson, its learning, and the four exercises each draw one figure.
FIGURES = 7


def _read() -> object:
    return nbformat.read(NOTEBOOK, as_version=4)


def _execute(backend: str) -> object:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    notebook = _read()
    cells = notebook.cells  # type: ignore[attr-defined]
    parameters = next(
        i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])
    )
    cells.insert(parameters + 1, nbformat.v4.new_code_cell(f"BACKEND = {backend!r}"))
    # No kernel directories: "python3" is then ipykernel's own spec for this interpreter, whatever
    # kernels are registered on the machine (a registered "python3" may run another Python).
    kernel = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )
    client = nbclient.NotebookClient(
        notebook, km=kernel, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    return notebook


def test_notebook_is_stored_without_outputs() -> None:
    code = [cell for cell in _read().cells if cell.cell_type == "code"]  # type: ignore[attr-defined]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_notebook_has_one_line_choosing_the_backend() -> None:
    notebook = _read()
    (parameters,) = (
        cell
        for cell in notebook.cells  # type: ignore[attr-defined]
        if "parameters" in cell.metadata.get("tags", [])
    )
    assert parameters.source.startswith('BACKEND = "numpy"')
    assert len(parameters.source.splitlines()) == 1


def test_notebook_runs_end_to_end_with_its_figures(backend: Backend) -> None:
    notebook = _execute(backend.name)
    outputs = [
        output
        for cell in notebook.cells  # type: ignore[attr-defined]
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    warnings = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert warnings == []
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == FIGURES
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    assert f"this run: ['{backend.name}']" in printed
    assert "as_matrix == built by hand from the two rules: True" in printed
