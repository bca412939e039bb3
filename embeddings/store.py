"""The self-describing HDF5 embedding store.

Layout (schema version 1)::

    /                      attrs: mlx_format="mlx-embedding-store", schema_version, complete,
                                  mlx_version, created_at, model_id, model_revision, max_length,
                                  dtype, dataset_name, dataset_fingerprint, label_names (JSON),
                                  poolings (JSON), layers (JSON), n_layers, config (JSON)
    /<split>/              attrs: n_examples, fingerprint, label_names (JSON)
    /<split>/labels        (N,) int64, 0..C-1
    /<split>/row_ids       (N,) int64, row index in the source split
    /<split>/<pooling>/layer_<LL>   (N, D) float32, one per pooling and hidden layer
                                    (layer 0 = embedding output, n_layers = last)

A store is written to a temporary file beside its final name and renamed into place only when
complete (``common.writes.atomic_path``), so a file under the final name is always whole; free space
is checked before the write starts. Readers load a dataset with one
contiguous read.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from common import StoreError, __version__
from common.paths import PathKind, check_path
from common.schema import check_fields
from common.writes import atomic_path, check_free_space

FORMAT_NAME = "mlx-embedding-store"
SCHEMA_VERSION = 1
_JSON_ATTRS = ("label_names", "poolings", "layers", "config")


def layer_key(layer: int) -> str:
    return f"layer_{layer:02d}"


@dataclass(frozen=True)
class SplitArrays:
    """Everything one split of a store holds. ``vectors`` maps (pooling, layer) to (N, D) float32."""

    labels: np.ndarray  # (N,) int64
    row_ids: np.ndarray  # (N,) int64
    vectors: dict[tuple[str, int], np.ndarray]
    fingerprint: str = ""
    encode_seconds: float | None = None  # the model's time on this split's texts (None: not measured)


@dataclass(frozen=True)
class StoreInfo:
    """Root metadata of a store, as read back from the file."""

    path: Path
    schema_version: int
    mlx_version: str
    created_at: str
    model_id: str
    model_revision: str
    max_length: int
    dtype: str
    dataset_name: str
    dataset_fingerprint: str
    label_names: tuple[str, ...]
    poolings: tuple[str, ...]
    layers: tuple[int, ...]
    n_layers: int
    splits: dict[str, int]  # split name -> n_examples
    dims: dict[str, int]  # pooling -> D
    config: dict[str, Any] = field(default_factory=dict)
    # The cost of the encoder pass (stores from before these read as unknown): seconds per split,
    # the extraction's peak memory (common.cost) and the CPU/GPU it ran on.
    encode_seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    device_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["path"] = str(self.path)
        d["label_names"], d["poolings"], d["layers"] = list(self.label_names), list(self.poolings), list(self.layers)
        return d


def write_store(path: Path, attrs: dict[str, Any], splits: dict[str, SplitArrays]) -> Path:
    """Write a complete store atomically: a temp file in the same folder, then ``os.replace``.

    ``attrs`` holds the root attributes listed in the module docstring (those in ``_JSON_ATTRS``
    as Python objects). An existing file at ``path`` is replaced only once the new one is whole.
    """
    path = Path(path)
    n_bytes = sum(np.asarray(m).nbytes for arrays in splits.values() for m in arrays.vectors.values()) + sum(
        16 * len(a.labels) for a in splits.values()
    )
    check_free_space(path, n_bytes)  # before h5py starts: its failures on a full disk can be crashes, not errors
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            _write_root_attrs(f, attrs)
            for split, arrays in splits.items():
                _write_split(f=f, split=split, arrays=arrays, label_names=attrs.get("label_names", []))
            f.attrs["complete"] = True  # last, so a store is never marked complete early
    return path


def _write_root_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    f.attrs["mlx_format"] = FORMAT_NAME
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["complete"] = False
    f.attrs["mlx_version"] = __version__
    f.attrs["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for key, value in attrs.items():
        f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value


def _write_split(f: h5py.File, split: str, arrays: SplitArrays, label_names: list[str]) -> None:
    group = f.create_group(split)
    group.attrs["n_examples"] = len(arrays.labels)
    group.attrs["fingerprint"] = arrays.fingerprint
    group.attrs["label_names"] = json.dumps(list(label_names))
    if arrays.encode_seconds is not None:
        group.attrs["encode_seconds"] = float(arrays.encode_seconds)
    group.create_dataset("labels", data=np.asarray(arrays.labels, dtype=np.int64))
    group.create_dataset("row_ids", data=np.asarray(arrays.row_ids, dtype=np.int64))
    for (pooling, layer), matrix in arrays.vectors.items():
        # Contiguous (unchunked) datasets read back at disk speed in one call.
        group.require_group(pooling).create_dataset(layer_key(layer), data=np.asarray(matrix, dtype=np.float32))


class EmbeddingStore:
    """Read-only access to a complete store. Use as a context manager or call ``close``.

    >>> with EmbeddingStore(path) as store:
    ...     X = store.vectors("train", "mean", store.info.layers[-1])  # (N, D) float32
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = _open_for_reading(self.path)
        self.info = _read_info(self._file, self.path)

    def __enter__(self) -> "EmbeddingStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def splits(self) -> list[str]:
        return list(self.info.splits)

    def labels(self, split: str) -> np.ndarray:
        """(N,) int64 labels of ``split``."""
        return self._group(split)["labels"][()]

    def row_ids(self, split: str) -> np.ndarray:
        """(N,) int64 source row ids of ``split``."""
        return self._group(split)["row_ids"][()]

    def split_fingerprint(self, split: str) -> str:
        """Fingerprint of the source rows of ``split`` (texts, labels, row ids), as the dataset loader computed it."""
        return str(self._group(split).attrs.get("fingerprint", ""))

    def vectors(self, split: str, pooling: str, layer: int | None = None) -> np.ndarray:
        """(N, D) float32 pooled vectors; ``layer`` None means the last stored layer."""
        layer = self.info.layers[-1] if layer is None else layer
        if pooling not in self.info.poolings:
            raise StoreError(f"pooling {pooling!r} is not in {self.path}; it holds: {', '.join(self.info.poolings)}")
        group = self._group(split)
        key = f"{pooling}/{layer_key(layer)}"
        if key not in group:
            stored = sorted(int(k.split("_")[1]) for k in group[pooling]) if pooling in group else []
            raise StoreError(f"layer {layer} of pooling {pooling!r} is not in {self.path}; stored layers: {stored}")
        dataset = group[key]
        matrix = np.empty(dataset.shape, dtype=np.float32)
        dataset.read_direct(matrix)
        return matrix

    def layers_of(self, split: str, pooling: str) -> tuple[int, ...]:
        """Layers stored for one pooling in ``split`` (``pooler`` exists only at the last layer)."""
        group = self._group(split)
        return tuple(sorted(int(key.split("_")[1]) for key in group[pooling])) if pooling in group else ()

    def _group(self, split: str) -> h5py.Group:
        if split not in self.info.splits:
            raise StoreError(f"split {split!r} is not in {self.path}; it holds: {', '.join(self.info.splits)}")
        return self._file[split]


def _open_for_reading(path: Path) -> h5py.File:
    hint = "create it with `mlx embed` or list stores with `mlx store list`"
    path = check_path(
        path=path, kind=PathKind.FILE, what="store", hint=hint
    )  # never opens a named pipe, which would hang
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise StoreError(f"{path} is not a readable HDF5 file (corrupt, truncated or another format)") from None
    if f.attrs.get("mlx_format") != FORMAT_NAME:
        f.close()
        raise StoreError(f"{path} is an HDF5 file but not an mlx embedding store")
    if int(f.attrs.get("schema_version", -1)) > SCHEMA_VERSION:
        version = f.attrs.get("schema_version")
        f.close()
        raise StoreError(
            f"{path} has store schema {version}, newer than this mlx reads ({SCHEMA_VERSION}); upgrade mlx"
        )
    if not bool(f.attrs.get("complete", False)):
        f.close()
        raise StoreError(f"store {path} is incomplete; re-run the `mlx embed` command that made it to finish it")
    return f


def _read_info(f: h5py.File, path: Path) -> StoreInfo:
    """The store's own description, checked: a damaged attribute is one line naming the store."""
    try:
        a = {k: (json.loads(v) if k in _JSON_ATTRS else v) for k, v in f.attrs.items()}
        problems = check_fields(
            d={k: a[k] for k in _ATTR_TYPES if k in a},
            schema=_ATTR_TYPES,
            where="attributes",
            optional=set(_ATTR_TYPES),
        )
        problems += [] if "schema_version" in a else ["attributes lack 'schema_version'"]
        problems += [
            f"attributes.{k} holds a non-{t.__name__}"
            for k, t in _LIST_ITEMS.items()
            if not all(isinstance(x, t) and not isinstance(x, bool) for x in a.get(k, []))
        ]
        if problems:
            raise ValueError(problems[0])
        return _info(f, path, a)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise StoreError(
            f"store {path} is damaged ({reason}); re-run the `mlx embed` command that made it with --force"
        ) from None


_ATTR_TYPES = {
    "schema_version": (int, np.integer),
    "label_names": (list,),
    "poolings": (list,),
    "layers": (list,),
    "config": (dict,),
    "max_length": (int, np.integer),
    "n_layers": (int, np.integer),
}
_LIST_ITEMS = {"label_names": str, "poolings": str, "layers": int}


def _info(f: h5py.File, path: Path, a: dict[str, Any]) -> StoreInfo:
    splits = {name: int(f[name].attrs["n_examples"]) for name in f if isinstance(f[name], h5py.Group)}
    dims: dict[str, int] = {}
    for split in splits:
        for pooling in a.get("poolings", []):
            if pooling in f[split]:
                first = next(iter(f[split][pooling].values()))
                dims.setdefault(pooling, int(first.shape[1]))
    return StoreInfo(
        path=path,
        schema_version=int(a["schema_version"]),
        mlx_version=str(a.get("mlx_version", "")),
        created_at=str(a.get("created_at", "")),
        model_id=str(a.get("model_id", "")),
        model_revision=str(a.get("model_revision", "")),
        max_length=int(a.get("max_length", 0)),
        dtype=str(a.get("dtype", "")),
        dataset_name=str(a.get("dataset_name", "")),
        dataset_fingerprint=str(a.get("dataset_fingerprint", "")),
        label_names=tuple(a.get("label_names", [])),
        poolings=tuple(a.get("poolings", [])),
        layers=tuple(int(x) for x in a.get("layers", [])),
        n_layers=int(a.get("n_layers", 0)),
        splits=splits,
        dims=dims,
        config=a.get("config", {}),
        encode_seconds={
            name: float(f[name].attrs["encode_seconds"]) for name in splits if "encode_seconds" in f[name].attrs
        },
        peak_memory_bytes=int(a["peak_memory_bytes"]) if "peak_memory_bytes" in a else None,
        device_name=str(a.get("device_name", "")),
    )


def read_info(path: Path) -> StoreInfo:
    """Metadata of a complete store (StoreError when missing, foreign or incomplete)."""
    with EmbeddingStore(path) as store:
        return store.info


@dataclass(frozen=True)
class StoreEntry:
    path: Path
    status: str  # "complete", "incomplete", "foreign"
    size_mb: float
    info: StoreInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "status": self.status,
            "size_mb": round(self.size_mb, 3),
            "info": self.info.to_dict() if self.info else None,
        }


def list_stores(folder: Path | None = None) -> list[StoreEntry]:
    """Every ``*.h5`` file in ``folder`` (default: the mlx home's stores), newest first."""
    from common.paths import mlx_home

    if folder is not None and not Path(folder).exists():
        raise StoreError(f"folder {folder} does not exist; pass an existing --folder (default: the mlx home's stores)")
    if folder is not None and not Path(folder).is_dir():
        raise StoreError(f"{folder} is not a folder; pass the folder that holds the .h5 stores")
    folder = Path(folder) if folder is not None else mlx_home() / "stores"
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.glob("*.h5"), key=lambda p: p.stat().st_mtime, reverse=True):
        size_mb = path.stat().st_size / 1e6
        try:
            entries.append(StoreEntry(path=path, status="complete", size_mb=size_mb, info=read_info(path)))
        except StoreError as exc:
            entries.append(
                StoreEntry(
                    path=path,
                    status="incomplete" if "incomplete" in str(exc) else "foreign",
                    size_mb=size_mb,
                    info=None,
                )
            )
    return entries
