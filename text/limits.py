"""The one token limit: ``max_length`` for embed, probe stores, finetune, attention and study.

A probe and a fine-tune compared in one table must read the same tokens of each text, so there is
one default and one resolver. 256 tokens keep every AG News text whole (they run to about 60
tokens, a few to 200) while bounding the cost of the rare long one.
"""

from common.errors import ConfigError

DEFAULT_MAX_LENGTH = 256


def resolve_max_length(requested: int | None, model_limit: int | None, model: str) -> tuple[int, str | None]:
    """(tokens kept per text, a note to say aloud or None).

    ``requested`` None: DEFAULT_MAX_LENGTH, lowered to ``model_limit`` (the model's position
    embeddings, 0 or None when unknown) when that is smaller, with a note. A requested value must
    be at least 2 ([CLS] and [SEP]) and at most the model's limit.
    """
    if requested is None:
        if model_limit and model_limit < DEFAULT_MAX_LENGTH:
            return model_limit, f"max length {model_limit}: the most model {model!r} takes"
        return DEFAULT_MAX_LENGTH, None
    if requested < 2:
        raise ConfigError(f"--max-length must be at least 2 (room for [CLS] and [SEP]), got {requested}")
    if model_limit and requested > model_limit:
        raise ConfigError(
            f"--max-length {requested} is more than model {model!r} takes ({model_limit} tokens); "
            f"pass --max-length {model_limit} or less"
        )
    return requested, None
