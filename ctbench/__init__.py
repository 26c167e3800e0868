"""ctbench: a reproducible benchmark for 3D abdominal CT generators."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ctbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
