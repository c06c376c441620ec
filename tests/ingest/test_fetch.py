"""Tests for ingest.models.fetch against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ingest.errors import ChecksumMismatch, DownloadFailed, ModelError
from ingest.models.fetch import download_file
from tests.http_support import QuietHandler, ServerState, clear_proxies, serving

# Bigger than the 1 MiB read size, so hashing and writing across chunks is exercised.
MODEL = bytes(range(256)) * (12 * 1024)  # 3 MiB
SMALL = b"a tiny onnx stand-in\n"
CHUNKED = b"streamed without a length " * 10_000
PAYLOADS = {"/model.onnx": MODEL, "/small.bin": SMALL}
SLOW_WAIT_SECONDS = 10.0
OCTET_STREAM = "application/octet-stream"


def sha(data: bytes) -> str:
    """Return the sha256 hex of `data`."""
    return hashlib.sha256(data).hexdigest()


def make_handler(server: ServerState) -> type[BaseHTTPRequestHandler]:
    """Build a request handler class bound to `server`'s state."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            """Serve the fixed routes."""
            server.requests.append(self.path)
            if self.path in PAYLOADS:
                self.send_body(PAYLOADS[self.path], content_type=OCTET_STREAM)
            elif self.path == "/chunked":
                self.send_chunked(CHUNKED, 64 * 1024)
            elif self.path == "/truncated":
                self.send_body(SMALL, announced=len(SMALL) + 100, content_type=OCTET_STREAM)
            elif self.path == "/redirect-ok":
                self.redirect(server.url("/small.bin"))
            elif self.path == "/redirect-ftp":
                self.redirect(f"ftp://127.0.0.1:{server.port}/small.bin")
            elif self.path == "/slow":
                server.release.wait(SLOW_WAIT_SECONDS)
                self.send_body(SMALL, content_type=OCTET_STREAM)
            elif self.path == "/stall":
                self._send_then_stall(SMALL)
            elif self.path == "/huge":
                self.send_body(SMALL, announced=100 * 1024**3, content_type=OCTET_STREAM)
            elif self.path == "/broken":
                self.send_error(500, "exploded")
            else:
                self.send_error(404)

        def _send_then_stall(self, body: bytes) -> None:
            # Headers and half the body arrive, then nothing: a read times out mid-body.
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            server.release.wait(SLOW_WAIT_SECONDS)
            self.close_connection = True

    return Handler


@pytest.fixture
def server() -> Iterator[ServerState]:
    """Run a ThreadingHTTPServer on 127.0.0.1 (free port) for the duration of a test."""
    state = ServerState()
    with serving(make_handler(state), state):
        yield state


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure requests to 127.0.0.1 go straight to the test server, not a proxy."""
    clear_proxies(monkeypatch)


def listing(directory: Path) -> list[str]:
    """Return every entry in `directory` (hidden ones too), sorted."""
    return sorted(os.listdir(directory)) if directory.exists() else []


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_downloads_file_and_returns_its_sha256(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "models" / "nested" / "model.onnx"

    digest = download_file(
        server.url("/model.onnx"), destination, expected_sha256=sha(MODEL), progress=False
    )

    assert digest == sha(MODEL)
    assert destination.read_bytes() == MODEL
    assert listing(destination.parent) == ["model.onnx"]
    assert server.requests == ["/model.onnx"]


def test_progress_bar_enabled_still_downloads(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "small.bin"

    digest = download_file(server.url("/small.bin"), destination, expected_sha256=sha(SMALL))

    assert digest == sha(SMALL)
    assert destination.read_bytes() == SMALL


def test_uppercase_checksum_is_accepted(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "small.bin"

    digest = download_file(
        server.url("/small.bin"),
        destination,
        expected_sha256=sha(SMALL).upper(),
        progress=False,
    )

    assert digest == sha(SMALL)
    assert destination.read_bytes() == SMALL


def test_chunked_body_without_content_length(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "chunked.onnx"

    digest = download_file(
        server.url("/chunked"), destination, expected_sha256=sha(CHUNKED), progress=False
    )

    assert digest == sha(CHUNKED)
    assert destination.read_bytes() == CHUNKED


def test_follows_http_redirect(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "small.bin"

    download_file(
        server.url("/redirect-ok"), destination, expected_sha256=sha(SMALL), progress=False
    )

    assert destination.read_bytes() == SMALL
    assert server.requests == ["/redirect-ok", "/small.bin"]


def test_wrong_checksum_raises_and_leaves_nothing(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "small.bin"
    wrong = "0" * 64

    with pytest.raises(ChecksumMismatch) as excinfo:
        download_file(server.url("/small.bin"), destination, expected_sha256=wrong, progress=False)

    assert wrong in str(excinfo.value)
    assert sha(SMALL) in str(excinfo.value)
    assert isinstance(excinfo.value, ModelError)
    assert listing(tmp_path) == []  # neither the destination nor a .part file


@pytest.mark.parametrize(
    ("path", "expected", "error"),
    [
        ("/small.bin", "f" * 64, ChecksumMismatch),
        ("/missing", sha(SMALL), DownloadFailed),
        ("/broken", sha(SMALL), DownloadFailed),
        ("/model.onnx", sha(MODEL), DownloadFailed),  # over max_bytes below
    ],
    ids=["checksum-mismatch", "http-404", "http-500", "over-max-bytes"],
)
def test_failed_download_keeps_existing_destination(
    server: ServerState, tmp_path: Path, path: str, expected: str, error: type[Exception]
) -> None:
    destination = tmp_path / "model.onnx"
    destination.write_bytes(b"the good model we already had")

    with pytest.raises(error):
        download_file(
            server.url(path),
            destination,
            expected_sha256=expected,
            max_bytes=len(SMALL),
            progress=False,
        )

    assert destination.read_bytes() == b"the good model we already had"
    assert listing(tmp_path) == ["model.onnx"]


def test_missing_checksum_is_refused_before_any_request(
    server: ServerState, tmp_path: Path
) -> None:
    destination = tmp_path / "sub" / "small.bin"

    with pytest.raises(ModelError, match="no published checksum known for this file") as excinfo:
        download_file(server.url("/small.bin"), destination, expected_sha256=None, progress=False)

    assert "--sha256 HEX" in str(excinfo.value)
    assert "--allow-unverified" in str(excinfo.value)
    assert server.requests == []
    assert listing(tmp_path) == []


def test_malformed_checksum_is_refused_before_any_request(
    server: ServerState, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="64 hex digits"):
        download_file(
            server.url("/small.bin"),
            tmp_path / "small.bin",
            expected_sha256="not-a-sha",
            progress=False,
        )

    assert server.requests == []


def test_allow_unverified_downloads_and_returns_sha(server: ServerState, tmp_path: Path) -> None:
    destination = tmp_path / "small.bin"

    digest = download_file(
        server.url("/small.bin"),
        destination,
        expected_sha256=None,
        allow_unverified=True,
        progress=False,
    )

    assert digest == sha(SMALL)
    assert destination.read_bytes() == SMALL


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/broken", 500)])
def test_http_error_raises_download_failed(
    server: ServerState, tmp_path: Path, path: str, status: int
) -> None:
    url = server.url(path)

    with pytest.raises(DownloadFailed) as excinfo:
        download_file(url, tmp_path / "x.onnx", expected_sha256=sha(SMALL), progress=False)

    assert url in str(excinfo.value)
    assert str(status) in str(excinfo.value)
    assert listing(tmp_path) == []


def test_connection_refused_raises_download_failed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/model.onnx"

    with pytest.raises(DownloadFailed, match="refused") as excinfo:
        download_file(url, tmp_path / "x.onnx", expected_sha256=sha(SMALL), progress=False)

    assert url in str(excinfo.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("path", ["/slow", "/stall"], ids=["before-headers", "mid-body"])
def test_timeout_raises_download_failed(server: ServerState, tmp_path: Path, path: str) -> None:
    url = server.url(path)
    started = time.monotonic()

    with pytest.raises(DownloadFailed, match=re.escape(url)):
        download_file(
            url, tmp_path / "x.onnx", expected_sha256=sha(SMALL), timeout=0.3, progress=False
        )

    assert time.monotonic() - started < SLOW_WAIT_SECONDS / 2
    assert listing(tmp_path) == []


def test_truncated_body_raises_download_failed(server: ServerState, tmp_path: Path) -> None:
    # Unverified mode: only the length check stands between a short body and the destination.
    with pytest.raises(DownloadFailed):
        download_file(
            server.url("/truncated"),
            tmp_path / "x.onnx",
            expected_sha256=None,
            allow_unverified=True,
            progress=False,
        )

    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/model.onnx", MODEL, "announces"),
        ("/chunked", CHUNKED, "body exceeds the limit"),
    ],
    ids=["announced-length", "streamed"],
)
def test_max_bytes_exceeded_raises_and_leaves_nothing(
    server: ServerState, tmp_path: Path, path: str, body: bytes, message: str
) -> None:
    with pytest.raises(DownloadFailed, match=message):
        download_file(
            server.url(path),
            tmp_path / "x.onnx",
            expected_sha256=sha(body),
            max_bytes=len(body) - 1,
            progress=False,
        )

    assert listing(tmp_path) == []


def test_huge_announced_length_is_refused_before_reading(
    server: ServerState, tmp_path: Path
) -> None:
    # 100 GiB announced: refused from the header alone, whatever the default limit reads.
    with pytest.raises(DownloadFailed, match="announces"):
        download_file(
            server.url("/huge"), tmp_path / "x.onnx", expected_sha256=sha(SMALL), progress=False
        )

    assert listing(tmp_path) == []


@pytest.mark.parametrize("path", ["/model.onnx", "/chunked"])
def test_body_of_exactly_max_bytes_is_accepted(
    server: ServerState, tmp_path: Path, path: str
) -> None:
    body = MODEL if path == "/model.onnx" else CHUNKED

    digest = download_file(
        server.url(path),
        tmp_path / "x.onnx",
        expected_sha256=sha(body),
        max_bytes=len(body),
        progress=False,
    )

    assert digest == sha(body)


@pytest.mark.parametrize(
    "url_template",
    [
        "file://{file}",
        "ftp://127.0.0.1:{port}/small.bin",
        "127.0.0.1:{port}/small.bin",
        "http:///small.bin",
    ],
    ids=["file", "ftp", "no-scheme", "no-host"],
)
def test_non_http_urls_are_refused(server: ServerState, tmp_path: Path, url_template: str) -> None:
    source = tmp_path / "source.onnx"
    source.write_bytes(SMALL)
    url = url_template.format(file=source, port=server.port)
    destination = tmp_path / "out" / "x.onnx"

    with pytest.raises(ModelError, match="only http:// and https://"):
        download_file(url, destination, expected_sha256=sha(SMALL), progress=False)

    assert not destination.parent.exists()
    assert server.requests == []


def test_redirect_to_ftp_is_not_followed(server: ServerState, tmp_path: Path) -> None:
    # The opener has no FTP handler, so urllib refuses the scheme instead of dialling it.
    with pytest.raises(DownloadFailed, match="unknown url type"):
        download_file(
            server.url("/redirect-ftp"),
            tmp_path / "x.onnx",
            expected_sha256=sha(SMALL),
            timeout=5,
            progress=False,
        )

    assert server.requests == ["/redirect-ftp"]
    assert listing(tmp_path) == []
