"""The headless runner's console: log lines and progress bars never share a line.

Progress bars (tqdm, on stderr) redraw themselves in place with a carriage return; a log line
written while one is open (on stdout: a loader's note, the block-swap plan, a failure) would land on
the bar's line and the next redraw would write over it. Log lines go through ``tqdm.write``
instead, which clears every open bar, writes the line, and draws the bars again below it.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm


class ProgressAwareHandler(logging.StreamHandler):
    """A stream handler whose lines are written around the open progress bars, never onto them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # as logging.StreamHandler: a broken console must not stop the run
            self.handleError(record)


def set_up_logging() -> None:
    """Log INFO and up to stdout, one message per line, around progress bars (unless logging is set up already)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[ProgressAwareHandler(sys.stdout)])
