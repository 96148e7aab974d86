"""How skcrosstune talks to black boxes; nothing here knows about scikit-learn."""

from .base import Backend, BlackBoxError, Paid, Usage
from .local import DEFAULT_MODEL, LocalBackend
from .openai import OpenAIEmbeddingBackend

__all__ = ["Backend", "BlackBoxError", "DEFAULT_MODEL", "LocalBackend", "OpenAIEmbeddingBackend", "Paid", "Usage"]
