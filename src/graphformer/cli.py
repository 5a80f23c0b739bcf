"""The ``graphformer`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)``
and ``run(args) -> dict``. The returned metrics are printed as one strict
JSON object (no ``NaN``: a non-finite number is ``null``) on the last line of
standard output. Under ``torchrun`` only rank 0 prints them; an error on any
process is printed with its rank and ends the command with exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main"]

COMMANDS = {
    "demo": ("graphformer.demo", "the layer on built-in data: a sentence, a decoder and a GCN"),
    "explain": ("graphformer.explain", "attention by hand: every matrix of a small example"),
    "forecast": ("graphformer.forecast", "train and test a forecaster on a multivariate time series"),
    "classify": ("graphformer.classify", "node or graph classification on a PyG dataset"),
    "inspect": ("graphformer.inspect_cli", "per-layer rank collapse / oversmoothing diagnostics"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="graphformer",
        description="A Transformer is a graph neural network on a complete graph.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().split("\n")[0])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``graphformer`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    where = f" (process {rank} of {world})" if world > 1 else ""
    try:
        metrics = args._run(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"graphformer {args.command}: error{where}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"graphformer {args.command}: interrupted{where}", file=sys.stderr)
        return 130
    except RuntimeError as err:
        if world <= 1:
            raise
        # a collective failed: usually another process stopped first (its own error names the cause)
        print(f"graphformer {args.command}: error{where}: {err}".rstrip() + "\n(if another process reported an "
              "error, that is the cause)", file=sys.stderr)
        return 1
    if rank == 0:
        from .train import dumps

        print(dumps(metrics if metrics is not None else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
