"""Conventions every estimator shares: device validation, and scikit-learn's private helpers kept in one place."""

import ast
from pathlib import Path

import pytest

import skcrosstune
from skcrosstune import (
    BlackBoxEmbedder,
    BlackBoxPromptClassifier,
    CrossTuneClassifier,
    DecTClassifier,
    LLMAugmenter,
)
from skcrosstune._training import check_device, resolve_device
from skcrosstune.backends.local import LocalBackend

TEXTS = ["a fine film", "a dull film", "great acting", "awful plot"]
LABELS = ["pos", "neg", "pos", "neg"]
VALID_FORMS = "'auto', 'cpu', 'cuda', 'cuda:N'"


@pytest.fixture
def no_query(monkeypatch):
    """Fail the test if anything reaches a local model."""

    def refuse(self, items):
        raise AssertionError("a black box was queried before the settings were validated")

    monkeypatch.setattr(LocalBackend, "encode", refuse)


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:", "cuda:x", "CPU", "cuda:0 ", ""])
@pytest.mark.parametrize(
    "fit",
    [
        pytest.param(lambda device: BlackBoxEmbedder(device=device).fit(TEXTS), id="BlackBoxEmbedder"),
        pytest.param(lambda device: CrossTuneClassifier(device=device).fit(TEXTS, LABELS), id="CrossTuneClassifier"),
        pytest.param(lambda device: DecTClassifier(device=device).fit(TEXTS, LABELS), id="DecTClassifier"),
        pytest.param(
            lambda device: BlackBoxPromptClassifier(BlackBoxEmbedder(device=device)).fit(TEXTS, LABELS),
            id="BlackBoxPromptClassifier(embedder)",
        ),
        pytest.param(
            lambda device: CrossTuneClassifier(BlackBoxEmbedder(device=device)).fit(TEXTS, LABELS),
            id="CrossTuneClassifier(embedder)",
        ),
        pytest.param(
            lambda device: LLMAugmenter("openai:any", api_key_env=None, device=device).fit_resample(TEXTS, LABELS),
            id="LLMAugmenter",
        ),
    ],
)
def test_an_unknown_device_is_refused_in_fit_naming_the_valid_forms(fit, device, no_query):
    with pytest.raises(ValueError, match=r"'device' parameter of \w+ must be a device: " + VALID_FORMS):
        fit(device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_every_documented_device_form_is_accepted(device):
    assert check_device(device) == device
    assert BlackBoxEmbedder(device=device, store=None).fit(TEXTS[:1]).device == device


@pytest.mark.parametrize("device", ["tpu", None, 0])
def test_resolve_device_refuses_what_it_cannot_run_on(device):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N'"):
        resolve_device(device)


def test_a_gpu_device_falls_back_to_the_cpu_with_a_warning_where_there_is_none():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback is for machines without it")
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        assert resolve_device("cuda:1") == "cpu"


# ----------------------------------------------- scikit-learn private helpers
def _private_sklearn_imports(path: Path):
    """``(module, name)`` of every private scikit-learn name imported by a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sklearn":
            private_module = any(part.startswith("_") for part in node.module.split("."))
            for alias in node.names:
                if private_module or alias.name.startswith("_"):
                    found.append((node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("sklearn._") or "._" in a.name]
    return found


def test_scikit_learns_private_helpers_are_imported_in_one_module_only():
    package = Path(skcrosstune.__file__).parent
    offenders = {
        str(path.relative_to(package)): names
        for path in sorted(package.rglob("*.py"))
        if path.name != "_compat.py" and (names := _private_sklearn_imports(path))
    }
    assert offenders == {}, "import these through skcrosstune/_compat.py"
    assert _private_sklearn_imports(package / "_compat.py"), "the guard above checks nothing"
