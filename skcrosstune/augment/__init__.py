"""LLMAugmenter: training examples written by a language model, filtered by a switch.

The second half of CrossTune (Luo et al., LREC-COLING 2024, arXiv 2403.12468),
as built here:

1. **Generation by in-context learning.** For each class, a generator (an
   OpenAI-compatible chat endpoint, or a local causal LM) is shown the task
   description, every label with its description, ``n_demonstrations`` gold
   examples per class drawn with ``random_state``, and is asked for
   ``n_per_request`` new, diverse examples of that class, answered as JSON.
   Each reply is stored in the query cache as it arrives, keyed by the
   generator's fingerprint, the full prompt, the seed and the sample index.
2. **Clean-up.** Replies are parsed leniently (code fences, text around the
   JSON, a bare list or an object holding one); empty, malformed, over-long
   and duplicate examples and copies of gold texts are dropped, each reason
   counted.
3. **The switch.** A teacher classifier fitted on the gold examples only
   scores each generated example; it is kept when the teacher's probability
   for the label it was written for is at least ``threshold``.

Generation never depends on ``threshold`` or on the classifier behind the
augmenter, so a grid search over them re-reads the cache: only a new prompt
(another training fold, another seed) costs a request.
"""

from ._augmenter import LLMAugmenter
from ._parsing import parse_examples

__all__ = ["LLMAugmenter", "parse_examples"]
