"""From an embedding store to (train, test) matrices: split choice, layer specs, checks, lazy reads.

Each (split, pooling, layer) dataset is read at most once per run, with one contiguous read, and
only when the loop reaches it; a layer used by two selections (``5`` and ``4,5,6``) is kept until
its last use.
"""

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from common import ConfigError, DataError, StoreError
from common.heldout import check_test_rows
from common.options import ALL, LAST, LayerSpec, parse_layer
from common.record import SplitRef, subset_fingerprint
from common.splits import stratified_split, stratified_subsample
from embeddings.store import EmbeddingStore
from probes.config import ProbeRunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitPlan:
    """Where train and test rows come from. ``*_rows`` None means the whole split."""

    train_split: str
    test_split: str
    test_from_other_store: bool
    carved_fraction: float | None
    train_rows: np.ndarray | None
    test_rows: np.ndarray | None
    limited_to: int | None = None  # --train-size: train_rows is a stratified subset of this many rows
    notes: tuple[str, ...] = ()  # warnings to say aloud (test rows that are also train rows)

    def describe(self) -> str:
        if self.limited_to is not None:
            return (
                f"{replace(self, limited_to=None).describe()}; a stratified subset of {self.limited_to} training rows"
            )
        if self.carved_fraction is not None:
            assert self.train_rows is not None and self.test_rows is not None, "a carve selects both"
            return (
                f"split {self.train_split!r} carved into {len(self.train_rows)} train / {len(self.test_rows)} test rows "
                f"(stratified, {self.carved_fraction:g} test fraction)"
            )
        where = "the test store" if self.test_from_other_store else "the store"
        return f"train = split {self.train_split!r}, test = split {self.test_split!r} of {where}"


@dataclass(frozen=True)
class PooledMatrices:
    """One probe input: pooled vectors of ``layers`` (concatenated in that order) for both splits."""

    pooling: str
    layers: tuple[int, ...]
    X_train: np.ndarray  # (N_train, D) float32
    y_train: np.ndarray  # (N_train,) int64
    X_test: np.ndarray  # (N_test, D) float32
    y_test: np.ndarray  # (N_test,) int64

    @property
    def layer_label(self) -> str:
        return ",".join(str(layer) for layer in self.layers)


def layer_label(layers: Sequence[int]) -> str:
    return ",".join(str(layer) for layer in layers)


def parse_layers(
    specs: Sequence[LayerSpec], stored: Sequence[int], where: str | Path = "the store"
) -> tuple[tuple[int, ...], ...]:
    """Layer selections from parsed ``--layer`` values (common.options.parse_layers).

    ``all`` = every stored layer on its own; ``last`` (the default) = the last stored layer;
    ``(5,)`` = one layer; ``(4, 5, 6)`` = those layers' vectors concatenated, in that order.
    """
    stored = tuple(sorted(stored))
    if not stored:
        raise StoreError("the store lists no layers; re-create it with `mlx embed`")
    selections: list[tuple[int, ...]] = []
    for spec in specs or (LAST,):
        spec = parse_layer(spec) if isinstance(spec, str) else spec  # "4,5,6" from a library caller
        if spec == ALL:
            selections.extend((layer,) for layer in stored)
        elif spec == LAST:
            selections.append((stored[-1],))
        elif not isinstance(spec, str):  # layer numbers (parse_layer refuses any other text)
            missing = [layer for layer in spec if layer not in stored]
            if missing:
                raise StoreError(
                    f"layer {missing[0]} is not in {where}; stored layers: {list(stored)}; pass some of those, or "
                    "re-embed with `mlx embed --layer all` to store every layer"
                )
            selections.append(tuple(spec))
    return tuple(dict.fromkeys(selections))


def resolve_poolings(names: Sequence[str], stored: Sequence[str], where: str | Path = "the store") -> tuple[str, ...]:
    """``all`` or nothing = every stored pooling; otherwise the named ones (parsed by the CLI), each checked."""
    if not names or ALL in names:
        return tuple(stored)
    for name in names:
        if name not in stored:
            raise StoreError(
                f"pooling {name!r} is not in {where}; it holds: {', '.join(stored)}; pass one of those or "
                "'all', or re-embed with `mlx embed --pooling ...` to add it"
            )
    return tuple(dict.fromkeys(names))


def plan_splits(
    store: EmbeddingStore, test_store: EmbeddingStore | None, test_fraction: float | None, seed: int
) -> SplitPlan:
    """Choose train and test: the store's train/test splits, a test store, or a carved test split."""
    splits = store.splits
    if test_store is not None:
        if test_fraction is not None:
            raise ConfigError("--test-fraction and --test-store both give a test split; pass only one")
        _check_same_model(store, test_store)
        train = "train" if "train" in splits else _only_split(store, "--test-store")
        test = "test" if "test" in test_store.splits else _only_split(test_store, "--test-store")
        return SplitPlan(
            train_split=train,
            test_split=test,
            test_from_other_store=True,
            carved_fraction=None,
            train_rows=None,
            test_rows=None,
            notes=check_disjoint(store=store, train=train, test_store=test_store, test=test),
        )
    if "train" in splits and "test" in splits:
        if test_fraction is not None:
            raise ConfigError(
                f"{store.path} already has a test split; drop --test-fraction (it is for one-split stores)"
            )
        return SplitPlan(
            train_split="train",
            test_split="test",
            test_from_other_store=False,
            carved_fraction=None,
            train_rows=None,
            test_rows=None,
            notes=check_disjoint(store=store, train="train", test_store=store, test="test"),
        )
    if len(splits) != 1:
        raise StoreError(
            f"{store.path} has splits {splits} but no train/test pair; a probe needs 'train' and 'test' "
            "splits, or a store with one split and --test-fraction"
        )
    if test_fraction is None:
        raise ConfigError(
            f"{store.path} has only the split {splits[0]!r}; pass --test-fraction 0.2 to carve a "
            "stratified test split from it, or --test-store PATH"
        )
    if not 0 < test_fraction < 1:
        raise ConfigError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    return _carve(store=store, split=splits[0], fraction=test_fraction, seed=seed)


def check_disjoint(store: EmbeddingStore, train: str, test_store: EmbeddingStore, test: str) -> tuple[str, ...]:
    """Refuse test rows that are all train rows; a note when some are (common.heldout.check_test_rows).

    A store holds vectors, not texts: rows are compared by their source row ids where both splits come
    from the same split of the same dataset (a store's split keeps its source split's name and row ids,
    e.g. two --limit subsamples of one train split), or where their fingerprints say they are one split.
    """
    train_print, test_print = store.split_fingerprint(train), test_store.split_fingerprint(test)
    same_file = Path(store.path).resolve() == Path(test_store.path).resolve() and train == test
    same_source = train == test and store.info.dataset_name == test_store.info.dataset_name
    if not (same_file or same_source or (train_print and train_print == test_print)):
        return ()
    return check_test_rows(
        store.row_ids(train).tolist(),
        test_store.row_ids(test).tolist(),
        train_what=f"split {train!r} of {store.path}",
        test_what=f"split {test!r} of {test_store.path}",
    )


def _only_split(store: EmbeddingStore, option: str) -> str:
    if len(store.splits) != 1:
        raise StoreError(
            f"cannot tell which split of {store.path} to use with {option}: it holds {store.splits}; "
            "name them 'train' and 'test'"
        )
    return store.splits[0]


def _carve(store: EmbeddingStore, split: str, fraction: float, seed: int) -> SplitPlan:
    labels = store.labels(split)
    _check_classes(labels, split, store)
    try:
        train_rows, test_rows = stratified_split(labels, fraction, seed, what="test")
    except DataError as exc:
        raise DataError(
            f"split {split!r} of {store.path}: {exc}; use a larger store or another --test-fraction"
        ) from None
    return SplitPlan(
        train_split=split,
        test_split=split,
        test_from_other_store=False,
        carved_fraction=fraction,
        train_rows=train_rows,
        test_rows=test_rows,
    )


def _check_same_model(store: EmbeddingStore, other: EmbeddingStore) -> None:
    a, b = store.info, other.info
    for field_name in ("model_id", "model_revision", "label_names"):
        if getattr(a, field_name) != getattr(b, field_name):
            raise StoreError(
                f"{a.path} and {b.path} differ in {field_name} ({getattr(a, field_name)!r} vs "
                f"{getattr(b, field_name)!r}); embed train and test with the same model and labels"
            )
    if (a.dtype == "int8") != (b.dtype == "int8"):  # int8 changes the vectors (text.quantize); bf16 vs fp32 barely
        raise StoreError(
            f"{a.path} and {b.path} differ in dtype ({a.dtype or 'fp32'!r} vs {b.dtype or 'fp32'!r}): int8 vectors come "
            "from a quantised encoder; embed train and test with the same --dtype"
        )


def _check_classes(labels: np.ndarray, split: str, store: EmbeddingStore) -> None:
    classes = np.unique(labels)
    if len(classes) < 2:
        name = _class_name(store, classes[0]) if len(classes) else "none"
        raise DataError(
            f"split {split!r} of {store.path} has only one class ({name}); a probe needs at least two classes"
        )
    n_names = len(store.info.label_names)
    if n_names and (classes.min() < 0 or classes.max() >= n_names):
        raise StoreError(
            f"split {split!r} of {store.path} has labels outside 0..{n_names - 1}; re-create the store with `mlx embed`"
        )


def _class_name(store: EmbeddingStore, label: int) -> str:
    names = store.info.label_names
    return repr(names[label]) if 0 <= label < len(names) else str(label)


def limit_train(plan: SplitPlan, store: EmbeddingStore, n: int | None, seed: int) -> SplitPlan:
    """Keep a stratified, seeded subset of ``n`` training rows (the rows ``mlx finetune --train-size n`` uses)."""
    if n is None:
        return plan
    y = train_labels(plan, store)
    if not 0 < n <= len(y):
        raise ConfigError(f"train size {n} must be between 1 and the {len(y)} training rows of {store.path}")
    if n == len(y):
        return plan
    kept = stratified_subsample(y, n, seed)
    rows = kept if plan.train_rows is None else plan.train_rows[kept]
    return replace(plan, train_rows=rows, limited_to=n)


def split_refs(plan: SplitPlan, store: EmbeddingStore, test_store: EmbeddingStore | None) -> tuple[SplitRef, ...]:
    """Fingerprint and size of the exact train and test rows (row subsets get their own fingerprint)."""
    refs = []
    for role, source, split, rows in (
        ("train", store, plan.train_split, plan.train_rows),
        ("test", test_store or store, plan.test_split, plan.test_rows),
    ):
        fingerprint = source.split_fingerprint(split)
        n_rows = source.info.splits[split]
        if rows is not None:
            fingerprint, n_rows = subset_fingerprint(fingerprint, rows), len(rows)
        refs.append(SplitRef(role, fingerprint, n_rows))
    return tuple(refs)


def test_row_ids(plan: SplitPlan, store: EmbeddingStore, test_store: EmbeddingStore | None) -> np.ndarray:
    """(N_test,) int64 ids of the test rows in their source split."""
    ids = (test_store or store).row_ids(plan.test_split)
    return ids if plan.test_rows is None else ids[plan.test_rows]


def train_labels(plan: SplitPlan, store: EmbeddingStore) -> np.ndarray:
    y = store.labels(plan.train_split)
    y = y if plan.train_rows is None else y[plan.train_rows]
    _check_classes(y, plan.train_split, store)
    return y


def test_labels(plan: SplitPlan, store: EmbeddingStore, test_store: EmbeddingStore | None) -> np.ndarray:
    source = test_store or store
    y = source.labels(plan.test_split)
    return y if plan.test_rows is None else y[plan.test_rows]


def stored_layers(store: EmbeddingStore, split: str, pooling: str) -> tuple[int, ...]:
    """Layers stored for one pooling (``pooler`` exists only for the last layer)."""
    return store.layers_of(split, pooling)


def pair_poolings_with_layers(
    store: EmbeddingStore,
    split: str,
    poolings: Sequence[str],
    selections: Sequence[tuple[int, ...]],
    explicit_poolings: bool,
) -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
    """(pooling, layer selection) pairs that the store holds, and notes on the ones skipped.

    A pooling named with ``--pooling`` must hold every requested layer; with the default (all
    poolings) a pooling that lacks some layers is probed on the rest, said aloud.
    """
    pairs: list[tuple[str, tuple[int, ...]]] = []
    notes: list[str] = []
    for pooling in poolings:
        available = set(stored_layers(store, split, pooling))
        missing = [s for s in selections if not set(s) <= available]
        if missing and explicit_poolings:
            raise StoreError(
                f"pooling {pooling!r} in {store.path} has layers {sorted(available)} only, not "
                f"{layer_label(missing[0])}; pass --layer with those, or drop --pooling {pooling}"
            )
        if missing:
            notes.append(
                f"pooling {pooling!r} skipped for layer(s) {'; '.join(map(layer_label, missing))} "
                f"(stored: {', '.join(map(str, sorted(available)))})"
            )
        pairs.extend((pooling, s) for s in selections if set(s) <= available)
    if not pairs:
        raise StoreError(f"no pooling in {store.path} holds the requested layers; see `mlx store info {store.path}`")
    return pairs, notes


def iter_matrices(
    store: EmbeddingStore,
    test_store: EmbeddingStore | None,
    plan: SplitPlan,
    pairs: Sequence[tuple[str, tuple[int, ...]]],
) -> Iterator[PooledMatrices]:
    """Yield one PooledMatrices per (pooling, layer selection), reading each dataset once, lazily.

    ``pairs`` must be grouped by pooling; a layer read for one selection is kept only until its
    last use within that pooling.
    """
    y_train, y_test = train_labels(plan, store), test_labels(plan, store, test_store)
    uses = Counter((pooling, layer) for pooling, selection in pairs for layer in selection)
    cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for pooling, selection in pairs:
        parts = []
        for layer in selection:
            key = (pooling, layer)
            pair = (
                cache.pop(key)
                if key in cache
                else _read_pair(store=store, test_store=test_store, plan=plan, pooling=pooling, layer=layer)
            )
            uses[key] -= 1
            if uses[key] > 0:
                cache[key] = pair
            parts.append(pair)
        X_train = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts], axis=1)
        X_test = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts], axis=1)
        yield PooledMatrices(
            pooling=pooling, layers=selection, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test
        )


def _read_pair(store, test_store, plan: SplitPlan, pooling: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
    if plan.carved_fraction is not None:
        X = _read(store=store, split=plan.train_split, pooling=pooling, layer=layer)
        return X[plan.train_rows], X[plan.test_rows]
    X_train = _read(store=store, split=plan.train_split, pooling=pooling, layer=layer)
    X_train = X_train if plan.train_rows is None else X_train[plan.train_rows]
    X_test = _read(store=test_store or store, split=plan.test_split, pooling=pooling, layer=layer)
    if X_train.shape[1] != X_test.shape[1]:
        raise StoreError(
            f"pooling {pooling!r} layer {layer}: train vectors have {X_train.shape[1]} dimensions but test "
            f"vectors have {X_test.shape[1]}; the splits come from different models, so embed both with one "
            "`mlx embed` run"
        )
    return X_train, X_test


def _read(store: EmbeddingStore, split: str, pooling: str, layer: int) -> np.ndarray:
    X = store.vectors(split, pooling, layer)  # one contiguous read
    if X.shape[0] != store.info.splits[split]:
        raise StoreError(
            f"{store.path}: split {split!r} pooling {pooling!r} layer {layer} has {X.shape[0]} rows but the "
            f"split has {store.info.splits[split]} labels; the store is damaged, re-create it with `mlx embed`"
        )
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        raise DataError(
            f"{store.path}: split {split!r} pooling {pooling!r} layer {layer} has NaN or inf in "
            f"{int((~finite).sum())} of {len(X)} rows (first row {int(np.argmin(finite))}); re-embed with `mlx embed --dtype fp32` "
            "(half precision can overflow) or choose another pooling/layer"
        )
    log.info("read %s/%s/layer %d: %d x %d", split, pooling, layer, *X.shape)
    return X


def open_store(path: Path) -> EmbeddingStore:
    return EmbeddingStore(Path(path))


@dataclass(frozen=True)
class ProbePlan:
    """The checked inputs of one probe run: its stores, the rows it trains and tests on, what it probes."""

    store: EmbeddingStore
    test_store: EmbeddingStore | None
    splits: SplitPlan
    pairs: list[tuple[str, tuple[int, ...]]]  # (pooling, layer selection), in the order they are probed
    poolings: tuple[str, ...]
    selections: tuple[tuple[int, ...], ...]
    label_names: tuple[str, ...]
    n_train: int
    n_test: int
    notes: list[str]
    store_meta: dict[str, Any]

    def summary(self, config: ProbeRunConfig, run_dir: Path) -> dict[str, Any]:
        """What ``on_plan`` is told before the long work."""
        return {
            "store": str(self.store.path),
            "model": self.store.info.model_id,
            "split": self.splits.describe(),
            "rows": f"{self.n_train:,} train / {self.n_test:,} test, {len(self.label_names)} classes, seed {config.seed}",
            "poolings": ", ".join(self.poolings),
            "layers": "; ".join(map(layer_label, self.selections)),
            "probes": ", ".join(p.value for p in config.probes),
            "run folder": str(run_dir),
            "notes": self.notes,
        }
