"""Image bytes named by a URI: the local blob store, allowed file roots, allowed http(s) hosts.

Image bytes never travel through Redis: an upload event carries a URI and a worker fetches the
bytes here. A refusal is ``InvalidImage`` (permanent, dead-lettered with its reason);
``SourceUnavailable`` means the same fetch may work later (the worker retries it).

Supported URIs:

- ``blob://<sha256>``: content-addressed bytes under the blob directory (lower-case hex only,
  so one image has exactly one URI).
- ``file:///abs/path`` (or ``file://localhost/abs/path``): only where the real path, symlinks
  resolved, lies under one of the configured file roots.
- ``http(s)://host[:port]/...``: only to configured hosts, redirects included; credentials in
  the URI are refused because URIs are stored in payloads, dead letters and logs."""

from __future__ import annotations

import contextlib
import os
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import httpx

from ingest.errors import InvalidImage, InvalidImageReason, LookalikeError, SourceUnavailable
from ingest.images.blobs import BlobStore, shown_uri
from ingest.images.decode import read_image_file
from ingest.models.fetch import content_length, iter_body, open_http
from schemas.settings import Settings

SUPPORTED_SCHEMES: Final = ("blob", "file", "http", "https")


_SCHEMES_HINT: Final = ", ".join(f"{scheme}://" for scheme in SUPPORTED_SCHEMES)


_HTTP_SCHEMES: Final = frozenset({"http", "https"})


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# RFC 8089: an empty authority and "localhost" both mean this machine.
_LOCAL_FILE_HOSTS: Final = frozenset({"", "localhost"})


_GONE_STATUSES: Final = frozenset({404, 410})


# Statuses that say "not now" rather than "never": request timeout, too early, rate limited.
_RETRY_LATER_STATUSES: Final = frozenset({408, 425, 429})


_FIRST_SERVER_ERROR: Final = 500


_FIRST_CLIENT_ERROR: Final = 400


HostRule = tuple[str, int | None]  # (lower-case host, port or None for any port)


class SourceResolver:
    """Turn an upload event's URI into image bytes, enforcing where bytes may come from."""

    def __init__(self, settings: Settings, *, blobs: BlobStore | None = None) -> None:
        self.blobs = blobs or BlobStore(settings.resolved_blob_dir())
        self._limits = settings.images
        self._file_roots = tuple(root.resolve() for root in settings.sources.file_roots)
        self._host_rules = frozenset(parse_host_rules(settings.sources.http_hosts))
        self._timeout = settings.sources.fetch_timeout

    def fetch(self, uri: str) -> bytes:
        """Return the bytes ``uri`` names: ``InvalidImage`` if refused, else maybe retryable."""
        scheme = _split(uri).scheme.lower()
        if scheme == "blob":
            return self.blobs.get(uri, self._limits)
        if scheme == "file":
            return self._fetch_file(uri)
        if scheme in _HTTP_SCHEMES:
            return self._fetch_http(uri)
        which = f"scheme {scheme!r}" if scheme else "no scheme"
        raise InvalidImage(
            InvalidImageReason.BAD_URI, f"{shown_uri(uri)} has {which}; supported: {_SCHEMES_HINT}"
        )

    def _fetch_file(self, uri: str) -> bytes:
        path = self._allowed_file(uri)
        try:
            return read_image_file(path, self._limits)
        except PermissionError as error:
            # Inside a root yet unreadable by the worker: retrying will not change that.
            raise InvalidImage(
                InvalidImageReason.FORBIDDEN_PATH, f"{uri}: not readable by this process"
            ) from error
        except OSError as error:
            raise SourceUnavailable(f"could not read {uri}: {error}") from error

    def _allowed_file(self, uri: str) -> Path:
        """The real path ``uri`` names, if it lies under a file root."""
        path = _file_uri_path(uri)
        try:
            real = path.resolve()  # symlinks followed, ".." collapsed; missing files allowed
        except (OSError, RuntimeError) as error:  # RuntimeError: symlink loop (Python 3.11)
            raise InvalidImage(
                InvalidImageReason.FORBIDDEN_PATH, f"{uri}: path cannot be resolved"
            ) from error
        # Checked before the file is opened, so nothing tells a caller whether a file outside
        # the roots exists. is_relative_to compares whole components: /data/a is not /data/ab.
        if not any(real.is_relative_to(root) for root in self._file_roots):
            raise InvalidImage(
                InvalidImageReason.FORBIDDEN_PATH,
                f"{uri} is outside the allowed file roots (LOOKALIKE_SOURCES__FILE_ROOTS)",
            )
        # The resolved path is what gets opened, so a symlink can only escape if it is swapped
        # in between, which needs write access inside a root.
        return real

    def _fetch_http(self, uri: str) -> bytes:
        self._check_http_uri(uri)
        # The timeout bounds each socket operation (connect, every read); the deadline also
        # bounds the body as a whole, which a server trickling bytes would otherwise stretch.
        deadline = time.monotonic() + self._timeout
        with self._open(uri) as response:
            return self._read_body(uri, response, deadline)

    def _check_http_uri(self, uri: str) -> None:
        """Refuse a malformed http(s) URI (BAD_URI) or one to a host not allowed."""
        parts = _split(uri)
        scheme = parts.scheme.lower()
        if scheme not in _HTTP_SCHEMES:
            raise InvalidImage(InvalidImageReason.BAD_URI, f"{uri!r} is not an http(s) URI")
        if not uri.isascii():
            raise InvalidImage(
                InvalidImageReason.BAD_URI,
                f"{uri!r}: percent-encode the path and use the IDNA (xn--) form of the host",
            )
        if "@" in parts.netloc:
            raise InvalidImage(
                InvalidImageReason.BAD_URI,
                "credentials in URIs are refused: they would be stored in payloads and logs",
            )
        host, port = _host_and_port(uri, parts)
        effective_port = _DEFAULT_PORTS[scheme] if port is None else port
        if not _host_allowed(self._host_rules, host, effective_port):
            raise InvalidImage(
                InvalidImageReason.FORBIDDEN_HOST,
                f"{uri}: host {parts.netloc!r} is not in LOOKALIKE_SOURCES__HTTP_HOSTS",
            )

    def _open(self, uri: str) -> contextlib.AbstractContextManager[httpx.Response]:
        """Open the GET: a context giving the 2xx response, failures mapped to our errors."""
        return open_http(
            uri,
            timeout=self._timeout,
            # Every hop is checked as the URI itself was, before it is requested.
            check_redirect=self._check_http_uri,
            refused=lambda code, reason: _status_error(uri, code, reason),
            # Timeouts, refused connections, DNS and TLS failures: all worth another try.
            failed=lambda message: SourceUnavailable(f"could not fetch {uri}: {message}"),
        )

    def _read_body(self, uri: str, response: httpx.Response, deadline: float) -> bytes:
        """Read the whole body within the byte cap and the deadline."""
        limit = self._limits.max_bytes
        announced = content_length(response)
        if announced is not None and announced > limit:
            raise InvalidImage(
                InvalidImageReason.TOO_MANY_BYTES,
                f"{uri}: server announces {announced} bytes, more than the limit of {limit}",
            )
        chunks = iter_body(
            response,
            max_bytes=limit,
            deadline=deadline,
            too_large=lambda message: InvalidImage(
                InvalidImageReason.TOO_MANY_BYTES, f"{uri}: {message}"
            ),
            failed=lambda message: SourceUnavailable(f"could not fetch {uri}: {message}"),
        )
        data = b"".join(chunks)
        if not data:
            raise InvalidImage(InvalidImageReason.EMPTY, f"{uri} returned no bytes")
        return data


def parse_host_rules(entries: Iterable[str]) -> list[HostRule]:
    """Parse ``host`` (any port) and ``host:port`` entries; a malformed one is a ValueError."""
    return [_parse_host_rule(entry) for entry in entries]


def _parse_host_rule(entry: str) -> HostRule:
    # Fail at startup: a typo here would otherwise refuse every fetch, one by one.
    problem = f"http host entry {entry!r} is not 'host' or 'host:port'"
    try:
        parts = urllib.parse.urlsplit(f"//{entry.strip()}")
        port = parts.port
    except ValueError as error:
        raise ValueError(problem) from error
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(problem)
    return parts.hostname, port


def _host_allowed(rules: frozenset[HostRule], host: str, port: int) -> bool:
    # Exact names only: no suffix matching, no DNS, so "cdn.example.com" never admits
    # "cdn.example.com.evil.net" or whatever an allowed name happens to resolve to.
    return (host, None) in rules or (host, port) in rules


def _host_and_port(uri: str, parts: urllib.parse.SplitResult) -> tuple[str, int | None]:
    """Lower-case host and explicit port of an http(s) URI, or BAD_URI."""
    try:
        port = parts.port
    except ValueError as error:
        raise InvalidImage(InvalidImageReason.BAD_URI, f"{uri!r}: bad port") from error
    if not parts.hostname:
        raise InvalidImage(InvalidImageReason.BAD_URI, f"{uri!r} has no host")
    return parts.hostname, port


def _status_error(uri: str, code: int, reason: str) -> LookalikeError:
    """Map an HTTP error status to a permanent refusal or a retryable failure."""
    described = f"{uri}: HTTP {code} {reason}"
    if code in _GONE_STATUSES:
        return InvalidImage(InvalidImageReason.NOT_FOUND, described)
    if code in _RETRY_LATER_STATUSES or code >= _FIRST_SERVER_ERROR:
        return SourceUnavailable(f"could not fetch {described}")
    if code < _FIRST_CLIENT_ERROR:
        # A redirect not followed: a loop, too many hops, or a non-http target.
        return InvalidImage(InvalidImageReason.BAD_URI, f"redirect not followed: {described}")
    # 401, 403 and other refusals: asking again with the same request changes nothing.
    return InvalidImage(InvalidImageReason.NOT_FOUND, f"server refuses it: {described}")


def _split(uri: str) -> urllib.parse.SplitResult:
    """Split a URI, refusing whitespace and control characters that urllib would drop."""
    # urlsplit silently strips tabs, newlines and leading blanks; a URI containing them was
    # not meant for us as written (and could smuggle a header into a request line).
    if not uri or any(char.isspace() or not char.isprintable() for char in uri):
        raise InvalidImage(
            InvalidImageReason.BAD_URI, f"{shown_uri(uri)} is empty or has blank characters"
        )
    try:
        return urllib.parse.urlsplit(uri)
    except ValueError as error:  # e.g. an unclosed "[" in an IPv6 host
        raise InvalidImage(InvalidImageReason.BAD_URI, f"{shown_uri(uri)}: {error}") from error


def _file_uri_path(uri: str) -> Path:
    """The absolute local path a ``file:`` URI names (not yet checked against the roots)."""
    parts = _split(uri)
    if parts.netloc.lower() not in _LOCAL_FILE_HOSTS:
        raise InvalidImage(
            InvalidImageReason.FORBIDDEN_PATH,
            f"{uri}: only local files (file:///path) are allowed, not host {parts.netloc!r}",
        )
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        # A "?" or "#" in a file name must be percent-encoded; guessing would read another file.
        raise InvalidImage(InvalidImageReason.BAD_URI, f"{uri!r}: file URIs take no ? or #")
    # Percent-decoding to bytes, then to the filesystem encoding, round-trips any file name;
    # "%2e%2e" becomes ".." here and is collapsed by resolve() before the root check.
    path = os.fsdecode(urllib.parse.unquote_to_bytes(parts.path))
    if not path.startswith("/"):
        raise InvalidImage(
            InvalidImageReason.BAD_URI, f"{uri!r} is not an absolute file URI (file:///path)"
        )
    if "\0" in path:
        raise InvalidImage(InvalidImageReason.BAD_URI, f"{uri!r} contains a NUL byte")
    return Path(path)
