"""Where and how the benchmarks' plots are written: SVG under bench/results/plots/, stable
from one run to the next where the data did not move."""

import matplotlib as mpl
from matplotlib.figure import Figure

from bench.common import REPO, RESULTS, log

PLOTS = RESULTS / "plots"

__all__ = ["PLOTS", "Figure", "save"]


def save(figure: Figure, name: str) -> None:
    PLOTS.mkdir(parents=True, exist_ok=True)
    path = PLOTS / name
    # Text as text, no date, fixed ids: a re-run changes the file only where the data moved.
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "bench"}):
        figure.savefig(path, metadata={"Date": None})
    log(f"wrote {path.relative_to(REPO)}")
