"""The re-drive's progress bar: drawn on a terminal, silent anywhere else."""

import io

from service.recovery.progress_bar import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_redrawn_line_ending_at_the_total() -> None:
    stream = _Terminal()
    bar = ProgressBar(stream, "re-driving")
    bar.update(1, 4)
    bar.update(4, 4)
    bar.finish()
    lines = stream.getvalue().split("\r")
    assert lines[1].startswith("re-driving [########")
    assert lines[-1] == f"re-driving [{'#' * 30}] 4/4 (100%)\n"


def test_a_pipe_or_file_gets_nothing() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, "re-driving")
    bar.update(4, 4)
    bar.finish()
    assert stream.getvalue() == ""
