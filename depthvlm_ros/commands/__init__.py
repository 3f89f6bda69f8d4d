"""The ``depthvlm`` subcommands, one module each (see :mod:`depthvlm_ros.cli`).

Every command parses its arguments, calls one core function and returns 0; a failure is a
:class:`~depthvlm_ros.core.errors.DepthVLMError` that the ``depthvlm`` entry point prints as one
line (exit status 1).

The helpers below are the options several commands share, so that they spell, default and apply
them alike: the model options of the commands that run the inference pipeline on files
(``predict``, ``replay``), with their defaults from
:class:`~depthvlm_ros.core.config.DepthVLMConfig`, and the bag options of the commands that read
or write rosbag2 bags.
"""

from __future__ import annotations

import argparse

from ..core.config import DepthVLMConfig, field_specs

__all__ = ["add_pipeline_arguments", "pipeline_config", "PIPELINE_OPTIONS", "BAG_STORAGES",
           "add_bag_argument", "add_bag_storage_argument"]

#: Option -> DepthVLMConfig field, for :func:`add_pipeline_arguments`.
PIPELINE_OPTIONS = {"--model": "model_path", "--device": "device", "--dtype": "dtype",
                    "--head-backend": "head_backend", "--max-image-tokens": "max_image_tokens",
                    "--resize-mode": "resize_mode"}

# Help where the field's own description would read oddly on a command line.
_PIPELINE_HELP = {
    "model_path": "model folder or 'embedded'",
    "resize_mode": "how images reach the canonical camera (auto = the model folder's own "
                   "convention; see README 'Metric scale')",
}

#: rosbag2 storage plugins the bag commands write (the bag writer checks them again; spelled
#: here so that building the parser does not import rosbags, an optional dependency).
BAG_STORAGES = ("mcap", "sqlite3")


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of :data:`PIPELINE_OPTIONS`, typed and defaulted by the config fields."""
    specs = {s.name: s for s in field_specs()}
    for option, name in PIPELINE_OPTIONS.items():
        spec = specs[name]
        text = _PIPELINE_HELP.get(name, spec.description.rstrip("."))
        p.add_argument(option, type=spec.type, default=spec.default, choices=spec.choices,
                       help=f"{text} (default {spec.default})")


def _dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")  # argparse's own rule


def pipeline_config(args: argparse.Namespace) -> DepthVLMConfig:
    """The :class:`DepthVLMConfig` defaults with the options of :func:`add_pipeline_arguments`.

    Raises:
        ConfigError: an option is out of its field's range.
    """
    return DepthVLMConfig().replace(**{name: getattr(args, _dest(option))
                                       for option, name in PIPELINE_OPTIONS.items()})


def add_bag_argument(p: argparse.ArgumentParser, name: str = "bag",
                     help: str = "rosbag2 folder (or its .mcap/.db3 file)") -> None:
    """The bag a command reads or writes, as its first positional argument."""
    p.add_argument(name, help=help)


def add_bag_storage_argument(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--format``: the storage plugin of the bag a command writes (default the first of
    :data:`BAG_STORAGES`)."""
    p.add_argument("--format", default=BAG_STORAGES[0], choices=BAG_STORAGES, help=help)
