"""LLMAugmenter: training examples written by a language model, filtered by a switch.

The second half of CrossTune (Luo et al., LREC-COLING 2024, arXiv 2403.12468),
as built here:

1. **Generation by in-context learning.** For each class, a generator (an
   OpenAI-compatible chat endpoint, or a local causal LM) is shown the task
   description, every label with its description, ``n_demonstrations`` gold
   examples per class drawn with ``random_state``, and is asked for
   ``n_per_request`` new, diverse examples of that class, answered as JSON.
   Each reply is stored in the query store as it arrives, keyed by the
   generator's fingerprint, the full prompt, the seed and the sample index.
2. **Clean-up.** Replies are parsed leniently (code fences, text around the
   JSON, a bare list or an object holding one); empty, malformed, over-long
   and duplicate examples, copies of gold texts and near-copies (most of
   their words those of a gold text) are dropped, each reason counted.
3. **The switch.** First, an example less like the gold examples than
   nearly all of them are (cosine similarity to their centroid, in a black
   box's vectors) is rejected as off-task. Then a judge gives each remaining
   generated example the probability of
   the label it was written for, and the example is kept when that
   probability reaches ``threshold`` times its class's mean (confident
   learning's per-class threshold). By default the judge is out of fold: a
   teacher (CrossTune with the label descriptions) fitted on the gold
   examples and the *other* generations scores each fold of generations, so
   it knows what the whole augmented set says. The generating chat model can judge instead, from
   the log-probabilities of its first answer token.

Generation and judging never depend on ``threshold`` or on the classifier
behind the augmenter: replies are stored, and judges' scores memoised per
distinct training set, so a grid search over the knob re-reads them; only a
new prompt (another training fold, another seed) costs a request.
:func:`lowest_threshold_within_one_se` is a ``refit`` rule for that search
that filters only when filtering beats keeping everything by more than the
folds disagree.
"""

from ._augmenter import LLMAugmenter
from ._parsing import parse_examples
from ._selection import lowest_threshold_within_one_se

__all__ = ["LLMAugmenter", "lowest_threshold_within_one_se", "parse_examples"]
