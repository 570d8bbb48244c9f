"""``python -m ensemblekit.cli``: the command line where the ``ensemblekit`` script is not
installed."""

import sys

from .entry_point import main

# Guarded: a spawned worker process re-imports the main module under another name.
if __name__ == "__main__":
    sys.exit(main())
