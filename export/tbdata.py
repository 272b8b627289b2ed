"""Test-bench vectors for the hls4ml project, written from qnet's simulator.

``tb_data/tb_input_features.dat`` holds the inputs already quantised by the graph's input type
and ``tb_data/tb_output_predictions.dat`` the simulator's outputs, one sample per line, in
hls4ml's channels-last memory order, so the HLS project's own C simulation checks itself
against qnet's simulation. Values are exact binary fractions printed with ``repr`` (shortest
round-trip decimal), so parsing them back gives the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qnet.export.hls_base import HlsExport, to_channels_last
from qnet.hw.atomic import atomic_write
from qnet.hw.simulator import simulate

__all__ = ["write_tb_data"]


def _write_dat(path: Path, rows: np.ndarray) -> None:
    atomic_write(path, "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows))


def write_tb_data(
    export: HlsExport, x: np.ndarray, project_dir: str | Path | None = None
) -> tuple[Path, Path]:
    """Write ``tb_input_features.dat`` and ``tb_output_predictions.dat`` for ``x``.

    Parameters
    ----------
    export : HlsExport
    x : numpy.ndarray
        Float input (N, *input shape), quantised here once by the input type.
    project_dir : path, optional
        Defaults to the export's output folder.

    Returns
    -------
    (Path, Path)
        The input and output files.
    """
    graph = export.graph
    root = Path(project_dir) if project_dir is not None else export.output_dir
    xq = export.hls_input(x)
    n = xq.shape[0]
    y = np.asarray(simulate(graph, graph.input_type.quantize(np.asarray(x, dtype=np.float64))))
    cf = export.cf_shape[graph.output.name]
    y_cl = to_channels_last(y.reshape(n, *cf)) if len(cf) > 1 else y
    inp = root / "tb_data" / "tb_input_features.dat"
    out = root / "tb_data" / "tb_output_predictions.dat"
    _write_dat(inp, xq.reshape(n, -1))
    _write_dat(out, y_cl.reshape(n, -1))
    return inp, out
