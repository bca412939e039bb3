"""CLI start-up stays light: no heavy library is imported until a command needs it."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "sklearn", "faiss", "h5py", "matplotlib", "datasets", "scipy")


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("HEAVY:")]
    return set(line.split()[1:])


def test_importing_the_cli_and_common_pulls_no_heavy_library():
    assert (
        imported_after("import cli.main, common, common.devices, common.options, training.distributed, training.config")
        == set()
    )


def test_help_and_version_pull_no_heavy_library():
    code = (
        "import sys\nfrom cli.main import app\nfor args in (['--help'], ['--version'], ['embed', '--help'], ['probe', 'compare', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass"
    )
    assert imported_after(code) == set()


def test_weights_hash_is_remembered_and_follows_changed_files(tmp_path):
    from text.models import _memo_path, weights_sha256

    (tmp_path / "model.safetensors").write_bytes(b"a" * 1000)
    first = weights_sha256(tmp_path)
    assert _memo_path().exists() and weights_sha256(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"b" * 1001)  # other size: hashed again
    assert weights_sha256(tmp_path) != first
