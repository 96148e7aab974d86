"""Every Python code block of README.rst and the documentation pages runs as written.

The blocks of one page run in order in one namespace, as a reader would run
them. Nothing is skipped: each block is a test of its own, named by its page
and line, and its id lists what the run changed:

- a model name in ``STAND_INS`` (a large Hugging Face model) is replaced by
  a tiny random model of the same kind (tests/_tiny_models.py);
- a query budget in ``SMALLER`` is cut, to keep the suite fast (the
  block's own numbers are what a user would run);
- an API model (``"openai:..."``) talks to the local OpenAI-compatible
  server of tests/_openai_server.py, with a dummy key: the server is
  ``$OPENAI_BASE_URL`` and replaces every ``base_url`` string, so nothing
  leaves 127.0.0.1.

The embedded default model (all-MiniLM-L6-v2) runs for real. A literal
block (``::``) holding Python is an error: make it a ``code-block:: python``
so that it is tested.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]

# the name a block uses -> the tiny model fixture that stands in for it
STAND_INS = {
    "/models/roberta-large": "tiny_roberta",
    "roberta-large": "tiny_roberta",
    "roberta-base": "tiny_roberta",
    "bert-base-uncased": "tiny_bert",
    "intfloat/e5-base-v2": "tiny_bert",
}
# a block's setting -> what the test runs instead
SMALLER = {
    "max_queries=20_000": "max_queries=2_000",
    "n_per_class=64": "n_per_class=8",
}
BASE_URL = re.compile(r"""base_url=(["'])http[^"']*\1""")
CODE_BLOCK = re.compile(r"^( *)\.\. code-block:: (\w+)\s*$")


def _indented_block(lines: list[str], start: int) -> tuple[str, int]:
    """The block indented under line ``start - 1``: its dedented text and its first line number."""
    i = start
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith(":")):
        i += 1  # the blank line and any directive options
    first, body = i, []
    indent = len(lines[i - 1]) - len(lines[i - 1].lstrip()) if i else 0
    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
        body.append(lines[i])
        i += 1
    return textwrap.dedent("\n".join(body)).strip() + "\n", first + 1


def code_blocks(page: Path) -> list[tuple[int, str, str]]:
    """``(line, language, code)`` of every code block of an RST page, literal (``::``) blocks as ``"literal"``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for n, line in enumerate(lines):
        match = CODE_BLOCK.match(line)
        if match:
            code, first = _indented_block(lines, n + 1)
            blocks.append((first, match.group(2), code))
        elif line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            code, first = _indented_block(lines, n + 1)
            blocks.append((first, "literal", code))
    return blocks


def _changes(code: str) -> list[str]:
    changes = [f"{name}->{fixture}" for name, fixture in STAND_INS.items() if f'"{name}"' in code]
    changes += [f"{name}->{smaller.split('=')[1]}" for name, smaller in SMALLER.items() if name in code]
    if '"openai:' in code:
        changes.append("API->local server")
    return changes


def _block_id(page: Path, line: int, code: str) -> str:
    changes = _changes(code)
    return f"{page.name}:{line}" + (f"[{', '.join(changes)}]" if changes else "")


PYTHON_BLOCKS = [
    pytest.param(page, line, code, id=_block_id(page, line, code))
    for page in PAGES
    for line, language, code in code_blocks(page)
    if language == "python"
]


def test_the_pages_hold_python_blocks_and_the_test_finds_them():
    names = {p.values[0].name for p in PYTHON_BLOCKS}
    assert {"README.rst", "user_guide.rst", "index.rst"} <= names
    assert len(PYTHON_BLOCKS) >= 15


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_python_hides_in_a_literal_block(page):
    for line, language, code in code_blocks(page):
        if language != "literal":
            continue
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue  # a diagram, a folder layout, a shell line
        is_python = any(isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.Call)) for node in ast.walk(tree))
        assert not is_python, f"{page.name}:{line} is Python in a literal block; use '.. code-block:: python'"


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    command = next(code for _, _, code in code_blocks(ROOT / "README.rst") if "pytest" in code).strip()
    assert "Install and run the tests::" in readme
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def _generated_examples(body: dict) -> str:
    """A chat reply for LLMAugmenter: as many distinct, on-label examples as the request asks for."""
    prompt = body["messages"][-1]["content"]
    match = re.search(r'(\d+) new, diverse examples of the label "([^"]*)"', prompt)
    n, label = (int(match.group(1)), match.group(2)) if match else (4, "")
    tag = hashlib.blake2b(prompt.encode(), digest_size=4).hexdigest()
    words = "a glowing, delightful film" if label == "positive" else "a dull, tedious film"
    return json.dumps([f"{words} {tag} {j}" for j in range(n)])


@pytest.fixture(scope="module")
def doc_run(tmp_path_factory):
    """Per page, the namespace the blocks share and how many of them have run."""
    from ._openai_server import OpenAIServer

    with OpenAIServer(chat_reply=_generated_examples) as server:
        yield {"server": server, "cache": tmp_path_factory.mktemp("doc-cache"), "pages": {}}


@pytest.mark.parametrize(("page", "line", "code"), PYTHON_BLOCKS)
def test_code_block_runs(page, line, code, doc_run, request, monkeypatch, tmp_path):
    monkeypatch.setenv("SKCROSSTUNE_CACHE_DIR", str(doc_run["cache"]))
    monkeypatch.setenv("OPENAI_BASE_URL", doc_run["server"].url)
    for variable in ("OPENAI_API_KEY", "VLLM_API_KEY"):
        monkeypatch.setenv(variable, "sk-dummy-key-for-the-local-server")
    monkeypatch.chdir(tmp_path)

    state = doc_run["pages"].setdefault(page, {"namespace": {"__name__": "__main__"}, "ran": [], "failed": None})
    assert state["failed"] is None, f"an earlier block of {page.name} failed (line {state['failed']})"
    for name, fixture in STAND_INS.items():
        code = code.replace(f'"{name}"', repr(str(request.getfixturevalue(fixture))))
    for name, smaller in SMALLER.items():
        code = code.replace(name, smaller)
    code = BASE_URL.sub(f"base_url={doc_run['server'].url!r}", code)
    state["failed"] = line
    exec(compile(code, f"{page.name}:{line}", "exec"), state["namespace"])
    state["failed"] = None
    state["ran"].append(line)


# ------------------------------------------------------------------ the gallery
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("plot_*.py"))


def test_the_gallery_has_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_gallery_example_runs_as_a_script(example, doc_run, request, tmp_path):
    """Each example runs as ``python example.py``, as a reader runs it (a cluster recipe needs its main guard)."""
    import os
    import subprocess
    import sys

    code = example.read_text(encoding="utf-8")
    for name, fixture in STAND_INS.items():
        code = code.replace(f'"{name}"', repr(str(request.getfixturevalue(fixture))))
    for name, smaller in SMALLER.items():
        code = code.replace(name, smaller)
    script = tmp_path / example.name
    script.write_text(BASE_URL.sub(f"base_url={doc_run['server'].url!r}", code), encoding="utf-8")
    env = {
        **os.environ,
        "SKCROSSTUNE_CACHE_DIR": str(doc_run["cache"]),
        "OPENAI_BASE_URL": doc_run["server"].url,
        "OPENAI_API_KEY": "sk-dummy-key-for-the-local-server",
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{example.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


# ------------------------------------------------------- docs that match the code
#: The modules whose ``__all__`` is public API, each documented in docs/api.rst.
PUBLIC_MODULES = (
    "skcrosstune",
    "skcrosstune.augment",
    "skcrosstune.datasets",
    "skcrosstune.backends",
    "skcrosstune.backends.chat",
    "skcrosstune.backends.openai_logprobs",
    "skcrosstune.stores",
    "skcrosstune.stores.sqlite",
    "skcrosstune.stores.redis",
    "skcrosstune.cache",
)


def _api_entries() -> set[tuple[str, str]]:
    """``(module, name)`` of every autosummary entry and ``.. data::`` of docs/api.rst."""
    entries, module, in_summary = set(), None, False
    for line in (ROOT / "docs" / "api.rst").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            module = stripped.split("::", 1)[1].strip()
        elif stripped.startswith(".. autosummary::"):
            in_summary = True
        elif stripped.startswith(".. data::"):
            entries.add((module, stripped.split("::", 1)[1].strip()))
        elif in_summary and stripped and not stripped.startswith(":") and line.startswith("   "):
            entries.add((module, stripped))
        elif stripped and not line.startswith(" "):
            in_summary = False
    return entries


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module):
    import importlib

    documented = _api_entries()
    public = [name for name in importlib.import_module(module).__all__ if not name.startswith("__")]
    # a name re-exported by a parent module counts where the parent documents it
    missing = [
        name
        for name in public
        if not any((m, name) in documented for m in PUBLIC_MODULES if module.startswith(m) or m.startswith(module))
    ]
    assert not missing, f"{module}: {missing} are public (in __all__) but not in docs/api.rst"


def test_every_environment_variable_the_code_reads_is_in_the_table():
    source = "\n".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "skcrosstune").rglob("*.py")))
    read = set(re.findall(r"""["']((?:SKCROSSTUNE|OPENAI|HF|XDG)_[A-Z_]+)["']""", source))
    guide = (ROOT / "docs" / "user_guide.rst").read_text(encoding="utf-8")
    table = guide[guide.index("Environment variables\n---") :]
    assert {"SKCROSSTUNE_CACHE_DIR", "OPENAI_BASE_URL"} <= read
    missing = sorted(name for name in read if f"``{name}" not in table)
    assert not missing, f"the code reads {missing}, which the user guide's environment-variable table lacks"


def test_every_extra_is_on_the_install_page():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, re.M)
    assert {"test", "docs"} <= set(extras)
    page = (ROOT / "docs" / "install.rst").read_text(encoding="utf-8")
    missing = sorted(name for name in extras if not re.search(rf"^``{re.escape(name)}``\s", page, re.M))
    assert not missing, f"pyproject.toml declares the extras {missing}, which docs/install.rst does not list"
