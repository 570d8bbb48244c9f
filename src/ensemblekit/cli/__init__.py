"""The ``ensemblekit`` command line: argument parsing only; the work is in
:mod:`ensemblekit.experiments`.

Every training subcommand reads its settings from, lowest precedence first: defaults, the
dataset's recipe, ``--config FILE`` (TOML), then the flags given. User errors (an unknown name,
an invalid combination, missing data) print one line naming the fix and exit with status 2,
before any training starts; an interrupted run exits with 130 and keeps what it finished.

- :mod:`.entry_point`: :func:`main`, the exit statuses of a user error and an interrupted run;
- :mod:`.parser`: :func:`build_parser`, every subcommand, the flags they share, the flag types;
- :mod:`.settings`: the flags given, checked against the task, as an experiment's Settings;
- :mod:`.commands`: one handler per subcommand: run the experiment, print where it wrote.
"""

from .entry_point import EXIT_INTERRUPTED, EXIT_USAGE, main
from .parser import build_parser

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]
