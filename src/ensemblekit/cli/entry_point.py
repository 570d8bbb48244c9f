"""``ensemblekit.cli:main``, the console script: parse, run the subcommand's handler, and turn
a user error or an interrupt into its exit status and one line on stderr."""

from __future__ import annotations

import sys

from .parser import build_parser

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("ensemblekit: error: a COMMAND is required (benchmark, tune, toy, diversity, sweep, "
              "train, evaluate or corrupt); `ensemblekit --help` describes them", file=sys.stderr)
        return EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by tune's outputs
    try:
        return args.handler(args) or 0
    except (ValueError, FileNotFoundError) as error:
        print(f"ensemblekit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        message = f"\nensemblekit {args.command}: interrupted"
        if args.command in ("benchmark", "tune") and getattr(args, "out", None):
            message += (f"; finished runs are kept under {args.out}: rerun the same command "
                        "to resume")
        elif args.command == "train" and getattr(args, "out", None):
            message += (f"; the last finished epoch is in {args.out}/checkpoints/last.pt: "
                        "rerun with --resume to continue")
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED
