"""Download a published model file over HTTP(S), verifying its sha256 before it is used.

The HTTP plumbing (an http(s)-only opener, the announced length, a capped chunk loop, network
error wording) is public because ``ingest.images.sources`` fetches image URIs with the same rules.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from tqdm import tqdm

from ingest.errors import ChecksumMismatch, DownloadFailed, ModelError

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_CHUNK_BYTES = 1024 * 1024
USER_AGENT = "lookalike-fetch/0.1"


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


def http_opener(
    redirects: urllib.request.HTTPRedirectHandler | None = None,
) -> urllib.request.OpenerDirector:
    """Build an opener that speaks only HTTP(S), so a redirect cannot reach file:// or ftp://."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        redirects or urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),  # names the refused scheme in the error
    ):
        opener.add_handler(handler)
    return opener


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    """Send the request and return the (2xx) response, or raise DownloadFailed."""
    # S310 warns about file:// and custom schemes: _check_scheme and http_opener allow only http(s).
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    try:
        response: http.client.HTTPResponse = http_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()  # the error carries the open response body; release its socket now
        raise DownloadFailed(f"could not download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadFailed(f"could not download {url}: {describe_network_error(exc)}") from exc
    return response


def content_length(response: http.client.HTTPResponse) -> int | None:
    """Return the announced body size, or None when absent or unparsable (e.g. chunked)."""
    header = response.headers.get("Content-Length")
    try:
        return int(header) if header is not None else None
    except ValueError:
        return None


def _stream(
    response: http.client.HTTPResponse,
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
    response: http.client.HTTPResponse,
    *,
    max_bytes: int,
    too_large: Callable[[str], Exception],
    failed: Callable[[str], Exception],
    deadline: float | None = None,
) -> Iterator[bytes]:
    """Yield the body in chunks, raising the caller's errors past the cap or on failure."""
    announced = content_length(response)
    received = 0
    while chunk := _read_chunk(response, failed):
        received += len(chunk)
        if received > max_bytes:
            raise too_large(f"body exceeds the limit of {max_bytes} bytes")
        # The socket timeout only bounds each read: a server trickling bytes could hold a
        # caller forever, so callers with a time budget pass an absolute deadline.
        if deadline is not None and time.monotonic() > deadline:
            raise failed(f"body not received in time ({received} bytes so far)")
        yield chunk
    # http.client ends a short body silently when the server closes early.
    if announced is not None and received != announced:
        raise failed(f"received {received} bytes, server announced {announced}")


def _read_chunk(response: http.client.HTTPResponse, failed: Callable[[str], Exception]) -> bytes:
    """Read what one receive gives (so deadlines are checked often), mapping network failures."""
    try:
        return response.read1(_CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise failed(describe_network_error(exc)) from exc


def _verify(url: str, expected: str | None, actual: str) -> None:
    """Raise ChecksumMismatch unless `actual` is the expected digest (None trusts anything)."""
    if expected is not None and actual != expected:
        raise ChecksumMismatch(f"{url}: expected sha256 {expected}, got {actual}")


def describe_network_error(exc: BaseException) -> str:
    """Describe a network failure briefly: URLError wraps the useful part in `.reason`."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return (
        f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    )
