"""One grammar for every command, applied once to the whole command tree rather than option by option.

- Choices (Enum options) accept any case: ``--dataset KMNIST`` is ``--dataset kmnist``.
- A bad choice is refused in our own words, listing the valid values (``choice_error``).
- A flag shows no value type in help (no ``<bool>``): it takes no value.

``walk`` is the one traversal of the tree; tests/test_cli_grammar.py uses it too, so a new command
or option anywhere is checked (help text, case, refusal) without being listed.
"""

from collections.abc import Iterator
from enum import Enum


def walk(command, path: tuple[str, ...] = ("mlx",)) -> Iterator[tuple[tuple[str, ...], object]]:
    """Every command of the tree, depth first, with its path (``("mlx", "probe", "knn")``)."""
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from walk(sub, (*path, name))


def params(command) -> list:
    """A command's parameters, with the --help option that click adds to each command (and caches)."""
    return command.get_params(command.context_class(command))


def choices(param) -> tuple[str, ...] | None:
    """The valid values of a choice parameter as typed on the command line, or None for any other."""
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.25 (its own coercion)
    values = descriptor.choices if descriptor is not None else getattr(param.type, "choices", None)
    if values is None:
        return None
    return tuple(str(v.value) if isinstance(v, Enum) else str(v) for v in values)


def is_flag(param) -> bool:
    return bool(getattr(param, "is_flag", False)) and not getattr(param, "count", False)


def apply(root) -> None:
    """Make every choice case-insensitive and every flag metavar-free, in the whole tree under ``root``."""
    for _, command in walk(root):
        for param in params(command):
            if choices(param) is not None:
                _case_insensitive(param)
            if is_flag(param):
                param.metavar = ""  # typer's rich help prints the type otherwise: `--force <bool>`


def _case_insensitive(param) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        descriptor.parameter_info.case_sensitive = False
        param._runtime_param = None  # built lazily from parameter_info: rebuild on first use
    else:  # click's own Choice (older typer)
        param.type.case_sensitive = False


def choice_error(param, exc) -> str:
    """``--dataset: unknown value 'mnist'; choose from kmnist, digits``, worded as every list option's refusal."""
    from common.options import unknown_choice

    return unknown_choice((getattr(param, "opts", None) or [param.name])[0], _rejected_value(exc), choices(param) or ())


def _rejected_value(exc):
    """The value the user typed, where typer's converter kept it (the pydantic error it raised from), else None."""
    errors = getattr(exc.__cause__, "errors", None)
    if callable(errors):
        for error in errors():
            if isinstance(error.get("input"), str):
                return error["input"]
    return None
