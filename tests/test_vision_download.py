"""`mlx vision download` against a local HTTP server on 127.0.0.1: MD5 checks, resume with Range."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from cli.main import app
from common import DataError
from vision.download import Outcome, RemoteFile, download_kmnist

runner = CliRunner()
PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes: several chunks


class Server:
    """Serves ``files`` (name → bytes); honours ``Range: bytes=N-`` unless ``ranges`` is False."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.ranges, self.requests = files, True, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                owner.requests.append((name, self.headers.get("Range")))
                if name not in owner.files:
                    self.send_error(404)
                    return
                body, status, header = owner.files[name], 200, self.headers.get("Range")
                if header and owner.ranges:
                    start = int(header.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/kmnist"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    server = Server({"a.bin": PAYLOAD})
    yield server
    server.close()


GOOD = (RemoteFile("a.bin", hashlib.md5(PAYLOAD).hexdigest()),)


def test_download_checks_md5_and_renames_into_place(tmp_path, server):
    (result,) = download_kmnist(tmp_path, base_url=server.url, files=GOOD)
    assert result.outcome == Outcome.DOWNLOADED
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.partial").exists()
    (again,) = download_kmnist(tmp_path, base_url=server.url, files=GOOD)
    assert again.outcome == Outcome.PRESENT
    assert len(server.requests) == 1


def test_partial_download_resumes_with_range(tmp_path, server):
    (tmp_path / "a.bin.partial").write_bytes(PAYLOAD[:100_000])
    (result,) = download_kmnist(tmp_path, base_url=server.url, files=GOOD)
    assert result.outcome == Outcome.RESUMED
    assert server.requests == [("a.bin", "bytes=100000-")]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_scratch(tmp_path, server):
    server.ranges = False
    (tmp_path / "a.bin.partial").write_bytes(b"x" * 5000)
    (result,) = download_kmnist(tmp_path, base_url=server.url, files=GOOD)
    assert result.outcome == Outcome.DOWNLOADED
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_md5_mismatch_leaves_no_file(tmp_path, server):
    with pytest.raises(DataError, match="MD5 mismatch for a.bin"):
        download_kmnist(tmp_path, base_url=server.url, files=(RemoteFile("a.bin", "0" * 32),))
    assert list(tmp_path.iterdir()) == []


def test_cli_mismatch_against_official_md5_exits_nonzero(tmp_path):
    # Wrong content under an official name: the published MD5 cannot match.
    server = Server({"kmnist-train-imgs.npz": b"not the real file"})
    try:
        result = runner.invoke(app, ["vision", "download", "--data-dir", str(tmp_path), "--url", server.url])
    finally:
        server.close()
    assert result.exit_code == 1
    assert "MD5 mismatch for kmnist-train-imgs.npz" in " ".join(result.output.split())
    assert not (tmp_path / "kmnist-train-imgs.npz").exists()
    assert not (tmp_path / "kmnist-train-imgs.npz.partial").exists()


def test_cli_unreachable_host_and_missing_file(tmp_path, server):
    missing = runner.invoke(
        app, ["vision", "download", "--data-dir", str(tmp_path), "--url", server.url, "--format", "idx"]
    )
    assert missing.exit_code == 1
    assert "HTTP 404" in missing.output
    dead = runner.invoke(app, ["vision", "download", "--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9/none"])
    assert dead.exit_code == 1
    assert "cannot reach" in dead.output


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.org/kmnist", "/tmp/kmnist"])
def test_cli_url_without_a_supported_scheme_is_one_line(tmp_path, url):
    result = runner.invoke(app, ["vision", "download", "--data-dir", str(tmp_path / "x"), "--url", url])
    assert result.exit_code == 2, result.output
    assert "is not a URL mlx can download from; give one starting with http://, https://, file://" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_file_url_downloads(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    (source / "blob.bin").write_bytes(PAYLOAD)
    remote = RemoteFile("blob.bin", hashlib.md5(PAYLOAD).hexdigest())
    (result,) = download_kmnist(tmp_path / "data", base_url=source.as_uri(), files=(remote,))
    assert result.outcome == Outcome.DOWNLOADED and result.path.read_bytes() == PAYLOAD
