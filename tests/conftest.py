"""Shared fixtures: a private cache folder, tiny local models (offline mode is set in ../conftest.py)."""

from __future__ import annotations

import pytest

from ._tiny_models import make_tiny_masked_lm


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own default cache folder; nothing touches ~/.cache."""
    monkeypatch.setenv("SKCROSSTUNE_CACHE_DIR", str(tmp_path / "skcrosstune-cache"))
    monkeypatch.delenv("SKCROSSTUNE_DATA", raising=False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised BERT masked LM with a WordPiece tokenizer, saved to disk."""
    return make_tiny_masked_lm("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    """A randomly initialised RoBERTa masked LM with a byte-level BPE tokenizer, saved to disk."""
    return make_tiny_masked_lm("roberta", tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture
def openai_server():
    """A running OpenAI-compatible server on 127.0.0.1 (tests/_openai_server.py), stopped after the test."""
    from ._openai_server import OpenAIServer

    with OpenAIServer() as server:
        yield server
