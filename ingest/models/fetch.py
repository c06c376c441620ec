"""Download a published model file over HTTP(S), verifying its sha256 before it is used.

The HTTP plumbing (a GET that checks each redirect before following it, the announced length,
a capped chunk loop, network error wording) is public because ``ingest.images.sources`` fetches
image URIs with the same rules.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
from tqdm import tqdm

from ingest.errors import ChecksumMismatch, DownloadFailed, ModelError

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
USER_AGENT = "lookalike-fetch/0.1"
# Identity encoding: the bytes hashed, counted and stored are the bytes the server sent.
_REQUEST_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
# urllib's limit rather than httpx's 20: a redirect loop costs at most 11 requests.
_MAX_REDIRECTS = 10


def download_file(
    url: str,
    destination: Path,
    *,
    expected_sha256: str | None,
    timeout: float = 60.0,
    max_bytes: int = 4 * 1024**3,
    progress: bool = True,
    allow_unverified: bool = False,
) -> str:
    """Download `url` to `destination` (verified, atomic) and return the sha256 hex written."""
    _check_scheme(url)
    expected = _normalised_checksum(expected_sha256, allow_unverified=allow_unverified)
    with _open(url, timeout) as response:
        total = content_length(response)
        if total is not None and total > max_bytes:
            raise DownloadFailed(
                f"{url}: server announces {total} bytes, over the limit of {max_bytes}"
            )
        # The partial file lives beside the destination so that os.replace stays atomic
        # (same filesystem), and has a unique name so concurrent downloads cannot collide.
        destination.parent.mkdir(parents=True, exist_ok=True)
        part = destination.with_name(f"{destination.name}.{secrets.token_hex(6)}.part")
        try:
            with part.open("xb") as out:
                actual = _stream(
                    response,
                    out,
                    url=url,
                    total=total,
                    max_bytes=max_bytes,
                    progress=progress,
                    label=destination.name,
                )
                out.flush()
                os.fsync(out.fileno())
            _verify(url, expected, actual)
            os.replace(part, destination)
        except BaseException:
            # Whatever went wrong (including Ctrl-C), never leave an unverified file behind.
            part.unlink(missing_ok=True)
            raise
    return actual


def _check_scheme(url: str) -> None:
    """Refuse anything but an absolute http(s) URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in _ALLOWED_SCHEMES or not parts.netloc:
        raise ModelError(
            f"refusing to download {url!r}: only http:// and https:// URLs are allowed"
        )


def _normalised_checksum(expected_sha256: str | None, *, allow_unverified: bool) -> str | None:
    """Return the expected sha256 in lower case, or None when trusting on first use."""
    if expected_sha256 is None:
        if allow_unverified:
            return None
        raise ModelError(
            "no published checksum known for this file; pass --sha256 HEX "
            "(or --allow-unverified to trust it on first use)"
        )
    if not _SHA256_HEX.fullmatch(expected_sha256):
        raise ModelError(f"expected sha256 must be 64 hex digits, got {expected_sha256!r}")
    return expected_sha256.lower()


@contextlib.contextmanager
def open_http(
    url: str,
    *,
    timeout: float,
    refused: Callable[[int, str], Exception],
    failed: Callable[[str], Exception],
    check_redirect: Callable[[str], None] | None = None,
) -> Iterator[httpx.Response]:
    """Yield the streaming 2xx response to GET `url`, checking each redirect before following it."""
    # Every response, so that a Location httpx cannot make a URL of is refused with its status.
    responses: list[httpx.Response] = []
    with httpx.Client(
        headers=_REQUEST_HEADERS,
        timeout=timeout,  # connect, and every read/write
        follow_redirects=False,  # followed below, so that every hop is checked first
        trust_env=True,
        verify=_tls_context(),
        event_hooks={"response": [responses.append]},
    ) as client:
        try:
            request = client.build_request("GET", url)
        except httpx.InvalidURL as exc:  # e.g. a non-numeric port
            raise failed(describe_network_error(exc)) from exc
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = client.send(request, stream=True)
            except httpx.InvalidURL as exc:
                # Only a redirect's Location gets here (e.g. "data:,x"): refuse that redirect.
                last = responses[-1]
                location = last.headers["Location"]
                raise refused(
                    last.status_code, f"{last.reason_phrase} - cannot follow {location!r}"
                ) from exc
            except httpx.TransportError as exc:
                raise failed(describe_network_error(exc)) from exc
            try:
                if response.is_success:
                    yield response
                    return
                # httpx sets next_request (absolute) when the response is_redirect.
                if response.next_request is None:
                    raise refused(response.status_code, response.reason_phrase)
                request = response.next_request
                if check_redirect is not None:
                    check_redirect(str(request.url))
                if request.url.scheme not in _ALLOWED_SCHEMES:
                    raise failed(f"unknown url type: {request.url.scheme}")
            finally:
                response.close()  # a refused or followed redirect's body is not read
        raise refused(
            response.status_code,
            f"{response.reason_phrase} - more than {_MAX_REDIRECTS} redirects",
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi, SSL_CERT_FILE/DIR), built once per process."""
    # Building it loads the CA bundle (~17 ms): too much to repeat for every image fetched.
    return httpx.create_ssl_context()


def _open(url: str, timeout: float) -> contextlib.AbstractContextManager[httpx.Response]:
    """Send the request and return the (2xx) response as a context, or raise DownloadFailed."""
    return open_http(
        url,
        timeout=timeout,
        refused=lambda code, reason: DownloadFailed(
            f"could not download {url}: HTTP {code} {reason}"
        ),
        failed=lambda message: DownloadFailed(f"could not download {url}: {message}"),
    )


def content_length(response: httpx.Response) -> int | None:
    """Return the announced body size, or None when absent or unparsable (e.g. chunked)."""
    header = response.headers.get("Content-Length")
    try:
        return int(header) if header is not None else None
    except ValueError:
        return None


def _stream(
    response: httpx.Response,
    out: IO[bytes],
    *,
    url: str,
    total: int | None,
    max_bytes: int,
    progress: bool,
    label: str,
) -> str:
    """Copy the body to `out` in chunks, hashing and enforcing `max_bytes`; return the hex."""
    digest = hashlib.sha256()
    # disable=None hides the bar when stderr is not a terminal (logs, CI).
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=None if progress else True,
    ) as bar:
        for chunk in iter_body(
            response,
            max_bytes=max_bytes,
            too_large=lambda message: DownloadFailed(f"{url}: {message}"),
            failed=lambda message: DownloadFailed(f"could not download {url}: {message}"),
        ):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def iter_body(
    response: httpx.Response,
    *,
    max_bytes: int,
    too_large: Callable[[str], Exception],
    failed: Callable[[str], Exception],
    deadline: float | None = None,
) -> Iterator[bytes]:
    """Yield the body in chunks, raising the caller's errors past the cap or on failure."""
    announced = content_length(response)
    received = 0
    try:
        # iter_raw, not iter_bytes: a Content-Encoding is not undone, as urllib did not, so the
        # bytes counted are the ones the length announced. Chunks are what each receive gives,
        # so the deadline is checked often.
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > max_bytes:
                raise too_large(f"body exceeds the limit of {max_bytes} bytes")
            # The socket timeout only bounds each read: a server trickling bytes could hold a
            # caller forever, so callers with a time budget pass an absolute deadline.
            if deadline is not None and time.monotonic() > deadline:
                raise failed(f"body not received in time ({received} bytes so far)")
            yield chunk
    except httpx.TransportError as exc:
        # h11 reports a body cut short of its Content-Length as a protocol error; say what
        # http.client's silent short read was reported as.
        cut_short = announced is not None and received < announced
        if isinstance(exc, httpx.RemoteProtocolError) and cut_short:
            raise failed(f"received {received} bytes, server announced {announced}") from exc
        raise failed(describe_network_error(exc)) from exc
    # h11 holds a body to its Content-Length, but a 204 has no body whatever it announces.
    if announced is not None and received != announced:
        raise failed(f"received {received} bytes, server announced {announced}")


def _verify(url: str, expected: str | None, actual: str) -> None:
    """Raise ChecksumMismatch unless `actual` is the expected digest (None trusts anything)."""
    if expected is not None and actual != expected:
        raise ChecksumMismatch(f"{url}: expected sha256 {expected}, got {actual}")


def describe_network_error(exc: BaseException) -> str:
    """Describe a network failure briefly by the error underneath httpx's and httpcore's."""
    # httpx's error has httpcore's as its cause, which holds the socket's as its argument: the
    # innermost names what happened (ConnectionRefusedError, TimeoutError, gaierror, SSLError),
    # as urllib's URLError.reason did.
    cause = exc
    while True:
        inner = cause.args[0] if cause.args else None
        if not isinstance(inner, BaseException):
            inner = cause.__cause__
        if inner is None:
            return f"{type(cause).__name__}: {cause}"
        cause = inner
