"""Tests for ingest.images.sources: real files, real symlinks, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ingest.errors import InvalidImage, InvalidImageReason, SourceUnavailable
from ingest.images.blobs import BlobStore
from ingest.images.sources import SourceResolver
from schemas.settings import ImageLimits, Settings, SourceSettings
from tests.http_support import QuietHandler, ServerState, clear_proxies, serving

PAYLOAD = bytes(range(256)) * 40  # 10 KiB: not an image, the resolver never decodes
MAX_BYTES = 64 * 1024
OVERSIZE = b"x" * (MAX_BYTES + 1)
SLOW_WAIT_SECONDS = 10.0
DRIP_INTERVAL = 0.05
FAST_TIMEOUT = 0.5
Reason = InvalidImageReason


def sha(data: bytes) -> str:
    """Return the sha256 hex of `data`."""
    return hashlib.sha256(data).hexdigest()


def make_settings(
    tmp_path: Path,
    *,
    file_roots: list[Path] | None = None,
    http_hosts: list[str] | None = None,
    timeout: float = 5.0,
    max_bytes: int = MAX_BYTES,
) -> Settings:
    """Settings with everything on disk under `tmp_path` and the given source rules."""
    return Settings(
        data_dir=tmp_path / "data",
        images=ImageLimits(max_bytes=max_bytes),
        sources=SourceSettings(
            file_roots=file_roots or [], http_hosts=http_hosts or [], fetch_timeout=timeout
        ),
    )


def assert_refused(call: Callable[[], object], reason: InvalidImageReason) -> InvalidImage:
    """Run `call`, expect InvalidImage with `reason`, and return it."""
    with pytest.raises(InvalidImage) as excinfo:
        call()
    assert excinfo.value.reason is reason, str(excinfo.value)
    return excinfo.value


# --- blob store ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    """An empty blob store in a temporary directory."""
    return BlobStore(tmp_path / "blobs")


LIMITS = ImageLimits(max_bytes=MAX_BYTES)


def test_blob_put_get_roundtrip(store: BlobStore, tmp_path: Path) -> None:
    digest = sha(PAYLOAD)

    uri = store.put(PAYLOAD)

    assert uri == f"blob://{digest}"
    assert store.path_for(uri) == tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    assert store.path_for(uri).read_bytes() == PAYLOAD
    assert store.get(uri, LIMITS) == PAYLOAD
    assert os.listdir(store.path_for(uri).parent) == [digest]  # no temp file left behind


def test_blob_put_is_idempotent(store: BlobStore) -> None:
    first = store.put(PAYLOAD)
    inode = store.path_for(first).stat().st_ino

    second = store.put(PAYLOAD)

    assert second == first
    # An intact blob is not rewritten (os.replace would give the name a new inode).
    assert store.path_for(second).stat().st_ino == inode
    assert os.listdir(store.path_for(first).parent) == [sha(PAYLOAD)]


def test_concurrent_puts_of_the_same_bytes_agree(store: BlobStore) -> None:
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(store.put(PAYLOAD))) for _ in "x" * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(results) == {f"blob://{sha(PAYLOAD)}"}
    assert store.get(results[0], LIMITS) == PAYLOAD
    assert os.listdir(store.path_for(results[0]).parent) == [sha(PAYLOAD)]


def test_blob_resolves_through_source_resolver(tmp_path: Path) -> None:
    resolver = SourceResolver(make_settings(tmp_path))

    uri = resolver.blobs.put(PAYLOAD)

    assert resolver.blobs.root == tmp_path / "data" / "blobs"
    assert resolver.fetch(uri) == PAYLOAD


def test_tampered_blob_is_refused_and_put_heals_it(store: BlobStore) -> None:
    uri = store.put(PAYLOAD)
    store.path_for(uri).write_bytes(b"Y" + PAYLOAD[1:])  # same size, one byte changed

    error = assert_refused(lambda: store.get(uri, LIMITS), Reason.NOT_FOUND)

    assert "corrupt" in error.message
    assert store.put(PAYLOAD) == uri
    assert store.get(uri, LIMITS) == PAYLOAD


def test_missing_blob_is_not_found(store: BlobStore) -> None:
    assert_refused(lambda: store.get(f"blob://{sha(b'never stored')}", LIMITS), Reason.NOT_FOUND)


def test_blob_over_the_byte_limit_is_refused(store: BlobStore) -> None:
    uri = store.put(OVERSIZE)

    assert_refused(lambda: store.get(uri, LIMITS), Reason.TOO_MANY_BYTES)


def test_empty_blob_is_refused_at_put(store: BlobStore) -> None:
    assert_refused(lambda: store.put(b""), Reason.EMPTY)
    assert not store.root.exists()


def test_blob_delete(store: BlobStore) -> None:
    uri = store.put(PAYLOAD)

    assert store.delete(uri) is True
    assert store.delete(uri) is False
    assert_refused(lambda: store.get(uri, LIMITS), Reason.NOT_FOUND)


DIGEST = sha(PAYLOAD)
BAD_BLOB_URIS = [
    "blob://",
    "blob://abc",
    f"blob://{DIGEST.upper()}",
    f"blob://{'g' * 64}",
    f"blob://{DIGEST}0",
    f"blob://{DIGEST[:-1]}",
    f"blob://{DIGEST}/x",
    f"blob:///{DIGEST}",
    f"blob:{DIGEST}",
    f"blob://{DIGEST}\n",
    "blob://../../../etc/passwd",
    f"BLOB://{DIGEST}",
]


@pytest.mark.parametrize("uri", BAD_BLOB_URIS)
def test_malformed_blob_uris_are_bad_uri(store: BlobStore, tmp_path: Path, uri: str) -> None:
    store.put(PAYLOAD)
    resolver = SourceResolver(make_settings(tmp_path), blobs=store)

    assert_refused(lambda: store.path_for(uri), Reason.BAD_URI)
    assert_refused(lambda: store.get(uri, LIMITS), Reason.BAD_URI)
    assert_refused(lambda: store.delete(uri), Reason.BAD_URI)
    assert_refused(lambda: resolver.fetch(uri), Reason.BAD_URI)
    assert store.get(f"blob://{DIGEST}", LIMITS) == PAYLOAD  # nothing was deleted


# --- file:// ---------------------------------------------------------------------------------


@dataclass
class Tree:
    """A file root with files inside and outside it, and a resolver allowing only the root."""

    root: Path
    outside: Path
    resolver: SourceResolver


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """tmp/top/allowed (the root), tmp/top/secret.jpg, tmp/top/allowed-sibling/x.jpg."""
    top = tmp_path / "top"
    root = top / "allowed"
    (root / "sub").mkdir(parents=True)
    (root / "img.jpg").write_bytes(PAYLOAD)
    (root / "sub" / "nested.jpg").write_bytes(PAYLOAD[::-1])
    (root / "my photo #1?.jpg").write_bytes(PAYLOAD)
    (root / "empty.jpg").write_bytes(b"")
    (root / "big.jpg").write_bytes(OVERSIZE)
    (top / "secret.jpg").write_bytes(b"secret")
    (top / "allowed-sibling").mkdir()
    (top / "allowed-sibling" / "x.jpg").write_bytes(b"sibling")
    resolver = SourceResolver(make_settings(tmp_path, file_roots=[root]))
    return Tree(root=root, outside=top, resolver=resolver)


def test_file_inside_root_is_read(tree: Tree) -> None:
    assert tree.resolver.fetch(f"file://{tree.root}/img.jpg") == PAYLOAD
    assert tree.resolver.fetch(f"file://{tree.root}/sub/nested.jpg") == PAYLOAD[::-1]
    assert tree.resolver.fetch(f"file://localhost{tree.root}/img.jpg") == PAYLOAD
    assert tree.resolver.fetch(f"file:{tree.root}/img.jpg") == PAYLOAD  # RFC 8089 short form


def test_percent_encoded_file_name_is_decoded(tree: Tree) -> None:
    encoded = urllib.parse.quote(f"{tree.root}/my photo #1?.jpg")

    assert "%20" in encoded
    assert tree.resolver.fetch(f"file://{encoded}") == PAYLOAD


def test_dotdot_that_stays_inside_the_root_is_fine(tree: Tree) -> None:
    assert tree.resolver.fetch(f"file://{tree.root}/sub/../img.jpg") == PAYLOAD


@pytest.mark.parametrize(
    "suffix",
    [
        "/../secret.jpg",
        "/sub/../../secret.jpg",
        "/%2e%2e/secret.jpg",
        "/%2E%2E%2Fsecret.jpg",
        "/./../allowed-sibling/x.jpg",
    ],
)
def test_traversal_out_of_the_root_is_forbidden(tree: Tree, suffix: str) -> None:
    error = assert_refused(
        lambda: tree.resolver.fetch(f"file://{tree.root}{suffix}"), Reason.FORBIDDEN_PATH
    )

    assert "outside the allowed file roots" in error.message


def test_sibling_directory_sharing_the_prefix_is_forbidden(tree: Tree) -> None:
    # A string prefix check would let /top/allowed-sibling pass for the root /top/allowed.
    uri = f"file://{tree.outside}/allowed-sibling/x.jpg"

    assert_refused(lambda: tree.resolver.fetch(uri), Reason.FORBIDDEN_PATH)


def test_symlinked_file_escaping_the_root_is_forbidden(tree: Tree) -> None:
    (tree.root / "link.jpg").symlink_to(tree.outside / "secret.jpg")

    assert_refused(
        lambda: tree.resolver.fetch(f"file://{tree.root}/link.jpg"), Reason.FORBIDDEN_PATH
    )


def test_symlinked_directory_escaping_the_root_is_forbidden(tree: Tree) -> None:
    (tree.root / "escape").symlink_to(tree.outside, target_is_directory=True)

    uri = f"file://{tree.root}/escape/secret.jpg"

    assert_refused(lambda: tree.resolver.fetch(uri), Reason.FORBIDDEN_PATH)


def test_symlink_within_the_root_is_followed(tree: Tree) -> None:
    (tree.root / "alias.jpg").symlink_to(tree.root / "sub" / "nested.jpg")

    assert tree.resolver.fetch(f"file://{tree.root}/alias.jpg") == PAYLOAD[::-1]


def test_symlinked_root_accepts_both_spellings(tree: Tree, tmp_path: Path) -> None:
    link = tmp_path / "root-link"
    link.symlink_to(tree.root, target_is_directory=True)
    resolver = SourceResolver(make_settings(tmp_path, file_roots=[link]))

    assert resolver.fetch(f"file://{link}/img.jpg") == PAYLOAD
    assert resolver.fetch(f"file://{tree.root}/img.jpg") == PAYLOAD
    assert_refused(lambda: resolver.fetch(f"file://{link}/../secret.jpg"), Reason.FORBIDDEN_PATH)


def test_symlink_loop_is_forbidden(tree: Tree) -> None:
    (tree.root / "loop-a").symlink_to(tree.root / "loop-b")
    (tree.root / "loop-b").symlink_to(tree.root / "loop-a")

    assert_refused(lambda: tree.resolver.fetch(f"file://{tree.root}/loop-a"), Reason.FORBIDDEN_PATH)


def test_missing_file_inside_root_is_not_found(tree: Tree) -> None:
    assert_refused(lambda: tree.resolver.fetch(f"file://{tree.root}/nope.jpg"), Reason.NOT_FOUND)


def test_missing_file_outside_root_is_forbidden_not_not_found(tree: Tree) -> None:
    # Outside the roots nothing, not even whether a file exists, is revealed.
    uri = f"file://{tree.outside}/nope.jpg"

    assert_refused(lambda: tree.resolver.fetch(uri), Reason.FORBIDDEN_PATH)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sub", Reason.NOT_FOUND),  # a directory
        ("", Reason.NOT_FOUND),  # the root itself
        ("empty.jpg", Reason.EMPTY),
        ("big.jpg", Reason.TOO_MANY_BYTES),
    ],
)
def test_unusable_files_inside_root(tree: Tree, name: str, reason: InvalidImageReason) -> None:
    assert_refused(lambda: tree.resolver.fetch(f"file://{tree.root}/{name}"), reason)


def test_fifo_inside_root_is_refused_without_hanging(tree: Tree) -> None:
    os.mkfifo(tree.root / "pipe.jpg")

    assert_refused(lambda: tree.resolver.fetch(f"file://{tree.root}/pipe.jpg"), Reason.NOT_FOUND)


def test_unreadable_file_inside_root_is_forbidden(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tree.root / "locked.jpg"
    path.write_bytes(PAYLOAD)
    path.chmod(0)
    # Failure injection: as root (CI) a mode-0 file is still readable, so the permission
    # error the kernel gives other users is raised by hand.
    real_open = os.open

    def refusing_open(target: object, *args: object, **kwargs: object) -> int:
        if str(target) == str(path):
            raise PermissionError(13, "Permission denied", str(target))
        return real_open(target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)

    assert_refused(lambda: tree.resolver.fetch(f"file://{path}"), Reason.FORBIDDEN_PATH)


@pytest.mark.parametrize(
    "uri",
    ["file:img.jpg", "file:allowed/img.jpg", "file:./img.jpg", "file:../secret.jpg"],
)
def test_relative_file_uris_are_bad_uri(
    tree: Tree, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even with the working directory inside the root, a relative path is not accepted.
    monkeypatch.chdir(tree.root)

    assert_refused(lambda: tree.resolver.fetch(uri), Reason.BAD_URI)


@pytest.mark.parametrize(
    "template",
    ["file://otherhost{root}/img.jpg", "file://127.0.0.1{root}/img.jpg", "file://img.jpg"],
)
def test_file_uris_naming_another_host_are_forbidden(tree: Tree, template: str) -> None:
    uri = template.format(root=tree.root)

    assert_refused(lambda: tree.resolver.fetch(uri), Reason.FORBIDDEN_PATH)


@pytest.mark.parametrize(
    "suffix", ["/img.jpg?x=1", "/img.jpg#frag", "/img.jpg%00.png", "/img.jpg\n", "/img .jpg"]
)
def test_malformed_file_uris_are_bad_uri(tree: Tree, suffix: str) -> None:
    assert_refused(lambda: tree.resolver.fetch(f"file://{tree.root}{suffix}"), Reason.BAD_URI)


def test_no_file_roots_forbids_every_file(tree: Tree, tmp_path: Path) -> None:
    resolver = SourceResolver(make_settings(tmp_path, file_roots=[]))

    assert_refused(lambda: resolver.fetch(f"file://{tree.root}/img.jpg"), Reason.FORBIDDEN_PATH)
    assert_refused(lambda: resolver.fetch("file:///etc/hostname"), Reason.FORBIDDEN_PATH)


# --- http(s):// ------------------------------------------------------------------------------


def make_handler(server: ServerState) -> type[BaseHTTPRequestHandler]:
    """Build a request handler class bound to `server`'s state."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            """Serve the fixed routes; /status/N answers N, /redirect?to=URL redirects."""
            server.requests.append(self.path)
            route, _, query = self.path.partition("?")
            routes: dict[str, Callable[[], None]] = {
                "/img": lambda: self.send_body(PAYLOAD),
                "/empty": lambda: self.send_body(b""),
                "/no-content": self._no_content,
                "/announced-huge": lambda: self.send_body(b"tiny", announced=10**9),
                "/close-delimited-huge": lambda: self._send_until_close(OVERSIZE),
                "/chunked-huge": lambda: self.send_chunked(OVERSIZE, 8 * 1024),
                "/chunked": lambda: self.send_chunked(PAYLOAD, 8 * 1024),
                "/exactly-max": lambda: self.send_body(OVERSIZE[:-1]),
                "/truncated": lambda: self.send_body(PAYLOAD[:100], announced=len(PAYLOAD)),
                "/slow": self._slow,
                "/drip": self._drip,
                "/loop": lambda: self.redirect("/loop"),
                "/redirect": lambda: self.redirect(urllib.parse.parse_qs(query)["to"][0]),
            }
            if route.startswith("/status/"):
                self.send_error(int(route.removeprefix("/status/")))
            elif route in routes:
                routes[route]()
            else:
                self.send_error(404)

        def _send_until_close(self, body: bytes) -> None:
            # No length and no chunking: the body ends when the connection does.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def _no_content(self) -> None:
            self.send_response(204)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _slow(self) -> None:
            server.release.wait(SLOW_WAIT_SECONDS)
            self.send_body(PAYLOAD)

        def _drip(self) -> None:
            # Never silent for long enough to trip the socket timeout, yet never done.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.send_header("Connection", "close")
            self.end_headers()
            for byte in PAYLOAD:
                if server.release.wait(DRIP_INTERVAL):
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
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


def http_resolver(tmp_path: Path, hosts: list[str], *, timeout: float = 5.0) -> SourceResolver:
    """A resolver allowing exactly `hosts` over http(s)."""
    return SourceResolver(make_settings(tmp_path, http_hosts=hosts, timeout=timeout))


@pytest.fixture
def web(server: ServerState, tmp_path: Path) -> SourceResolver:
    """A resolver that allows the test server's host (any port) and nothing else."""
    return http_resolver(tmp_path, ["127.0.0.1"])


def test_allowed_host_is_fetched(server: ServerState, web: SourceResolver) -> None:
    assert web.fetch(server.url("/img")) == PAYLOAD
    assert web.fetch(server.url("/chunked")) == PAYLOAD
    assert server.requests == ["/img", "/chunked"]


def test_body_of_exactly_max_bytes_is_accepted(server: ServerState, web: SourceResolver) -> None:
    assert web.fetch(server.url("/exactly-max")) == OVERSIZE[:-1]


@pytest.mark.parametrize(
    "uri_template",
    [
        "http://localhost:{port}/img",  # resolves to 127.0.0.1, but names are matched, not IPs
        "https://localhost:{port}/img",
        "http://127.0.0.1.nip.io:{port}/img",
        "http://evil.test/?u=http://127.0.0.1:{port}/img",
        "http://127.0.0.2:{port}/img",
    ],
)
def test_forbidden_host_makes_no_request(
    server: ServerState, web: SourceResolver, uri_template: str
) -> None:
    uri = uri_template.format(port=server.port)

    assert_refused(lambda: web.fetch(uri), Reason.FORBIDDEN_HOST)
    assert server.requests == []


def test_no_http_hosts_forbids_every_url(server: ServerState, tmp_path: Path) -> None:
    resolver = http_resolver(tmp_path, [])

    assert_refused(lambda: resolver.fetch(server.url("/img")), Reason.FORBIDDEN_HOST)
    assert server.requests == []


def test_host_port_entry_allows_that_port_only(server: ServerState, tmp_path: Path) -> None:
    exact = http_resolver(tmp_path, [f"127.0.0.1:{server.port}"])
    other_port = http_resolver(tmp_path, [f"127.0.0.1:{server.port + 1}", "127.0.0.1:80"])

    assert exact.fetch(server.url("/img")) == PAYLOAD
    assert_refused(lambda: other_port.fetch(server.url("/img")), Reason.FORBIDDEN_HOST)
    assert server.requests == ["/img"]


def test_host_match_ignores_case(server: ServerState, tmp_path: Path) -> None:
    resolver = http_resolver(tmp_path, [" LocalHost "])

    assert resolver.fetch(server.url("/img", host="LOCALHOST")) == PAYLOAD


@pytest.mark.parametrize(
    "entry", ["https://cdn.example.com", "cdn.example.com/images", "host:x", "a@b"]
)
def test_malformed_host_entries_fail_at_startup(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ValueError, match="is not 'host' or 'host:port'"):
        http_resolver(tmp_path, [entry])


@pytest.mark.parametrize(
    "uri_template",
    [
        "http://user:pw@127.0.0.1:{port}/img",
        "http://user@127.0.0.1:{port}/img",
        "http://:@127.0.0.1:{port}/img",
        "http:///img",
        "http://127.0.0.1:99999/img",
        "http://127.0.0.1:{port}/caf\u00e9.jpg",
        "http://[::1/img",
        "http://127.0.0.1:{port}/img\r\nX-Injected: 1",
    ],
    ids=[
        "userinfo",
        "user",
        "empty-userinfo",
        "no-host",
        "bad-port",
        "non-ascii",
        "bad-ipv6",
        "crlf",
    ],
)
def test_malformed_http_uris_are_bad_uri(
    server: ServerState, web: SourceResolver, uri_template: str
) -> None:
    assert_refused(lambda: web.fetch(uri_template.format(port=server.port)), Reason.BAD_URI)
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (404, Reason.NOT_FOUND),
        (410, Reason.NOT_FOUND),
        (403, Reason.NOT_FOUND),
        (401, Reason.NOT_FOUND),
    ],
)
def test_permanent_http_errors(
    server: ServerState, web: SourceResolver, status: int, reason: InvalidImageReason
) -> None:
    error = assert_refused(lambda: web.fetch(server.url(f"/status/{status}")), reason)

    assert str(status) in error.message


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_transient_http_errors_are_source_unavailable(
    server: ServerState, web: SourceResolver, status: int
) -> None:
    with pytest.raises(SourceUnavailable, match=str(status)):
        web.fetch(server.url(f"/status/{status}"))


@pytest.mark.parametrize("path", ["/slow", "/drip"], ids=["before-headers", "trickling-body"])
def test_timeouts_are_source_unavailable(server: ServerState, tmp_path: Path, path: str) -> None:
    resolver = http_resolver(tmp_path, ["127.0.0.1"], timeout=FAST_TIMEOUT)
    started = time.monotonic()

    with pytest.raises(SourceUnavailable, match="could not fetch"):
        resolver.fetch(server.url(path))

    # The drip would take len(PAYLOAD) * DRIP_INTERVAL (over 8 minutes) if nothing cut it.
    assert time.monotonic() - started < 4 * FAST_TIMEOUT


def test_connection_refused_is_source_unavailable(tmp_path: Path) -> None:
    # Bound but not listening: connecting is refused, and no one else can take the port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        resolver = http_resolver(tmp_path, ["127.0.0.1"])

        with pytest.raises(SourceUnavailable, match="refused"):
            resolver.fetch(f"http://127.0.0.1:{port}/img")


def test_tls_failure_is_source_unavailable(server: ServerState, web: SourceResolver) -> None:
    # https:// to a plain-http server: the handshake fails like a misbehaving network would.
    with pytest.raises(SourceUnavailable):
        web.fetch(f"https://127.0.0.1:{server.port}/img")


def test_truncated_body_is_source_unavailable(server: ServerState, web: SourceResolver) -> None:
    with pytest.raises(SourceUnavailable, match="server announced"):
        web.fetch(server.url("/truncated"))


def test_announced_oversize_is_refused_from_the_header(
    server: ServerState, web: SourceResolver
) -> None:
    error = assert_refused(lambda: web.fetch(server.url("/announced-huge")), Reason.TOO_MANY_BYTES)

    assert "announces" in error.message


@pytest.mark.parametrize("path", ["/close-delimited-huge", "/chunked-huge"])
def test_streamed_oversize_is_refused(server: ServerState, web: SourceResolver, path: str) -> None:
    error = assert_refused(lambda: web.fetch(server.url(path)), Reason.TOO_MANY_BYTES)

    assert "exceeds the limit" in error.message


@pytest.mark.parametrize("path", ["/empty", "/no-content"])
def test_empty_body_is_empty(server: ServerState, web: SourceResolver, path: str) -> None:
    assert_refused(lambda: web.fetch(server.url(path)), Reason.EMPTY)


def redirect(server: ServerState, target: str) -> str:
    """URL on `server` that redirects to `target`."""
    return server.url(f"/redirect?{urllib.parse.urlencode({'to': target})}")


@pytest.mark.parametrize("target", ["/img", "absolute"])
def test_redirect_to_allowed_host_is_followed(
    server: ServerState, web: SourceResolver, target: str
) -> None:
    location = server.url("/img") if target == "absolute" else target

    assert web.fetch(redirect(server, location)) == PAYLOAD
    assert server.requests[-1] == "/img"
    assert len(server.requests) == 2


def test_redirect_to_forbidden_host_is_not_followed(
    server: ServerState, web: SourceResolver
) -> None:
    uri = redirect(server, server.url("/img", host="localhost"))

    error = assert_refused(lambda: web.fetch(uri), Reason.FORBIDDEN_HOST)

    assert "localhost" in error.message
    assert len(server.requests) == 1  # /img was never asked for


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://127.0.0.1/img", "http://user:pw@127.0.0.1/img", "data:,hello"],
)
def test_redirect_off_http_is_bad_uri(
    server: ServerState, web: SourceResolver, target: str
) -> None:
    assert_refused(lambda: web.fetch(redirect(server, target)), Reason.BAD_URI)
    assert len(server.requests) == 1


def test_redirect_loop_is_bad_uri(server: ServerState, web: SourceResolver) -> None:
    error = assert_refused(lambda: web.fetch(server.url("/loop")), Reason.BAD_URI)

    assert "redirect" in error.message
    assert 1 < len(server.requests) <= 11  # urllib gives up; it does not spin forever


# --- other schemes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://127.0.0.1/img.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://127.0.0.1/0img",
        "s3://bucket/key.jpg",
        "javascript:alert(1)",
        "/abs/path/img.jpg",
        "img.jpg",
        "",
        " http://127.0.0.1/img",
        "data:," + "A" * 10_000,
    ],
)
def test_unknown_schemes_are_bad_uri(tmp_path: Path, uri: str) -> None:
    resolver = SourceResolver(
        make_settings(tmp_path, file_roots=[tmp_path], http_hosts=["127.0.0.1"])
    )

    error = assert_refused(lambda: resolver.fetch(uri), Reason.BAD_URI)

    assert len(error.message) < 1_000  # a huge data: URI is not copied into dead letters
    if uri and not uri.startswith(" "):
        assert "blob://, file://, http://, https://" in error.message
