"""Error types raised by the ROS-free core.

Every error a user can cause (a bad file, a bad image, a bad setting) is a subclass of
:class:`DepthVLMError`, so command-line tools can print one clear line and exit non-zero
instead of a traceback.
"""

__all__ = [
    "DepthVLMError",
    "ConfigError",
    "ModelLoadError",
    "InputError",
    "AnnotationError",
    "ExportError",
]


class DepthVLMError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(DepthVLMError, ValueError):
    """A configuration value is missing, out of range or inconsistent."""


class ModelLoadError(DepthVLMError):
    """A model folder is missing, corrupt, unsafe (pickle) or does not match the architecture."""


class InputError(DepthVLMError, ValueError):
    """An image, intrinsics or question cannot be processed (wrong size, encoding, NaN, ...)."""


class AnnotationError(DepthVLMError, ValueError):
    """A benchmark annotation (JSONL) file is missing, malformed or refers to missing files."""


class ExportError(DepthVLMError):
    """Exporting or building an inference engine failed."""
