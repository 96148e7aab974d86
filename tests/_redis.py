"""A private ``redis-server`` on 127.0.0.1 for tests and benchmarks.

The server keeps nothing on disk (no snapshots, no append-only file),
listens on 127.0.0.1 only, on a free port, and is stopped when the context
exits.

Examples
--------
>>> if find_redis_server():
...     with RedisServer() as server:
...         url = server.url
...     url.startswith("redis://127.0.0.1:")
... else:
...     True
True
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["RedisServer", "find_redis_server"]

HOST = "127.0.0.1"


def find_redis_server() -> str | None:
    """The ``redis-server`` binary on PATH (or Debian's /usr/bin), else None."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
            return answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")  # up, asking for its password
    except OSError:
        return False


class RedisServer:
    """``redis-server`` in a subprocess on a free port of 127.0.0.1.

    Parameters
    ----------
    binary : str, default=None
        The server binary; None finds it with :func:`find_redis_server`.
    startup_timeout : float, default=10.0
        Seconds to wait for the server to answer ``PING``.
    password : str, default=None
        When given, the server asks for it (``requirepass``).
    persistent : bool, default=False
        Keep the data on disk (append-only file, written on every change), so
        that :meth:`restart` finds it again, as a production server would.

    Attributes
    ----------
    url : str
        ``"redis://127.0.0.1:<port>/0"``, set once started.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        startup_timeout: float = 10.0,
        password: str | None = None,
        persistent: bool = False,
    ):
        self.binary = binary or find_redis_server()
        self.startup_timeout = startup_timeout
        self.password = password
        self.persistent = persistent
        self.url: str | None = None
        self._process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    def start(self) -> RedisServer:
        """Start the server and wait (bounded) until it answers."""
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server).")
        self._workdir = tempfile.TemporaryDirectory(prefix="skcrosstune-redis-")
        errors = ""
        for _attempt in range(3):  # the free port can be taken between choosing and binding it
            port = _free_port()
            errors = self._launch(port)
            if errors is None:
                self.url = f"redis://{HOST}:{port}/0"
                return self
        self._workdir.cleanup()
        raise RuntimeError(f"redis-server did not answer on {HOST}: {errors.strip()}")

    def _launch(self, port: int) -> str | None:
        """Start the server on ``port``; None once it answers, else what it printed."""
        appendonly = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        command = [self.binary, "--bind", HOST, "--port", str(port), "--save", "", *appendonly]
        command += ["--dir", self._workdir.name, "--loglevel", "warning"]
        if self.password is not None:
            command += ["--requirepass", self.password]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and process.poll() is None and not _answers(port):
            time.sleep(0.05)
        if process.poll() is None and _answers(port):
            self._process = process
            return None
        process.kill()
        return process.communicate()[1].decode(errors="replace")

    def restart(self, down_for: float) -> None:
        """Stop the server (as a crash or a deploy would), stay down ``down_for`` seconds, start it again."""
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        process, self._process = self._process, None
        process.kill()
        process.wait()
        process.stderr.close()
        time.sleep(down_for)
        errors = self._launch(port)
        if errors is not None:
            raise RuntimeError(f"redis-server did not come back on port {port}: {errors.strip()}")

    def stop(self) -> None:
        """Stop the server and remove its folder. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stderr.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
