"""The one grammar for list-valued options (``--layer``, ``--k``, ``--C``, ``--pooling``, sweep grids).

Parsed once in ``cli/`` so that configs hold typed values: tuples of ints, floats or names, in the
order given with duplicates dropped. No typer here: the parsers raise ConfigError naming the option.

Layer grammar: ``4`` (one layer), ``4,5,6`` or ``4-6`` (a selection), ``last``, ``all``.
``mlx embed`` stores each layer of a selection; ``mlx probe`` concatenates a selection's vectors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypedDict, TypeVar, Union

from common.errors import ConfigError

T = TypeVar("T")

LAST = "last"
ALL = "all"
LayerSpec = Union[str, tuple[int, ...]]  # "last", "all", or layer numbers (0 = the embedding output)


class Bounds(TypedDict):
    """typer.Option's keyword arguments for an integer range (a TypedDict, so that a type checker
    matches ``**bounds`` to Option's ``min`` and ``max``)."""

    min: int
    max: int


@dataclass(frozen=True)
class IntRange:
    """The bounds of an integer option. Every integer option has one (the CLI tests walk them), so an
    absurd value is one parser line, not an OverflowError or a MemoryError deep inside torch."""

    low: int
    high: int
    why: str = ""  # said after the bounds when a value is refused

    @property
    def bounds(self) -> Bounds:
        """typer.Option(..., **SEEDS.bounds)"""
        return {"min": self.low, "max": self.high}

    def check(self, value: int | None, option: str) -> None:
        """The same bounds for library callers (configs built without the CLI); None passes."""
        if value is not None and not self.low <= value <= self.high:
            raise ConfigError(f"{option} must lie in {self.low}..{self.high}{self.why}, got {value}")


SEEDS = IntRange(0, 2**32 - 1)  # what NumPy's legacy seeding and every torch generator accept
EPOCHS = IntRange(1, 10_000)
COUNTS = IntRange(1, 10**9)  # rows, steps, sizes: more than any data set mlx reads
ROWS = IntRange(0, 10**9)  # a row number
BATCH_SIZES = IntRange(1, 2**16)
TOKENS = IntRange(2, 2**20)  # --max-length: room for [CLS] and [SEP]; the model's own limit is checked later
THREADS = IntRange(1, 1_024)  # --threads as parsed (help text alike on every machine) ...
CPUS = IntRange(
    1, os.cpu_count() or 1, " (one per CPU present at most)"
)  # ... and where threads are set: one per CPU present at most
PROCESSES = IntRange(1, 1_024)  # --nproc: ranks on one machine (one per GPU, or CPU processes)
SMALL = IntRange(0, 1_000)  # small counts where 0 is meaningful (--tta; its library check is tighter)
MEMBERS = IntRange(1, 1_000)  # ensemble members (the library allows fewer)
RANKS = IntRange(1, 65_536)  # --lora-rank: a rank above a layer's width adds parameters, not capacity
DEPTHS = IntRange(1, 256)  # hidden layers or conv blocks
WIDTHS = IntRange(1, 10**9)  # units or channels per layer (training refuses a model over its parameter budget)
GRADCHECK_WIDTHS = IntRange(1, 1_024)  # the float64 check holds every weight matrix in memory


def split_values(values: str | Iterable[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` (a repeated option) -> stripped, non-empty parts."""
    texts = [values] if isinstance(values, str) else list(values or ())
    return [part.strip() for text in texts for part in str(text).split(",") if part.strip()]


def parse_list(values: str | Iterable[str], convert: Callable[[str], T], option: str, example: str) -> tuple[T, ...]:
    """Comma-separated (or repeated) values through ``convert``; duplicates dropped, order kept."""
    parsed = []
    for part in split_values(values):
        try:
            parsed.append(convert(part))
        except ValueError:
            raise ConfigError(
                f"{option}: cannot read {part!r}; give comma-separated values such as {option} {example}"
            ) from None
    if not parsed:
        raise ConfigError(f"{option} is empty; give comma-separated values such as {option} {example}")
    return tuple(dict.fromkeys(parsed))


def parse_ints(
    values: str | Iterable[str],
    option: str,
    minimum: int | None = None,
    example: str = "1,5,10",
    maximum: int | None = None,
) -> tuple[int, ...]:
    numbers = parse_list(values=values, convert=int, option=option, example=example)
    if minimum is not None and min(numbers) < minimum:
        raise ConfigError(
            f"{option}: {min(numbers)} is below {minimum}; give values of at least {minimum}, e.g. {option} {example}"
        )
    if maximum is not None and max(numbers) > maximum:
        raise ConfigError(
            f"{option}: {max(numbers)} is above {maximum}; give values of at most {maximum}, e.g. {option} {example}"
        )
    return numbers


def parse_floats(
    values: str | Iterable[str], option: str, positive: bool = False, example: str = "0.01,0.1,1"
) -> tuple[float, ...]:
    """Finite floats (``nan`` and ``inf`` refused); ``positive`` also refuses zero and negatives."""
    numbers = parse_list(values=values, convert=float, option=option, example=example)
    for number in numbers:
        if not math.isfinite(number):
            raise ConfigError(
                f"{option}: {number} is not a {'positive ' if positive else ''}finite number; give values such as {option} {example}"
            )
        if positive and number <= 0:
            raise ConfigError(
                f"{option}: {number:g} is not a positive finite number; give values such as {option} {example}"
            )
    return numbers


def parse_names(values: str | Iterable[str], option: str, choices: Iterable[str] | None = None) -> tuple[str, ...]:
    """Lower-cased names, duplicates dropped; with ``choices`` an unknown name is refused, listing them."""
    names = tuple(dict.fromkeys(part.lower() for part in split_values(values)))
    allowed = tuple(choices) if choices is not None else None
    if not names:
        raise ConfigError(f"{option} is empty" + (f"; choose from {', '.join(allowed)}" if allowed else ""))
    for name in names:
        if allowed is not None and name not in allowed:
            raise ConfigError(unknown_choice(option, name, allowed))
    return names


def unknown_choice(option: str, value: str | None, allowed: Iterable[str]) -> str:
    """The one refusal of a value outside a closed set (list options here, Enum options in ``cli/grammar.py``)."""
    given = f"unknown value {value!r}" if value is not None else "unknown value"
    return f"{option}: {given}; choose from {', '.join(allowed)}"


def parse_layer(text: str, option: str = "--layer") -> LayerSpec:
    """``last`` | ``all`` | ``4`` | ``4,5,6`` | ``4-6`` | ``1,3-4`` -> "last", "all" or a tuple of ints."""
    spec = str(text).strip().lower()
    if spec in (LAST, ALL):
        return spec
    layers: list[int] = []
    try:
        for part in split_values(spec):
            low, dash, high = part.partition("-")
            if dash and not low:  # "-1": a negative layer, refused below
                raise ValueError(part)
            if dash and int(low) > int(high):
                raise ValueError(part)
            layers.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    except ValueError:
        raise ConfigError(
            f"cannot read {option} {text!r}; use a layer number, a list such as 4,5,6, a range such as 4-6, "
            f"'{LAST}' or '{ALL}'"
        ) from None
    if not layers:
        raise ConfigError(
            f"{option} is empty; use a layer number, a list such as 4,5,6, a range such as 4-6, '{LAST}' or '{ALL}'"
        )
    return tuple(dict.fromkeys(layers))


def parse_layers(values: str | Iterable[str], option: str = "--layer") -> tuple[LayerSpec, ...]:
    """Repeated ``--layer`` values, each one selection (``--layer 4 --layer 4,5,6``); duplicates dropped."""
    texts = [values] if isinstance(values, str) else list(values or ())
    return tuple(dict.fromkeys(parse_layer(text, option) for text in texts))


def layers_in(spec: LayerSpec, n_layers: int, option: str = "--layer") -> tuple[int, ...]:
    """Resolve a LayerSpec against a model of ``n_layers`` (hidden states 0..n_layers)."""
    if spec == LAST:
        return (n_layers,)
    if spec == ALL:
        return tuple(range(n_layers + 1))
    if isinstance(spec, str):
        raise ConfigError(f"{option} {spec!r}: expected '{LAST}', '{ALL}' or layer numbers")
    bad = [layer for layer in spec if not 0 <= layer <= n_layers]
    if bad:
        raise ConfigError(
            f"{option} {layer_text(spec)}: this model has layers 0..{n_layers} (0 = embeddings, {n_layers} = last)"
        )
    return tuple(spec)


def layer_text(spec: LayerSpec) -> str:
    """A LayerSpec written back in the option grammar (for messages and summaries)."""
    return spec if isinstance(spec, str) else ",".join(map(str, spec))
