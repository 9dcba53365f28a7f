"""Where the CLI's words go: plain lines for a person, or log lines with ``LOG_FORMAT=json``.

With JSON logs every line on stdout and stderr is one JSON object (a log shipper reads them):
messages and errors become log lines, the terminal progress bar is off, and ``--json`` prints
the result on one line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping

import attrs

__all__ = ["Output"]

log = logging.getLogger("fastwan.generate")


@attrs.frozen
class Output:
    """``json_logs``: ``LOG_FORMAT=json`` is set."""

    json_logs: bool

    def say(self, message: str) -> None:
        """Something on the way (stderr)."""
        if self.json_logs:
            log.info(message)
        else:
            print(message, file=sys.stderr)

    def problem(self, message: str) -> None:
        """Why the command failed (stderr)."""
        if self.json_logs:
            log.error(message)
        else:
            print(message, file=sys.stderr)

    def done(self, message: str) -> None:
        """What was made (stdout)."""
        if self.json_logs:
            log.info(message)
        else:
            print(message)

    def result(self, wire: Mapping[str, object]) -> None:
        """``--json``'s result (stdout)."""
        print(json.dumps(wire) if self.json_logs else json.dumps(wire, indent=2))

    @property
    def progress_bar(self) -> bool:
        return not self.json_logs
