"""Image datasets: KMNIST (official npz or MNIST-format idx files), scikit-learn digits, splits.

Every loader returns :class:`ImageSet` objects holding (N, 28, 28) uint8 images and (N,) int64
labels in 0..9, checked on the way in so a malformed file fails with one clear message.
"""

import gzip
import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import ConfigError, DataError
from common.heldout import check_test_classes, check_test_rows, row_keys
from common.paths import PathKind, check_path
from common.splits import stratified_split
from vision.choices import DatasetName  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

N_CLASSES = 10
IMAGE_SIDE = 28
DEFAULT_DATA_DIR = Path("data")

KMNIST_CLASS_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
KMNIST_HIRAGANA = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")  # the modern glyph of each class

# Official release names; the idx names are the torchvision ``KMNIST/raw/`` layout.
NPZ_NAMES = {
    "train": ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"),
    "test": ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"),
}
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class ImageSet:
    """One split. ``images``: (N, 28, 28) uint8, 0 = background; ``labels``: (N,) int64 in 0..9."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> "ImageSet":
        """The rows ``rows`` (an index array) of this split, same source."""
        return ImageSet(self.images[rows], self.labels[rows], self.source)


@dataclass(frozen=True)
class Splits:
    """Train, validation (carved from train) and test; the test split is scored once, at the end."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    dataset: str
    class_names: tuple[str, ...]
    fingerprint: str = ""  # sha256 over every split's images and labels: equal data, equal fingerprint
    notes: tuple[str, ...] = ()  # warnings on the data (test images that repeat train images, classes train lacks)


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """sha256 over shapes, dtypes and bytes of ``arrays`` (about 0.1 s for all of KMNIST)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def check_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes, dtypes and label range; return (images uint8, labels int64) or raise DataError."""
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{where}: images have shape {images.shape}, expected (N, 28, 28); use the official KMNIST files"
        )
    if images.dtype != np.uint8:
        raise DataError(
            f"{where}: images have dtype {images.dtype}, expected uint8 (0..255); use the official KMNIST files"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have shape {labels.shape} and dtype {labels.dtype}, expected (N,) integers")
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels; the two files must belong together")
    if len(labels) == 0:
        raise DataError(
            f"{where}: holds zero images; the file is empty or truncated, delete it and run `mlx vision download`"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"{where}: labels range {labels.min()}..{labels.max()}, expected 0..{N_CLASSES - 1}")
    return images, labels.astype(np.int64)


def read_npz_array(path: Path) -> np.ndarray:
    """The array stored under ``arr_0`` in an official-format npz file."""
    path = check_path(path, PathKind.FILE, "KMNIST file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "arr_0" not in archive.files:
                raise DataError(
                    f"{path}: no array 'arr_0' (found {archive.files}); expected the official KMNIST npz format"
                )
            return archive["arr_0"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable npz file ({exc}); delete it and run `mlx vision download`") from None


def read_idx(path: Path) -> np.ndarray:
    """An MNIST-format idx file (gzip-compressed or not) as a uint8 array."""
    path = check_path(path, PathKind.FILE, "KMNIST file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read idx file ({exc}); delete it and run `mlx vision download`") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file (bad magic number)")
    n_dims = raw[3]
    header = 4 + 4 * n_dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds {len(raw) - header}; the file is truncated"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_kmnist_split(data_dir: Path, split: str) -> ImageSet:
    """Load one KMNIST split from ``data_dir``: official npz files first, else idx files.

    Looks in ``data_dir`` and ``data_dir/KMNIST/raw`` (torchvision's layout) for the idx files.
    """
    data_dir = check_path(data_dir, PathKind.FOLDER, "KMNIST folder", hint="run `mlx vision download` first")
    images_name, labels_name = NPZ_NAMES[split]
    # lexists: a file that is there but broken (a dangling link, a pipe) is named by check_path, not skipped
    if os.path.lexists(data_dir / images_name) and os.path.lexists(data_dir / labels_name):
        images, labels = read_npz_array(data_dir / images_name), read_npz_array(data_dir / labels_name)
        return ImageSet(*check_arrays(images, labels, str(data_dir / images_name)), source=str(data_dir / images_name))
    for folder in (data_dir, data_dir / "KMNIST" / "raw", data_dir / "raw"):
        idx_images, idx_labels = (folder / name for name in IDX_NAMES[split])
        found = [p if os.path.lexists(p) else p.with_suffix("") for p in (idx_images, idx_labels)]
        if all(os.path.lexists(p) for p in found):
            images, labels = read_idx(found[0]), read_idx(found[1])
            return ImageSet(*check_arrays(images, labels, str(found[0])), source=str(found[0]))
    raise DataError(
        f"KMNIST {split} split not found: expected {images_name} and {labels_name} (or {' and '.join(IDX_NAMES[split])}) "
        f"in {data_dir.resolve()}; run `mlx vision download --data-dir {data_dir}` or pass --data-dir"
    )


def load_digits28() -> tuple[ImageSet, ImageSet]:
    """scikit-learn's bundled 8x8 digits (1,797 images), resized to 28x28 uint8; a fixed 75/25 train/test cut.

    Not KMNIST: an offline stand-in that needs no download. Each 8x8 image (values 0..16) is
    upsampled 3x to 24x24 by nearest neighbour and padded by 2 pixels, like MNIST's centred digits.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # (N, 8, 8)
    big = small.repeat(3, axis=1).repeat(3, axis=2)  # (N, 24, 24)
    images = np.pad(big, ((0, 0), (2, 2), (2, 2)))  # (N, 28, 28)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    n_test = len(labels) // 4
    test_idx, train_idx = order[:n_test], order[n_test:]
    return (
        ImageSet(images[train_idx], labels[train_idx], "sklearn.datasets.load_digits (resized, not KMNIST)"),
        ImageSet(images[test_idx], labels[test_idx], "sklearn.datasets.load_digits (resized, not KMNIST)"),
    )


def load_splits(dataset: DatasetName, data_dir: Path | None, validation_fraction: float, seed: int) -> Splits:
    """Load train/val/test for ``dataset``; ``data_dir`` defaults to ``./data`` (KMNIST only)."""
    if dataset == DatasetName.DIGITS:
        if data_dir is not None:
            raise ConfigError(
                f"--data-dir {data_dir} is only read with --dataset kmnist (digits is bundled); pass --dataset kmnist or drop --data-dir"
            )
        train, test = load_digits28()
        class_names = tuple(str(i) for i in range(N_CLASSES))
    else:
        folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
        train, test = load_kmnist_split(folder, "train"), load_kmnist_split(folder, "test")
        class_names = KMNIST_CLASS_NAMES
    check_variance(train)
    notes = check_held_out(train, test, class_names)
    fingerprint = fingerprint_arrays(train.images, train.labels, test.images, test.labels)
    if not 0 <= validation_fraction < 1:
        raise ConfigError(
            f"--validation-fraction must lie in [0, 1) (0: train on every training image, no validation), got {validation_fraction}"
        )
    if validation_fraction == 0:  # every training image is trained on; nothing can be chosen on validation
        fit_rows, validation_rows = np.arange(len(train)), np.zeros(0, dtype=np.int64)
    else:
        fit_rows, validation_rows = stratified_split(train.labels, validation_fraction, seed, what="validation")
    train, val = train.take(fit_rows), train.take(validation_rows)
    log.info("loaded %s: %d train, %d val, %d test", dataset.value, len(train), len(val), len(test))
    return Splits(
        train=train,
        val=val,
        test=test,
        dataset=dataset.value,
        class_names=class_names,
        fingerprint=fingerprint,
        notes=notes,
    )


def check_held_out(train: ImageSet, test: ImageSet, class_names: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse test images that are all train images; warn of some, and of test classes train lacks (common.heldout)."""
    notes = check_test_rows(
        row_keys(train.images), row_keys(test.images), train_what=train.source, test_what=test.source
    )
    return notes + check_test_classes(train.labels, test.labels, class_names, train_what=train.source)


def check_variance(train: ImageSet) -> None:
    """Every model standardises by the training set's std: identical images (all black) leave nothing to learn."""
    if train.images.min() == train.images.max():
        raise DataError(
            f"{train.source}: all {len(train)} training images are identical (every pixel {int(train.images.min())}); "
            "nothing can be learned from them, so check the image files"
        )
