"""Frozen-encoder embedding extraction into a cached, resumable HDF5 store.

Work is cut into shards of consecutive examples in length-sorted order. Each finished shard is
written to its own file (write to temp, rename), so after Ctrl-C or kill -9 a re-run recomputes
only the missing shards; the shards are deterministic, so the result equals an uninterrupted run.
The final store is assembled from the shards and renamed into place only when complete.
"""

import contextlib
import dataclasses
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import ConfigError, StoreError
from common.artifacts import Identity, IdentityMismatch, Reuse, check_kind, decide, to_plain
from common.cost import device_name, measure
from common.devices import Device, EncoderDType, resolve_encoder_dtype
from common.locking import store_lock
from common.options import LayerSpec, layers_in, parse_layer
from common.paths import ensure_writable_dir, home_subdir
from common.progress import ProgressCallback, no_progress
from common.writes import disk_errors, write_json, write_npz
from embeddings.store import SplitArrays, write_store
from text.datasets import TextDataset, TextSplit, load_text_dataset
from text.defaults import DEFAULT_MODEL
from text.limits import resolve_max_length
from text.models import LoadedModel, load_model, model_revision, model_shape, resolve_model
from text.pooling import Pooling, parse_poolings, pool_layer
from text.quantize import INT8_SCHEME, check_int8
from text.tokens import cut_texts
from training.devices import resolve_device_name
from training.distributed import DistInfo, barrier, init_distributed

log = logging.getLogger(__name__)

SHARD_BATCHES = 16  # batches per shard: the unit of resumption
SHARD_SECONDS = "seconds"  # the key of a shard's own compute time (vectors are keyed 'pooling@layer')


@dataclass(frozen=True)
class EmbedConfig:
    dataset: str = "demo"
    splits: tuple[str, ...] = ()
    text_column: str = "text"
    label_column: str = "label"
    limit: int | None = None
    seed: int = 0
    model: str = DEFAULT_MODEL
    poolings: tuple[str, ...] = ("mean",)
    layer: LayerSpec = "last"  # "last", "all", or hidden-state indices (common.options.parse_layer)
    max_length: int | None = None  # None: text.limits.DEFAULT_MAX_LENGTH, or the model's limit if lower
    batch_size: int = 64
    device: Device = Device.AUTO
    dtype: EncoderDType = EncoderDType.AUTO
    out: Path | None = None
    force: bool = False


@dataclass(frozen=True)
class EmbedPlan:
    """What will run, resolved before any model work: printed by the CLI as its summary."""

    config: EmbedConfig
    dataset: TextDataset
    model_source: str
    model_revision: str
    device: str
    dtype: EncoderDType
    path: Path
    key: str
    cached: bool
    layers: tuple[int, ...]
    identity: Identity


@dataclass(frozen=True)
class EmbedResult:
    path: Path
    cached: bool
    n_examples: dict[str, int]
    poolings: tuple[str, ...]
    layers: tuple[int, ...]
    seconds: float
    notes: tuple[str, ...] = field(default=())
    n_embedded: int | None = (
        None  # texts run through the model in this call (None: all); the rest came from kept shards
    )

    @property
    def n_resumed(self) -> int:
        return 0 if self.n_embedded is None else sum(self.n_examples.values()) - self.n_embedded

    @property
    def sentences_per_second(self) -> float:
        """Texts the model embedded per second in this call: shards resumed from disk are not counted."""
        n = sum(self.n_examples.values()) if self.n_embedded is None else self.n_embedded
        return n / self.seconds if self.seconds > 0 else 0.0


def plan_extraction(config: EmbedConfig) -> EmbedPlan:
    """Load the data, resolve model identity, device, dtype and output path; check the cache."""
    if (config.max_length is not None and config.max_length < 2) or config.batch_size < 1 or config.seed < 0:
        raise ConfigError("--max-length must be at least 2, --batch-size at least 1 and --seed 0 or more")
    parse_poolings(list(config.poolings))  # fail on a bad name before any loading
    dataset = load_text_dataset(
        spec=config.dataset,
        splits=config.splits,
        text_column=config.text_column,
        label_column=config.label_column,
        limit=config.limit,
        seed=config.seed,
    )
    source = resolve_model(config.model)
    shape = model_shape(config.model)
    layers = resolve_layers(config.layer, shape.n_layers)
    max_length, _ = resolve_max_length(config.max_length, shape.max_positions, config.model)
    config = dataclasses.replace(config, max_length=max_length)
    revision = model_revision(source)
    device = resolve_device_name(config.device)
    dtype = resolve_encoder_dtype(config.dtype, device)
    identity = store_identity(config=config, dataset=dataset, source=source, dtype=dtype, layers=layers)
    key = identity.key()
    path = config.out if config.out is not None else default_store_path(dataset.name, config.model, key)
    path = Path(path).expanduser().absolute()
    ensure_writable_dir(path.parent)
    cached = _is_cached(path, identity, config.force)
    if dtype is EncoderDType.INT8 and not cached:
        check_int8()
    return EmbedPlan(
        config=config,
        dataset=dataset,
        model_source=source,
        model_revision=revision,
        device=device,
        dtype=dtype,
        path=path,
        key=key,
        cached=cached,
        layers=layers,
        identity=identity,
    )


STORE_KIND = "mlx embedding store"


def store_identity(
    config: EmbedConfig, dataset: TextDataset, source: str, dtype: EncoderDType, layers: tuple[int, ...]
) -> Identity:
    """Everything that changes the stored numbers, and nothing else (not device, out or force; no path).

    Parsed values count, not option text: ``--layer 4-6`` and ``4,5,6`` (and ``last`` and the
    last layer's number) are one extraction, and so are poolings in any order or repeated.
    """
    from text.models import model_identity

    settings = {
        "poolings": sorted(p.value for p in parse_poolings(list(config.poolings))),
        "layers": sorted(set(layers)),
        "max_length": config.max_length,
        "dtype": dtype.value,
        "batch_size": config.batch_size,  # batch composition changes padding, hence bf16 rounding
        "label_names": list(dataset.label_names),
        "schema": 3,
    }
    if dtype is EncoderDType.INT8:  # how it was quantised changes the vectors too
        settings["quantisation"] = INT8_SCHEME
    return Identity.of(
        STORE_KIND,
        settings,
        data={name: split.fingerprint for name, split in dataset.splits.items()},
        model=model_identity(source),
    )


def default_store_path(dataset_name: str, model: str, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{dataset_name}-{Path(model).name}").strip("-")
    return home_subdir("stores") / f"{slug}-{key[:10]}.h5"


def _is_cached(path: Path, identity: Identity, force: bool) -> bool:
    """True when ``path`` holds a complete store of this very extraction (and --force is off)."""
    if not check_kind(path, STORE_KIND):
        return False
    decision = decide(path, identity, _stored_identity(path), finished=True, force=force, remedy=REPLACE_REMEDY)
    return decision is Reuse.REUSE


REPLACE_REMEDY = "pass --force to replace it, or choose another --out"


def _stored_identity(path: Path) -> dict:
    """The flat identity a store was made with; a store of an older mlx saved only a hash of it."""
    import h5py

    with h5py.File(path, "r") as f:
        saved = Identity.from_dict(_json_attr(f.attrs.get("identity")))
        key = str(f.attrs.get("cache_key", ""))
    return saved.flat() if saved is not None else {"settings made by an older mlx (key)": key}


def _json_attr(value) -> object:
    try:
        return json.loads(value) if isinstance(value, (str, bytes)) else None
    except ValueError:
        return None


def extract_embeddings(plan: EmbedPlan, progress: ProgressCallback = no_progress) -> EmbedResult:
    """Run the plan: model forward passes shard by shard, then the atomic store write.

    Under torchrun (WORLD_SIZE > 1) rank r computes the shards whose index is r modulo the world
    size, every rank writes into the same ``.partial/`` folder (a shared filesystem across nodes),
    and rank 0 assembles the store after a barrier. Shards are the same whatever the world size,
    so the store equals a one-process store and a re-run after a crash resumes from the shards.
    """
    n = {s: len(split) for s, split in plan.dataset.splits.items()}
    if plan.cached:
        return _cache_hit(plan, n)
    started = time.perf_counter()
    info = init_distributed(plan.device.split(":")[0])
    # Only rank 0 holds the store lock: it guards against another *command*, not against our own ranks.
    with store_lock(plan.path) if info.is_main else contextlib.nullcontext():
        if info.is_main:
            for stale in plan.path.parent.glob(f".{plan.path.name}.*.tmp"):  # a final write killed midway
                stale.unlink(missing_ok=True)
            _partial_dir(plan)
        barrier()  # the shard folder exists and is this extraction's before any rank writes into it
        partial = plan.path.parent / f".{plan.path.name}.partial"
        device = f"cuda:{info.local_rank}" if plan.device == "cuda" and info.enabled else plan.device
        with measure(device) as usage:
            loaded = load_model(plan.config.model, device, plan.dtype)
            poolings, notes = _usable_poolings(plan.config.poolings, loaded)
            shards = {
                name: _embed_shards(
                    split=split,
                    loaded=loaded,
                    poolings=poolings,
                    layers=plan.layers,
                    config=plan.config,
                    partial=partial,
                    progress=progress,
                    info=info,
                )
                for name, split in plan.dataset.splits.items()
            }
        n_embedded = sum(n_split for _, _, n_split in shards.values())  # this rank's new work, not kept shards
        barrier()  # every shard is on disk
        if info.is_main:
            attrs = _root_attrs(plan=plan, loaded=loaded, poolings=poolings, layers=plan.layers)
            attrs.update(peak_memory_bytes=usage.peak_memory_bytes or 0, device_name=device_name(device))
            write_store(plan.path, attrs, _assembled_splits(plan, shards))
            shutil.rmtree(partial, ignore_errors=True)
        barrier()  # the store is complete before any rank reports success
    return EmbedResult(
        path=plan.path,
        cached=False,
        n_examples=n,
        poolings=tuple(p.value for p in poolings),
        layers=plan.layers,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
        n_embedded=n_embedded,
    )


def _cache_hit(plan: EmbedPlan, n_examples: dict[str, int]) -> EmbedResult:
    return EmbedResult(
        path=plan.path,
        cached=True,
        n_examples=n_examples,
        poolings=tuple(plan.config.poolings),
        layers=plan.layers,
        seconds=0.0,
        notes=("cache hit: no model work",),
    )


def _assembled_splits(plan: EmbedPlan, shards: dict[str, tuple[list[Path], np.ndarray, int]]) -> dict[str, SplitArrays]:
    """Each split's shards (``_embed_shards``) read back into one store split, in row order."""
    splits = {}
    for name, split in plan.dataset.splits.items():
        vectors, seconds = _assemble(*shards[name][:2])
        splits[name] = SplitArrays(
            labels=split.labels,
            row_ids=split.row_ids,
            vectors=vectors,
            fingerprint=split.fingerprint,
            encode_seconds=seconds,
        )
    return splits


def resolve_layers(layer: LayerSpec | str, n_layers: int) -> tuple[int, ...]:
    """'last' -> (n,), 'all' -> (0..n), '4,5,6' or '4-6' -> (4, 5, 6), sorted; 0 is the embedding output."""
    spec = parse_layer(layer) if isinstance(layer, str) else layer
    return tuple(sorted(layers_in(spec, n_layers)))


def _usable_poolings(names: tuple[str, ...], loaded: LoadedModel) -> tuple[tuple[Pooling, ...], list[str]]:
    poolings = parse_poolings(list(names))
    if Pooling.POOLER in poolings and not loaded.has_pooler:
        if any(n.strip().lower() == "pooler" for name in names for n in str(name).split(",")):
            raise ConfigError(f"model {loaded.model_id!r} has no trained pooler; choose another --pooling")
        return tuple(p for p in poolings if p is not Pooling.POOLER), [
            f"model {loaded.model_id} has no trained pooler: 'pooler' skipped"
        ]
    return poolings, []


def _partial_dir(plan: EmbedPlan) -> Path:
    """Shard folder beside the store, resumed under the one reuse rule (common.artifacts.decide).

    Shards of this very extraction are kept even with --force: --force replaces a finished store,
    it does not throw away work that equals what it would recompute. Shards of another extraction
    are refused, or with --force thrown away.
    """
    partial = plan.path.parent / f".{plan.path.name}.partial"
    meta = partial / "meta.json"
    saved = _saved_shards(meta) if partial.exists() else None
    try:
        decision = decide(
            partial, plan.identity, saved, finished=False, progress=any(partial.glob("*.npz")), remedy=REPLACE_REMEDY
        )
    except IdentityMismatch:
        if not plan.config.force:
            raise
        log.warning("--force: the shards of another extraction in %s are thrown away", partial)
        decision = Reuse.RESTART
    if decision is Reuse.RESTART:
        shutil.rmtree(partial)
    with disk_errors(partial):
        partial.mkdir(exist_ok=True)
    if not meta.exists():
        write_json(meta, {"cache_key": plan.key, "identity": plan.identity.to_dict()})
    return partial


def _saved_shards(meta: Path) -> dict:
    """The identity the shards were computed under; none readable: nothing to keep."""
    try:
        saved = Identity.from_dict(json.loads(meta.read_text()).get("identity"))
    except (OSError, ValueError, AttributeError):
        saved = None
    return saved.flat() if saved is not None else {"unreadable meta.json": str(meta)}


def _embed_shards(
    split: TextSplit, loaded, poolings, layers, config, partial: Path, progress, info: DistInfo = DistInfo()
) -> tuple[list[Path], np.ndarray, int]:
    """Compute this rank's missing shards of ``split``; return every shard file (all ranks'), the row order and the texts embedded now."""
    # Long texts cut to what max_length tokens need, once: tokenising stays bounded by --max-length.
    bounded = cut_texts(split.texts, loaded.tokenizer, config.max_length)
    order = length_order(bounded, loaded.tokenizer, config.max_length)
    shard_size = config.batch_size * SHARD_BATCHES
    task, total = f"embed {split.name}", len(order)
    shards, n_embedded = [], 0
    for index, start in enumerate(range(0, total, shard_size)):
        shard_file = partial / f"{split.name}-{index:05d}.npz"
        shards.append(shard_file)
        if index % info.world_size != info.rank:
            continue
        if not shard_file.exists() or not _whole_shard(shard_file, len(order[start : start + shard_size])):
            texts = [bounded[i] for i in order[start : start + shard_size]]

            def batch_done(n_done: int, offset: int = start) -> None:
                progress(task, offset + n_done, total)

            started = time.perf_counter()
            vectors = _embed_texts(
                texts=texts, loaded=loaded, poolings=poolings, layers=layers, config=config, batch_done=batch_done
            )
            # its own time travels with the shard, so a resumed store still knows the encoder's cost
            write_npz(shard_file, {**vectors, SHARD_SECONDS: np.float64(time.perf_counter() - started)})
            n_embedded += len(texts)
        progress(task, min(start + shard_size, total), total)
    return shards, order, n_embedded


def _whole_shard(path: Path, n_rows: int) -> bool:
    """A kept shard is reused only when it holds finite (n_rows, D) float32 vectors; else it is recomputed, said aloud."""
    problem: str | None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            vectors = {key: arrays[key] for key in arrays.files if key != SHARD_SECONDS}
    except Exception as exc:  # a damaged zip raises whatever its first broken byte causes
        problem = f"unreadable: {type(exc).__name__}"
    else:
        bad = [
            key
            for key, v in vectors.items()
            if "@" not in key or v.ndim != 2 or v.dtype != np.float32 or len(v) != n_rows or not np.isfinite(v).all()
        ]
        problem = "no vectors" if not vectors else f"{bad[0]!r} is not finite ({n_rows}, D) float32" if bad else None
    if problem:
        log.warning("shard %s is damaged (%s); recomputing it", path, problem)
    return problem is None


def length_order(texts, tokenizer, max_length: int) -> np.ndarray:
    """Indices sorting texts longest first (stable): batches then need little padding."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    return np.argsort(-np.asarray(lengths), kind="stable")


def _embed_texts(texts: list[str], loaded: LoadedModel, poolings, layers, config, batch_done) -> dict[str, np.ndarray]:
    """One forward pass per batch serves every pooling and layer. Keys are 'pooling@layer'."""
    import torch

    with torch.inference_mode():
        return _forward_batches(
            texts=texts, loaded=loaded, poolings=poolings, layers=layers, config=config, batch_done=batch_done
        )


def _forward_batches(texts, loaded: LoadedModel, poolings, layers, config, batch_done) -> dict[str, np.ndarray]:
    import torch

    need_all_states = layers != (loaded.n_layers,) or Pooling.FIRST_LAST_AVG in poolings
    layer_poolings = tuple(p for p in poolings if p is not Pooling.POOLER)
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(texts), config.batch_size):
        batch = loaded.tokenizer(
            texts[start : start + config.batch_size],
            padding=True,
            truncation=True,
            max_length=config.max_length,
            return_tensors="pt",
        ).to(loaded.device)
        output = loaded.model(**batch, output_hidden_states=need_all_states)
        states = output.hidden_states if need_all_states else {loaded.n_layers: output.last_hidden_state}
        first = states[1] if need_all_states and loaded.n_layers >= 1 else None
        for layer in layers:
            for pooling, vectors in pool_layer(
                poolings=layer_poolings, hidden=states[layer], first_hidden=first, mask=batch["attention_mask"]
            ).items():
                chunks.setdefault(f"{pooling.value}@{layer}", []).append(vectors.cpu())
        if Pooling.POOLER in poolings:
            chunks.setdefault(f"pooler@{loaded.n_layers}", []).append(output.pooler_output.float().cpu())
        batch_done(min(start + config.batch_size, len(texts)))
    return {key: torch.cat(parts).numpy() for key, parts in chunks.items()}


def _assemble(shards: list[Path], order: np.ndarray) -> tuple[dict[tuple[str, int], np.ndarray], float | None]:
    """((pooling, layer) -> (N, D) float32 in the split's source row order, the model's seconds on the split).

    The seconds are None when a shard kept from an older mlx does not say its own.
    """
    parts: dict[str, list[np.ndarray]] = {}
    seconds: float | None = 0.0
    for shard in shards:
        with np.load(shard, allow_pickle=False) as arrays:
            seconds = (
                None if seconds is None or SHARD_SECONDS not in arrays.files else seconds + float(arrays[SHARD_SECONDS])
            )
            for key in arrays.files:
                if key != SHARD_SECONDS:
                    parts.setdefault(key, []).append(arrays[key])
    uneven = [key for key, chunks in parts.items() if len(chunks) != len(shards)]
    if uneven:  # each shard was whole, but they hold different vectors: not one extraction
        raise StoreError(
            f"the shards in {shards[0].parent} do not all hold {uneven[0]!r}; delete that folder to embed afresh"
        )
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    vectors = {}
    for key, chunks in parts.items():
        pooling, layer = key.rsplit("@", 1)
        vectors[(pooling, int(layer))] = np.concatenate(chunks)[inverse]  # back to source row order
    return vectors, seconds


def _root_attrs(plan: EmbedPlan, loaded: LoadedModel, poolings, layers) -> dict:
    return {
        "cache_key": plan.key,
        "identity": json.dumps(plan.identity.to_dict()),
        "model_id": plan.config.model,
        "model_source": plan.model_source,
        "model_revision": plan.model_revision,
        "max_length": plan.config.max_length,
        "dtype": plan.dtype.value,
        **({"quantisation": INT8_SCHEME} if plan.dtype is EncoderDType.INT8 else {}),
        "device": plan.device,
        "dataset_name": plan.dataset.name,
        "dataset_fingerprint": plan.dataset.fingerprint,
        "label_names": list(plan.dataset.label_names),
        "poolings": [p.value for p in poolings],
        "layers": list(layers),
        "n_layers": loaded.n_layers,
        "config": to_plain(plan.config),
    }
