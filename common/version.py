from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlx-toolkit")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+source"
