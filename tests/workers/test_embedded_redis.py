"""EmbeddedRedis against real Valkey server processes, each in its own tmp_path data dir."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from celery.backends.redis import RedisBackend
from kombu.connection import Connection

from schemas.settings import Settings
from search_api.cli.embedded.redis_files import EmbeddedRedisError
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.cli.stack import redis_url_for

REPO = Path(__file__).resolve().parents[2]
ITEMS = 1000

MakeServer = Callable[..., EmbeddedRedis]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir whose path has a space, as on macOS ("Application Support")."""
    return tmp_path / "lookalike data"


@pytest.fixture
def make_server(data_dir: Path) -> Iterator[MakeServer]:
    """Factory of EmbeddedRedis instances; every server they ran is gone after the test."""
    made: list[EmbeddedRedis] = []

    def make(directory: Path | None = None, **kwargs: Any) -> EmbeddedRedis:
        server = EmbeddedRedis(directory or data_dir, **kwargs)
        made.append(server)
        return server

    yield make
    for server in reversed(made):
        try:
            server.stop(timeout=5)
        finally:
            # Whatever a failing test left behind (an orphan, a hung server) dies here.
            pid = _pidfile(server)
            if pid is not None and _server_lock_held(server):
                _kill_quietly(pid)


def _pidfile(server: EmbeddedRedis) -> int | None:
    try:
        return int((server.state_dir / "valkey.pid").read_text())
    except (OSError, ValueError):
        return None


def _server_lock_held(server: EmbeddedRedis) -> bool:
    path = server.state_dir / "server.lock"
    if not path.exists():
        return False
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def _run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the repo root and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_start_serves_ping_on_a_private_loopback_port(
    make_server: MakeServer, data_dir: Path
) -> None:
    server = make_server()
    url = server.start()

    parts = urlsplit(url)
    assert parts.scheme == "redis"
    assert parts.hostname == "127.0.0.1"
    assert parts.port not in (None, 6379)
    assert parts.password
    assert server.url == url
    assert _client(url).ping()
    # Without the password the server refuses to work.
    with socket.create_connection(("127.0.0.1", parts.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100).startswith(b"-NOAUTH")
    assert server.state_dir == data_dir / "redis"
    assert _pidfile(server) == server.pid
    assert server.owns_server
    for name in ("valkey.conf", "state.json"):
        assert stat.S_IMODE((server.state_dir / name).stat().st_mode) == 0o600
    config = (server.state_dir / "valkey.conf").read_text()
    assert "appendfsync always" in config
    assert "bind 127.0.0.1" in config


def test_stop_ends_the_process_and_closes_the_port(make_server: MakeServer) -> None:
    server = make_server()
    url = server.start()
    pid, port = server.pid, urlsplit(url).port
    assert pid is not None
    assert port is not None

    server.stop()

    assert not _process_exists(pid)
    assert not _port_open(port)
    assert not (server.state_dir / "valkey.pid").exists()
    server.stop()  # idempotent
    with pytest.raises(EmbeddedRedisError, match="not started"):
        _ = server.url


def test_context_manager_starts_and_stops(make_server: MakeServer) -> None:
    with make_server() as server:
        port = urlsplit(server.url).port
        assert port is not None
        assert _client(server.url).ping()
    assert not _port_open(port)


def test_clean_restart_keeps_every_queued_item_and_the_url(make_server: MakeServer) -> None:
    server = make_server()
    url = server.start()
    client = _client(url)
    for i in range(ITEMS):
        client.lpush("celery", f"event-{i}")
    server.stop()

    again = make_server()
    assert again.start() == url  # same port and password: URLs handed out stay valid
    assert _client(url).lrange("celery", 0, -1) == [
        f"event-{i}".encode() for i in reversed(range(ITEMS))
    ]


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_sigkill_of_the_server_loses_no_acknowledged_push(
    make_server: MakeServer, appendfsync: str
) -> None:
    """A killed process loses nothing under either policy: the server write()s the AOF
    before it replies. Only "always" also fsyncs first, which is what survives an OS crash
    or power cut (not something a test can do)."""
    server = make_server(appendfsync=appendfsync)
    url = server.start()
    client = _client(url)
    for i in range(ITEMS):
        client.lpush("celery", f"event-{i}")
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    server.stop()  # reaps the dead child; must not touch whatever runs next

    again = make_server(appendfsync=appendfsync)
    again.start()
    assert again.pid != server.pid
    assert _client(again.url).llen("celery") == ITEMS


def test_second_instance_reuses_the_running_server(make_server: MakeServer) -> None:
    first = make_server()
    url = first.start()

    second = make_server()
    assert second.start() == url
    assert second.pid == first.pid
    assert not second.owns_server

    second.stop()  # not the owner: the server keeps serving the first instance
    assert _client(url).ping()
    first.stop()
    port = urlsplit(url).port
    assert port is not None
    assert not _port_open(port)


def test_processes_starting_at_once_share_one_server(data_dir: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from search_api.cli.embedded.redis_server import EmbeddedRedis
        server = EmbeddedRedis(Path({str(data_dir)!r}))
        url = server.start()
        print(server.pid, server.owns_server, url, flush=True)
        sys.stdin.read()  # hold on until the test has heard from everyone
        server.stop()
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        replies = [proc.stdout.readline().split() for proc in procs if proc.stdout]
    finally:
        for proc in procs:
            proc.communicate(timeout=30)
    assert len({pid for pid, _, _ in replies}) == 1
    assert len({url for _, _, url in replies}) == 1
    assert sorted(owns for _, owns, _ in replies) == ["False", "False", "True"]
    port = urlsplit(replies[0][2]).port
    assert port is not None
    assert not _port_open(port)


def test_server_orphaned_by_a_dead_process_is_adopted_and_stopped(
    make_server: MakeServer, data_dir: Path
) -> None:
    # A process that started the server and died without stopping it (os._exit skips atexit).
    url = _run_python(
        f"""
        import os
        from pathlib import Path
        from search_api.cli.embedded.redis_server import EmbeddedRedis
        print(EmbeddedRedis(Path({str(data_dir)!r})).start(), flush=True)
        os._exit(0)
        """
    )
    server = make_server()
    assert server.start() == url
    assert server.owns_server
    assert _client(url).ping()

    server.stop()
    port = urlsplit(url).port
    assert port is not None
    assert not _port_open(port)


def test_interpreter_exit_stops_an_owned_server(data_dir: Path) -> None:
    url = _run_python(
        f"""
        from pathlib import Path
        from search_api.cli.embedded.redis_server import EmbeddedRedis
        print(EmbeddedRedis(Path({str(data_dir)!r})).start())
        """
    )
    port = urlsplit(url).port
    assert port is not None
    assert not _port_open(port)


def test_taken_port_moves_the_server_to_a_free_one(make_server: MakeServer) -> None:
    server = make_server()
    old_port = urlsplit(server.start()).port
    server.stop()

    with socket.socket() as squatter:
        # SO_REUSEADDR: our own clients' connections to the old port linger in TIME_WAIT.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port or 0))
        squatter.listen()
        again = make_server()
        new_port = urlsplit(again.start()).port
        assert new_port not in (old_port, 6379)
        assert _client(again.url).ping()
    assert f'"port": {new_port}' in (again.state_dir / "state.json").read_text()


def test_kombu_queue_round_trip_survives_a_restart(make_server: MakeServer) -> None:
    server = make_server()
    url = server.start()
    with Connection(url) as conn:
        conn.ensure_connection(max_retries=1)
        queue = conn.SimpleQueue("lookalike-test")
        queue.put({"item_id": "sku-1", "uri": "blob://abc"})
        queue.close()
    server.stop()

    url = make_server().start()
    with Connection(url) as conn:
        queue = conn.SimpleQueue("lookalike-test")
        message = queue.get(timeout=5)
        assert message.payload == {"item_id": "sku-1", "uri": "blob://abc"}
        message.ack()
        queue.close()
    # Celery's broker connection and its Redis result backend accept the same URL.
    app = Celery("lookalike-test", broker=url, backend=url)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
    assert isinstance(app.backend, RedisBackend)
    assert app.backend.client.ping()


def test_redis_url_for_prefers_the_configured_url(data_dir: Path) -> None:
    settings = Settings(redis_url="redis://example:6379/0", data_dir=data_dir)

    assert redis_url_for(settings) == ("redis://example:6379/0", None)
    assert not (data_dir / "redis").exists()


def test_redis_url_for_starts_an_embedded_server(data_dir: Path) -> None:
    url, server = redis_url_for(Settings(redis_url=None, data_dir=data_dir))
    assert server is not None
    try:
        assert _client(url).ping()
        assert server.state_dir == data_dir / "redis"
    finally:
        server.stop()


def test_missing_binary_is_a_clear_error(make_server: MakeServer, tmp_path: Path) -> None:
    server = make_server(binary=tmp_path / "no-such-valkey-server")

    with pytest.raises(EmbeddedRedisError, match="not found or not executable"):
        server.start()


def test_binary_that_dies_reports_its_output(make_server: MakeServer, tmp_path: Path) -> None:
    fake = tmp_path / "fake-server"
    fake.write_text("#!/bin/sh\necho 'fatal: this is not a Redis server'\nexit 3\n")
    fake.chmod(0o755)

    with pytest.raises(EmbeddedRedisError, match="exited with code 3") as caught:
        make_server(binary=fake).start()
    assert "fatal: this is not a Redis server" in str(caught.value)


def test_real_server_startup_failure_reports_the_log_tail(
    make_server: MakeServer, data_dir: Path
) -> None:
    # A file where the server wants its append-only directory makes it refuse to start.
    (data_dir / "redis").mkdir(parents=True)
    (data_dir / "redis" / "appendonlydir").write_text("not a directory")
    server = make_server()

    with pytest.raises(EmbeddedRedisError, match="append-only dir"):
        server.start()
    (data_dir / "redis" / "appendonlydir").unlink()
    assert _client(server.start()).ping()  # nothing was left holding the data dir


def test_unusable_data_dir_is_a_clear_error(make_server: MakeServer, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")

    with pytest.raises(EmbeddedRedisError, match="cannot run the embedded Redis server"):
        make_server(not_a_dir).start()
