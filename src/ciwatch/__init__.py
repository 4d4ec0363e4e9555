"""ciwatch: watch every CI pipeline across GitLab CI, GitHub Actions and Jenkins."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ciwatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
