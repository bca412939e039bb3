"""Hermetic test set-up: every cache and output under tmp_path, no network, a tiny random BERT."""

import os
import sys
from pathlib import Path

import pytest

# Never reach a hub from the tests, whatever the machine can reach.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

TINY_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + "the a of to in and is for on with at by from stocks market shares profit bank oil prices "
    "team game win season coach cup match player league goal scores election president minister "
    "war police government talks troops peace software internet computer phone space nasa science "
    "chip web users data new says after over as up it an be will has not".split()
    + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    + list("abcdefghijklmnopqrstuvwxyz0123456789.,'-!?")
)


def pytest_addoption(parser):
    parser.addoption(
        "--count-refusals",
        action="store_true",
        help="count, per mlx command, the CLI cases in the suite that end in a one-line refusal (printed at the end)",
    )


_REFUSALS: dict[str, int] = {}


@pytest.fixture(autouse=True, scope="session")
def count_refusals(request):
    """With --count-refusals: every CliRunner call that ends in one `error:` line counts for its command."""
    if not request.config.getoption("--count-refusals"):
        yield
        return
    from typer.testing import CliRunner

    original = CliRunner.invoke

    def counting(self, app, args=None, *rest, **kwargs):
        result = original(self, app, args, *rest, **kwargs)
        errors = [line for line in (result.stderr or "").splitlines() if line.startswith("error:")]
        if result.exit_code not in (0, 130) and len(errors) == 1:
            name = _command_of(app, [str(a) for a in (args or [])])
            _REFUSALS[name] = _REFUSALS.get(name, 0) + 1
        return result

    CliRunner.invoke = counting
    yield
    CliRunner.invoke = original


def _command_of(app, args: list[str]) -> str:
    import typer.main

    command, words = typer.main.get_command(app), []
    for arg in args:
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        command, words = sub, [*words, arg]
    return " ".join(words) or "(none)"


def pytest_terminal_summary(terminalreporter, config):
    if config.getoption("--count-refusals") and _REFUSALS:
        terminalreporter.section("one-line refusals per command")
        for name, n in sorted(_REFUSALS.items(), key=lambda item: (-item[1], item[0])):
            terminalreporter.write_line(f"{n:6d}  mlx {name}")
        terminalreporter.write_line(f"{sum(_REFUSALS.values()):6d}  in all")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Point the mlx home and every Hugging Face cache at tmp_path."""
    home = tmp_path / "mlx-home"
    monkeypatch.setenv("MLX_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    return home


@pytest.fixture(autouse=True)
def no_internal_error(request, monkeypatch):
    """Every test fails that reaches cli.main's internal-error path (a bug, not a handled case), unless
    marked ``internal_error``: no hostile case in the suite may end as `mlx: internal error`."""
    main = sys.modules.get("cli.main")  # imported by any test module that runs commands
    if main is None or request.node.get_closest_marker("internal_error"):
        yield
        return
    reached = []
    original = main._internal_error

    def recording(exc):
        reached.append(exc)
        original(exc)

    monkeypatch.setattr(main, "_internal_error", recording)
    yield
    if reached:
        pytest.fail(f"a command reached the internal-error path: {type(reached[0]).__name__}: {reached[0]}")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT with hidden size 32 and random weights, saved as a local model folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(TINY_VOCAB)) + "\n")
    config = BertConfig(
        vocab_size=len(dict.fromkeys(TINY_VOCAB)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(folder)
    # transformers 5.x ignores `vocab_file=` (the tokenizer would know only the 5 special tokens).
    BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True).save_pretrained(folder)
    return folder
