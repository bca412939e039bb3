"""Pieces every mlx library package shares: errors, the mlx home, version, progress callbacks."""

from common.errors import ConfigError, DataError, MlxError, ModelLoadError, StoreError
from common.paths import mlx_home
from common.version import __version__

__all__ = ["ConfigError", "DataError", "MlxError", "ModelLoadError", "StoreError", "mlx_home", "__version__"]
