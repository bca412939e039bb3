"""Issue 20, mechanism 2: every path a user gives goes through common.paths.check_path.

The matrix walks the CLI: every path option of every command (found by its PathParser, so a new
option without one fails `test_every_path_option_is_checked`) meets every file-system shape that
cannot serve as what it expects, and must answer with one error line naming the path, a non-zero
exit and no traceback. Integer options are walked the same way: each must have both bounds.
"""

import os
import stat

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import app
from cli.params import PathParser
from common.paths import PathError, PathKind, check_path
from tests.helpers import invoke

COMMAND = typer.main.get_command(app)


def walk(command=COMMAND, words=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from walk(sub, (*words, name))
    else:
        yield words, command


def path_params():
    for words, command in walk():
        for param in command.params:
            parser = param.type_descriptor.parameter_info.parser
            if isinstance(parser, PathParser):
                yield words, param, parser


PATH_PARAMS = list(path_params())
PATH_NAMES = {"dataset", "model", "out", "root", "store", "test_store", "data_dir", "markdown", "folder", "path", "run"}


def test_every_path_option_is_checked():
    """A Path-typed option, or one named like a path, without a PathParser would skip the boundary."""
    unchecked = [
        (" ".join(words), param.name)
        for words, command in walk()
        for param in command.params
        if ("Path" in str(param.type_descriptor.annotation) or param.name in PATH_NAMES)
        and not isinstance(param.type_descriptor.parameter_info.parser, PathParser)
        and not (words == ("study", "vision") and param.name == "dataset")  # kmnist|digits, a choice
        and param.type_descriptor.annotation.__class__.__name__ != "EnumType"
    ]
    assert not unchecked, unchecked
    assert len(PATH_PARAMS) >= 40


def test_every_integer_option_is_bounded():
    """--seed 2**64, --threads 100000, --epochs 2**63: absurd integers are refused by the parser."""
    unbounded = [
        (" ".join(words), param.name)
        for words, command in walk()
        for param in command.params
        if param.type_descriptor.annotation is int and (param.min is None or param.max is None)
    ]
    assert not unbounded, unbounded


# --- the file-system shapes -------------------------------------------------------------------


def _file(tmp_path, name="a-file"):
    path = tmp_path / name
    path.write_text("text,label\nhello,0\n")
    return path


def _folder(tmp_path, name="a-folder"):
    path = tmp_path / name
    path.mkdir()
    return path


def _dangling(tmp_path):
    path = tmp_path / "dangling"
    path.symlink_to(tmp_path / "nowhere")
    return path


def _loop(tmp_path):
    a, b = tmp_path / "loop-a", tmp_path / "loop-b"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)  # a reader that opened it would wait forever for a writer
    return path


def _denied(tmp_path, monkeypatch, target):
    """Simulate a permission denied on ``target`` (tests run as root, who may read anything)."""
    import common.paths

    real = common.paths._permitted
    monkeypatch.setattr(common.paths, "_permitted", lambda p, mode: False if p == target else real(p, mode))
    return target


SHAPES = {
    "missing": lambda t, m: t / "missing" / "thing",
    "a folder": lambda t, m: _folder(t),
    "a file": lambda t, m: _file(t),
    "a dangling link": lambda t, m: _dangling(t),
    "a link loop": lambda t, m: _loop(t),
    "a named pipe": lambda t, m: _fifo(t),
    "a device": lambda t, m: "/dev/null",
    "under a file": lambda t, m: _file(t) / "below",
    "unreadable file": lambda t, m: _denied(t, m, _file(t)),
    "unreadable folder": lambda t, m: _denied(t, m, _folder(t)),
    "in an unwritable folder": lambda t, m: _denied(t, m, _folder(t)) / "new",
    "empty": lambda t, m: "",
    "a NUL character": lambda t, m: str(t / "a\x00b"),
    "a name too long": lambda t, m: t / ("x" * 300),
}

# Shapes that can serve a kind (no error expected), the rest must be refused.
SERVES = {
    PathKind.FILE: {"a file"},
    PathKind.FOLDER: {"a folder"},
    PathKind.FILE_OR_FOLDER: {"a file", "a folder"},
    PathKind.NEW_FILE: {"missing", "a file", "unreadable file"},
    PathKind.NEW_FOLDER: {"missing", "a folder", "unreadable folder"},
}
READ_ONLY_SHAPES = {"unreadable file", "unreadable folder"}
WRITE_ONLY_SHAPES = {"in an unwritable folder"}


def refused_shapes(kind: PathKind):
    skip = WRITE_ONLY_SHAPES if not kind.is_output else READ_ONLY_SHAPES
    return [shape for shape in SHAPES if shape not in SERVES[kind] and shape not in skip]


MATRIX = [
    pytest.param(words, param.name, shape, id=f"{' '.join(words)} {param.opts[0]} {shape}")
    for words, param, parser in PATH_PARAMS
    for shape in refused_shapes(parser.kind)
]


def _args(words, name, value):
    command = dict(walk())[words]
    param = next(p for p in command.params if p.name == name)
    option = [o for o in param.opts if o.startswith("--")]
    return [*words, *(option[:1]), str(value)]


@pytest.mark.parametrize("words, name, shape", MATRIX)
def test_every_path_option_refuses_every_shape_in_one_line(tmp_path, monkeypatch, words, name, shape):
    value = SHAPES[shape](tmp_path, monkeypatch)
    result = invoke(*_args(words, name, value))
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    named = {"empty": "is empty", "a NUL character": "NUL character"}.get(shape, str(value))
    assert named in lines[0] and "Traceback" not in result.output, lines[0]


def test_the_matrix_covers_every_command():
    commands = {" ".join(words) for words, _ in walk()}
    covered = {" ".join(words) for words, _, _ in PATH_PARAMS}
    assert commands - covered == {"vision gradcheck"}  # it reads and writes no path
    assert len(MATRIX) >= 300


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read any file; the matrix denies access through _permitted")
def test_a_really_unreadable_file(tmp_path):
    path = _file(tmp_path)
    path.chmod(0)
    with pytest.raises(PathError, match="permission denied"):
        check_path(path, PathKind.FILE, "--store")


def test_vision_download_names_the_option_given(tmp_path):
    """Item 13: `vision download --data-dir FILE` spoke of --out."""
    result = invoke("vision", "download", "--data-dir", _file(tmp_path))
    assert result.exit_code != 0 and "--data-dir" in result.stderr and "--out" not in result.stderr, result.stderr


# --- generated paths --------------------------------------------------------------------------

ENTRIES = st.sampled_from(["file", "folder", "link-to-file", "link-to-folder", "dangling", "loop", "fifo", "none"])


def _make(path, entry):
    if entry == "file":
        path.write_text("x")
    elif entry == "folder":
        path.mkdir()
    elif entry in ("link-to-file", "link-to-folder"):
        target = path.with_name(path.name + ".target")
        target.write_text("x") if entry == "link-to-file" else target.mkdir()
        path.symlink_to(target)
    elif entry == "dangling":
        path.symlink_to(path.with_name("absent"))
    elif entry == "loop":
        path.symlink_to(path)
    elif entry == "fifo":
        os.mkfifo(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(ENTRIES, min_size=1, max_size=3), kind=st.sampled_from(list(PathKind)))
def test_generated_paths_pass_only_as_what_they_are(tmp_path_factory, entries, kind):
    """A chain of generated entries, each under the one before: check_path returns only a path whose
    stat matches the kind, and otherwise raises one PathError line naming the path."""
    path = tmp_path_factory.mktemp("chain")
    for entry in entries:
        path = path / f"e-{entry}"
        if path.parent.is_dir() and not path.parent.is_symlink():
            _make(path, entry)
    try:
        checked = check_path(path, kind, "--opt")
    except PathError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message and message.startswith("--opt ")
        return
    assert checked == path
    try:
        mode = os.stat(path).st_mode
    except OSError:
        assert kind.is_output  # nothing there yet: a new output can be created
        return
    expected = {
        PathKind.FILE: stat.S_ISREG,
        PathKind.NEW_FILE: stat.S_ISREG,
        PathKind.FOLDER: stat.S_ISDIR,
        PathKind.NEW_FOLDER: stat.S_ISDIR,
        PathKind.FILE_OR_FOLDER: lambda m: stat.S_ISREG(m) or stat.S_ISDIR(m),
    }[kind]
    assert expected(mode)


# --- files found inside a folder the user gave ------------------------------------------------


@pytest.mark.parametrize("shape", ["a named pipe", "a dangling link", "a link loop", "a folder"])
@pytest.mark.parametrize("name", ["train.csv", "classes.txt"])
def test_files_inside_a_dataset_folder_pass_the_same_check(tmp_path, shape, name):
    """The folder is fine, a file in it is not: still one line naming that file, and no wait on a pipe."""
    folder = _folder(tmp_path, "data")
    (folder / "test.csv").write_text("text,label\nhello,0\nworld,1\n")
    made = {"a named pipe": _fifo, "a dangling link": _dangling, "a link loop": _loop, "a folder": _folder}[shape](
        tmp_path
    )
    made.rename(folder / name)
    result = invoke("embed", "--dataset", folder, "--out", tmp_path / "s.h5")
    assert result.exit_code != 0 and result.stderr.count("error:") == 1, result.output
    assert str(folder / name) in result.stderr and "Traceback" not in result.output, result.stderr


@pytest.mark.parametrize("shape", ["a named pipe", "a dangling link", "a folder"])
def test_kmnist_files_pass_the_same_check(tmp_path, shape):
    folder = _folder(tmp_path, "kmnist")
    for name in ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"):
        made = {"a named pipe": _fifo, "a dangling link": _dangling, "a folder": _folder}[shape](tmp_path)
        made.rename(folder / name)
    result = invoke("vision", "compare", "--dataset", "kmnist", "--data-dir", folder, "--out", tmp_path / "run")
    assert result.exit_code != 0 and result.stderr.count("error:") == 1, result.output
    assert str(folder / "kmnist-train-imgs.npz") in result.stderr and "Traceback" not in result.output, result.stderr
    assert shape.split()[-1].replace("pipe", "named pipe") in result.stderr


@pytest.mark.parametrize("command", [("runs", "list"), ("report",)])
def test_a_named_pipe_where_a_run_record_belongs_is_skipped_not_waited_on(tmp_path, command):
    run = _folder(tmp_path, "run")
    os.mkfifo(run / "run.json")
    result = invoke(*command, "--root", tmp_path)  # returns at all: the pipe was not opened
    if command == ("runs", "list"):
        assert "named pipe" in result.stderr and str(run / "run.json") in result.stderr, result.output
    assert "Traceback" not in result.output and result.stderr.count("error:") <= 1, result.output
    shown = invoke("runs", "show", run)
    assert shown.exit_code != 0 and shown.stderr.count("error:") == 1 and "named pipe" in shown.stderr
