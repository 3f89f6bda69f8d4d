"""The ``depthvlm`` command.

Each subcommand lives in its own module under :mod:`depthvlm_ros.commands` and exposes
``add_arguments(parser)``, ``run(args) -> int`` and a one-line ``HELP``. Modules are imported
lazily so that ``depthvlm --help`` stays fast and a subcommand's heavy imports (torch, rclpy)
are paid only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .core.errors import DepthVLMError

__all__ = ["main", "COMMANDS"]

COMMANDS = ("demo", "predict", "bench", "make_synthetic", "train", "export", "replay", "play",
            "make_sample_bag", "perf", "check")


def _load(name: str):
    try:
        return importlib.import_module(f"depthvlm_ros.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"depthvlm_ros.commands.{name}":
            return None
        raise


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="depthvlm", description="DepthVLM metric depth tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        cli_name = name.replace("_", "-")
        p = sub.add_parser(cli_name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        modules[cli_name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except DepthVLMError as exc:
        # One line, even when the message wraps a multi-line error from a library (a YAML
        # parser's caret diagram, a state-dict report): scripts and logs read one line.
        text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"depthvlm {args.command}: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"depthvlm {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, every rank leaves the process group together before exiting."""
    if "torch.distributed" not in sys.modules:  # never joined one; keep --help free of torch
        return
    from .core.distributed import shutdown_distributed

    shutdown_distributed(wait=True)


if __name__ == "__main__":
    sys.exit(main())
