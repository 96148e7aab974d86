"""skcrosstune: few-shot text classification on black-box language models, the scikit-learn way."""

from .augment import LLMAugmenter
from .backends import BlackBoxError
from .bdpl import BlackBoxPromptClassifier
from .crosstune import CrossTuneClassifier
from .dect import DecTClassifier
from .embedder import BlackBoxEmbedder

__version__ = "0.1.0.dev0"

__all__ = [
    "BlackBoxEmbedder",
    "BlackBoxError",
    "BlackBoxPromptClassifier",
    "CrossTuneClassifier",
    "DecTClassifier",
    "LLMAugmenter",
    "__version__",
]
