"""One CLI grammar, checked over the whole command tree: a new command or option is covered without being listed."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cli import grammar, ui
from cli.main import app
from tests.helpers import invoke

ROOT = typer.main.get_command(app)
COMMANDS = {" ".join(path): command for path, command in grammar.walk(ROOT)}
README = (Path(__file__).parent.parent / "README.md").read_text()


def visible_params(command):
    return [p for p in grammar.params(command) if not getattr(p, "hidden", False)]


CHOICE_PARAMS = [
    pytest.param(command, param, id=f"{path} {param.opts[0]}")
    for path, command in COMMANDS.items()
    for param in command.params
    if grammar.choices(param) is not None
]


def test_the_walk_finds_every_command():
    for path in (
        "mlx embed",
        "mlx probe knn",
        "mlx vision compare",
        "mlx runs list",
        "mlx store list",
        "mlx study text",
    ):
        assert path in COMMANDS
    assert len(CHOICE_PARAMS) >= 10  # Enum options exist, so the tests below test something


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_option_and_argument_has_help(path):
    assert (COMMANDS[path].help or "").strip(), f"{path}: no help text"
    missing = [p.opts or [p.name] for p in visible_params(COMMANDS[path]) if not (p.help or "").strip()]
    assert missing == [], f"{path}: no help text for {missing}"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_shows_no_value_type_for_flags(path):
    result = invoke(*path.split()[1:], "--help")
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(("command", "param"), CHOICE_PARAMS)
def test_every_choice_accepts_any_case(command, param):
    ctx = typer.Context(command)
    multiple = param.multiple or param.nargs == -1
    for value in grammar.choices(param):
        for typed in (value.upper(), value.title(), value):
            converted = param.process_value(ctx, [typed] if multiple else typed)
            converted = converted[0] if multiple else converted
            assert getattr(converted, "value", converted) == value, (param.opts, typed)


@pytest.mark.parametrize(("command", "param"), CHOICE_PARAMS)
def test_every_bad_choice_is_refused_in_our_words_listing_the_choices(command, param):
    ctx = typer.Context(command)
    multiple = param.multiple or param.nargs == -1
    with pytest.raises(typer.BadParameter) as caught:
        param.process_value(ctx, ["no-such-value"] if multiple else "no-such-value")
    message = grammar.choice_error(param, caught.value)
    assert message.startswith(f"{param.opts[0]}: unknown value 'no-such-value'; choose from ")
    assert all(value in message for value in grammar.choices(param))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("vision", "compare", "--dataset", "mnist"),
            "--dataset: unknown value 'mnist'; choose from kmnist, digits",
        ),
        (
            ("probe", "knn", "--metric", "cos", "--store", "x.h5"),  # options are parsed in the order given
            "--metric: unknown value 'cos'; choose from cosine",
        ),
        (("runs", "list", "--kind", "probes"), "--kind: unknown value 'probes'; choose from probe, finetune"),
        (("study", "vision", "--device", "tpu"), "--device: unknown value 'tpu'; choose from auto, cpu, cuda"),
    ],
)
def test_a_bad_choice_on_the_command_line_is_one_line_without_validator_text(args, expected):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"error: {expected}"), result.stderr
    assert "Value error" not in result.stderr and "Invalid value" not in result.stderr


def test_a_choice_in_capitals_reaches_the_command(tmp_path):
    result = invoke("runs", "list", "--kind", "PROBE", "--root", tmp_path)
    assert result.exit_code == 0, result.output
    assert "no runs of kind probe" in result.stderr


def test_a_named_text_dataset_in_any_case_is_that_dataset():
    from text.datasets import load_text_dataset

    assert load_text_dataset("DEMO").fingerprint == load_text_dataset("demo").fingerprint


def test_every_listing_command_looks_where_root_says():
    listing = [path for path in COMMANDS if path.endswith(" list")]
    assert listing  # store list, runs list
    for path in listing:
        options = {opt for p in visible_params(COMMANDS[path]) for opt in p.opts}
        assert "--root" in options, path
        assert "--folder" not in options, path


def test_store_list_takes_root_and_the_old_folder_spelling_still_works(tmp_path):
    assert json.loads(invoke("store", "list", "--root", tmp_path, "--json").stdout) == []
    old = invoke("store", "list", "--folder", tmp_path, "--json")
    assert old.exit_code == 0 and json.loads(old.stdout) == []
    assert "--folder is now --root" in old.stderr


def out_table_rows() -> dict[str, str]:
    """The README's --out table: `mlx COMMAND ...` in its first column -> the row."""
    section = README.split("### What `--out` means", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in section.splitlines()[2:]:
        for command in re.findall(r"`(mlx [a-z -]+?)`", line.split("|")[1]):
            rows[command.strip()] = line
    return rows


def test_every_command_that_takes_out_is_in_the_readme_out_table():
    with_out = sorted(
        path for path, command in COMMANDS.items() if any("--out" in p.opts for p in visible_params(command))
    )
    rows = out_table_rows()
    assert with_out and [path for path in with_out if path not in rows] == []
    for path in with_out:
        help_text = next(p.help for p in COMMANDS[path].params if "--out" in p.opts)
        assert "parent" not in help_text.lower(), f"{path}: --out names the folder itself, never its parent"


@pytest.mark.parametrize(
    "args",
    [
        ("probe", "knn", "--store", "{tmp}/missing.h5"),  # fails inside the progress bar, before any report
        ("vision", "compare", "--dataset", "kmnist", "--data-dir", "{tmp}"),  # fails before its summary
        ("study", "vision", "--dataset", "kmnist", "--data-dir", "{tmp}", "--out", "{tmp}/s"),  # after its summary
        ("runs", "show", "no-such-run"),
    ],
)
def test_no_blank_line_before_an_error(tmp_path, args):
    result = invoke(*(str(a).format(tmp=tmp_path) for a in args))
    assert result.exit_code != 0
    errors = [i for i, line in enumerate(result.stderr.splitlines()) if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert all(line.strip() for line in result.stderr.splitlines()[: errors[0]]), repr(result.stderr)


def test_a_progress_bar_that_never_started_prints_nothing(capsys):
    with ui.progress_bar("it"):
        pass
    assert capsys.readouterr().err == ""


def test_each_warning_reaches_stderr_once():
    code = (
        "import logging\n"
        "from cli.main import root\n"
        "root(version=False, verbose=False)\n"
        "log = logging.getLogger('vision.plots')\n"
        "for _ in range(3):\n"
        "    log.warning('no font with Japanese glyphs found')\n"
        "log.warning('another warning')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no font with Japanese glyphs found") == 1, result.stderr
    assert result.stderr.count("another warning") == 1, result.stderr


def write_runs(root: Path) -> tuple[Path, Path]:
    """A fine-tune run with its model/ folder, and a probe run on a store embedded with that model."""
    from common.record import ModelRef, write_record
    from tests.test_record import make_record

    finetune_dir = root / "finetune" / "demo-tiny-0123abcd"
    (finetune_dir / "model").mkdir(parents=True)
    write_record(finetune_dir, make_record(kind="finetune", command="finetune", artifacts=("model",)))
    probe_dir = root / "runs" / "probe" / "compare-20260101-000002-abcdef"
    probe_dir.mkdir(parents=True)
    later = "2026-01-01T00:00:02+00:00"
    write_record(probe_dir, make_record(model=ModelRef(str(finetune_dir / "model")), finished_at=later))
    return probe_dir, finetune_dir


def test_runs_list_shows_the_whole_folder_wrapped_and_names_a_fine_tuned_model(tmp_path, monkeypatch):
    root = tmp_path / ("a-rather-long-folder-name-" * 3) / "runs"
    probe_dir, finetune_dir = write_runs(root)
    monkeypatch.setenv("COLUMNS", "100")
    result = invoke("runs", "list", "--root", root)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "folder" in line)
    start = header.index("folder")
    folded = "".join(line[start:].strip() for line in lines[lines.index(header) + 2 :])
    assert str(probe_dir) in folded and str(finetune_dir) in folded  # wrapped, not cut
    model_column = "".join(line[header.index("model") : header.index("data")].strip() for line in lines)
    assert f"fine-tuned{finetune_dir.name}" in model_column.replace(" ", "")


def test_the_readme_names_run_folders_as_they_are_made(tmp_path):
    from common.writes import new_run_name

    pattern = r"knn-\d{8}-\d{6}-[0-9a-f]{6}"
    assert re.fullmatch(pattern, new_run_name(tmp_path, "knn").name)
    assert re.search(pattern, README) and "<command>-<time>-<id>" in README and "<time>-<command>" not in README


def test_the_readme_says_the_presets_number_of_networks():
    from vision.specs import ModelName, preset

    members = preset(ModelName.CNN_STRONG).members
    assert f"instead of the preset's {members} " in README
