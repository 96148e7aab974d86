"""LLMAugmenter against a real local chat-completions server, through the real ``openai`` client.

The server (tests/_openai_server.py) writes the requested number of examples
of the requested label, deterministically from the request, so the same
request always gets the same answer; retry back-off sleeps are recorded
instead of slept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from cleanlab import count as cleanlab_count
from imblearn.pipeline import Pipeline
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline

from skcrosstune import BlackBoxEmbedder, BlackBoxError, CrossTuneClassifier, LLMAugmenter
from skcrosstune.augment import _judges, lowest_threshold_within_one_se, parse_examples
from skcrosstune.backends import _retry
from skcrosstune.backends.chat import LocalChatGenerator

from ._checks import parametrize_with_imblearn_checks
from ._openai_server import Fault, malformed_json, rate_limited, server_error, slow, unauthorized

KEY_ENV = "SKCROSSTUNE_TEST_API_KEY"
KEY = "sk-test-Augment9xQ2vL7pR4"
POSITIVE = ["a great film", "good acting and a fine story", "fun , really funny", "the best scene", "love it"]
NEGATIVE = ["a boring , long film", "awful plot", "the worst acting", "dull and too long", "bad , really bad"]
TEXTS = POSITIVE + NEGATIVE
LABELS = np.array(["pos"] * 5 + ["neg"] * 5, dtype=object)
DESCRIPTIONS = {"pos": "a glowing review", "neg": "a scathing review"}
REQUEST = re.compile(r'Write (\d+) new, diverse examples of the label (".*?")')


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
def fresh_judge_memo():
    """Judges' scores are memoised per process; each test starts without any."""
    _judges._memo.clear()


@pytest.fixture(autouse=True)
def sleeps(monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(_retry.time, "sleep", delays.append)
    return delays


def requested(body) -> tuple[int, str]:
    """How many examples of which label a request asks for."""
    n, label = REQUEST.search(body["messages"][-1]["content"]).groups()
    return int(n), json.loads(label)


def writer(body) -> str:
    """A well-behaved generator: n distinct examples of the label, the same for the same request."""
    n, label = requested(body)
    tag = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=4).hexdigest()
    words = "great fun best good" if label == "pos" else "awful dull worst bad"
    return json.dumps([f"{words} {label} {tag} {j}" for j in range(n)])


@pytest.fixture
def server(openai_server):
    openai_server.chat_reply = writer
    return openai_server


def chat_requests(server) -> list:
    return server.requests_to("/chat/completions")


def word_teacher():
    """A plain scikit-learn classifier on texts."""
    return make_pipeline(CountVectorizer(), LogisticRegression(C=10.0))


def make_augmenter(server, tmp_path, **params):
    settings = dict(
        model="openai:test-chat",
        base_url=server.url,
        api_key_env=KEY_ENV,
        label_descriptions=DESCRIPTIONS,
        n_per_class=6,
        n_per_request=3,
        n_demonstrations=2,
        teacher=word_teacher(),
        off_task_quantile=None,
        threshold=0.5,
        store=tmp_path / "cache",
        timeout=2.0,
        max_retries=2,
        random_state=0,
    )
    settings.update(params)
    return LLMAugmenter(**settings)


# ------------------------------------------------------------------ generation
def test_returns_the_gold_data_then_the_kept_generated_examples(server, tmp_path):
    augmenter = make_augmenter(server, tmp_path, threshold=0)
    X_res, y_res = augmenter.fit_resample(TEXTS, LABELS)
    assert isinstance(X_res, list) and X_res[:10] == TEXTS
    np.testing.assert_array_equal(y_res[:10], LABELS)
    assert len(X_res) == 10 + 2 * 6 and augmenter.n_generated_ == 12
    for text, label in zip(X_res[10:], y_res[10:], strict=True):
        assert f" {label} " in text
    # 6 per class, 3 per request: 2 requests per class
    assert augmenter.n_requests_ == len(chat_requests(server)) == 4
    assert augmenter.sampling_strategy_ == {"neg": 6, "pos": 6}
    assert all(r["kept"] and r["reason"] == "kept" for r in augmenter.generations_)


def test_the_prompt_holds_task_labels_demonstrations_and_the_request(server, tmp_path):
    make_augmenter(server, tmp_path, task_description="Is the review positive?", n_demonstrations=2).fit_resample(
        TEXTS, LABELS
    )
    for request in chat_requests(server):
        prompt = request.body["messages"][-1]["content"]
        assert prompt.startswith("Task: Is the review positive?")
        assert '- "pos": a glowing review' in prompt and '- "neg": a scathing review' in prompt
        demos = [json.loads(line) for line in prompt.splitlines() if line.startswith('{"text"')]
        assert sorted(d["label"] for d in demos) == ["neg", "neg", "pos", "pos"]
        assert all(d["text"] in (POSITIVE if d["label"] == "pos" else NEGATIVE) for d in demos)
        assert "JSON list of 3 strings" in prompt
    assert sorted(requested(r.body)[1] for r in chat_requests(server)) == ["neg", "neg", "pos", "pos"]


def test_demonstrations_are_drawn_with_random_state(server, tmp_path):
    def prompts(seed):
        server.reset()
        make_augmenter(server, tmp_path, random_state=seed, store=None).fit_resample(TEXTS, LABELS)
        return sorted(json.dumps(r.body["messages"]) for r in chat_requests(server))

    assert prompts(1) == prompts(1)
    assert prompts(1) != prompts(2)


def test_the_container_type_is_kept(server, tmp_path):
    pd = pytest.importorskip("pandas")
    X_res, y_res = make_augmenter(server, tmp_path).fit_resample(pd.Series(TEXTS, name="review"), pd.Series(LABELS))
    assert isinstance(X_res, pd.Series) and X_res.name == "review" and isinstance(y_res, pd.Series)
    X_res, _ = make_augmenter(server, tmp_path).fit_resample(np.asarray(TEXTS), LABELS)
    assert isinstance(X_res, np.ndarray) and X_res.ndim == 1 and len(X_res) > 10


def test_sentence_pairs_are_generated_as_pairs(server, tmp_path):
    def pair_writer(body):
        n, label = requested(body)
        return json.dumps([{"text": f"premise {label} {j}", "text_pair": f"hypothesis {label} {j}"} for j in range(n)])

    server.chat_reply = pair_writer
    pairs = [(t, "it was good") for t in POSITIVE] + [(t, "it was awful") for t in NEGATIVE]
    augmenter = make_augmenter(server, tmp_path, threshold=0, n_per_class=3)
    X_res, y_res = augmenter.fit_resample(pairs, LABELS)
    assert [tuple(row) for row in X_res[10:]] == [(f"premise {c} {j}", f"hypothesis {c} {j}") for c in ("neg", "pos")
                                                  for j in range(3)]  # fmt: skip
    prompt = chat_requests(server)[0].body["messages"][-1]["content"]
    assert 'objects with the keys "text" and "text_pair"' in prompt and '"text_pair": "it was' in prompt
    assert augmenter.generations_[0]["text_pair"] == "hypothesis neg 0"


def test_n_per_class_or_sampling_strategy(server, tmp_path):
    labels = np.array(["pos"] * 5 + ["neg"] * 2, dtype=object)
    texts = POSITIVE + NEGATIVE[:2]
    augmenter = make_augmenter(server, tmp_path, n_per_class=None, sampling_strategy="auto", threshold=0)
    _, y_res = augmenter.fit_resample(texts, labels)
    assert augmenter.sampling_strategy_ == {"neg": 3} and list(y_res).count("neg") == 5
    augmenter.set_params(sampling_strategy={"neg": 6, "pos": 7})
    _, y_res = augmenter.fit_resample(texts, labels)
    assert list(y_res).count("neg") == 6 and list(y_res).count("pos") == 7
    with pytest.raises(ValueError, match="either n_per_class or sampling_strategy"):
        make_augmenter(server, tmp_path, sampling_strategy="minority").fit_resample(texts, labels)


# ------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "reply, expected",
    [
        ('["a", "b"]', ["a", "b"]),
        ('```json\n["a", "b"]\n```', ["a", "b"]),
        ('Here you go:\n```\n["a", "b"]\n```\nLet me know if you need more [1].', ["a", "b"]),
        ('["a", "b"] I hope these help!', ["a", "b"]),
        ('{"examples": [{"text": " a "}, {"text": "b"}]}', ["a", "b"]),
        ('["a", 3, {"label": "x"}]', ["a", None, None]),
        ("Sorry, I cannot do that.", None),
        ("[1. a", None),
        # a list cut short when the reply ran out of tokens: its complete entries
        ('["a", "b"', ["a", "b"]),
        ('```json\n[\n  "a",\n  "b \\"c\\"",\n  "d is cut sh', ["a", 'b "c"']),
        ('[{"text": "a"}, {"text": "b"}, {"te', ["a", "b"]),
    ],
)
def test_replies_are_parsed_leniently(reply, expected):
    assert parse_examples(reply) == expected


#: Real replies of Qwen2.5-Coder-1.5B-Instruct to LLMAugmenter's prompts, recorded by the real-LLM benchmark.
RECORDED = json.loads((Path(__file__).parent / "data" / "qwen_replies.json").read_text(encoding="utf-8"))["replies"]


def _strict_json(reply: str) -> list[str]:
    """A recorded reply read strictly: its one code fence (if any) removed, then plain ``json.loads``."""
    body = reply.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1].rsplit("```", 1)[0]
    return [(entry["text"] if isinstance(entry, dict) else entry).strip() for entry in json.loads(body)]


@pytest.mark.parametrize("reply", RECORDED, ids=[f"recorded{i}" for i in range(len(RECORDED))])
def test_real_replies_parse_as_their_json_says_even_when_cut_short(reply):
    expected = _strict_json(reply)
    assert len(expected) >= 7 and parse_examples(reply) == expected
    # the same reply cut off as when the reply's token budget runs out: the entries written before the cut
    partial = parse_examples(reply[: len(reply) * 2 // 3])
    assert partial and len(partial) < len(expected) and partial == expected[: len(partial)]


def test_real_replies_through_the_augmenter_keep_every_distinct_example(server, tmp_path):
    replies = iter(RECORDED)
    server.chat_reply = lambda body: next(replies, "[]")  # then empty lists: nothing more to give
    augmenter = make_augmenter(
        server, tmp_path, n_per_class=24, n_per_request=8, threshold=0.0, max_chars=1000, n_concurrent=1
    )
    augmenter.fit_resample(TEXTS, LABELS)
    assert len(chat_requests(server)) >= len(RECORDED) == 6
    written = [text for reply in RECORDED for text in _strict_json(reply)]
    assert sorted(r["text"] for r in augmenter.generations_) == sorted(written)
    distinct = len({" ".join(text.casefold().split()) for text in written})
    assert augmenter.n_generated_ == distinct and augmenter.drop_counts_["duplicate"] == len(written) - distinct
    assert augmenter.drop_counts_["unparseable"] == augmenter.drop_counts_["malformed"] == 0


def test_bad_generations_are_dropped_and_counted_per_reason(server, tmp_path):
    replies = {
        "pos": iter(
            [
                json.dumps(["great new one", "", "great new one", "x" * 200, "love it", 7]),
                "I'd rather not.",  # unparseable; the class stays short after twice the planned requests
            ]
        ),
        "neg": iter(
            [
                json.dumps(["awful new one", "bad , REALLY  bad", "awful other one"]),
                # a demonstration barely reworded is a near-copy; sharing two words of three is not
                json.dumps(["awful third one", "The worst acting!", "awful plot twist", "awful fourth one"]),
            ]
        ),
    }
    server.chat_reply = lambda body: next(replies[requested(body)[1]])
    augmenter = make_augmenter(server, tmp_path, n_per_class=3, n_per_request=6, threshold=0)
    X_res, y_res = augmenter.fit_resample(TEXTS, LABELS)
    counts = augmenter.drop_counts_
    assert counts["unparseable"] == 1
    assert {
        k: counts[k] for k in ("empty", "duplicate", "too_long", "gold_copy", "near_copy", "malformed", "surplus")
    } == {
        "empty": 1,
        "near_copy": 1,
        "duplicate": 1,
        "too_long": 1,
        "gold_copy": 2,
        "malformed": 1,
        "surplus": 2,  # "awful plot twist" and "awful fourth one": only 3 were requested
    }
    assert sorted(X_res[10:]) == ["awful new one", "awful other one", "awful third one", "great new one"]
    reasons = [r["reason"] for r in augmenter.generations_]
    assert reasons.count("kept") == 4 and len(reasons) == 6 + 3 + 4


def test_a_generator_that_never_answers_usably_stops_after_twice_the_planned_requests(server, tmp_path):
    server.chat_reply = lambda body: "no JSON here"
    augmenter = make_augmenter(server, tmp_path, threshold=0)
    X_res, _ = augmenter.fit_resample(TEXTS, LABELS)
    assert X_res == TEXTS
    assert augmenter.drop_counts_["unparseable"] == len(chat_requests(server)) == 2 * 4


# ------------------------------------------------------------------ the switch
def mixed_writer(body):
    """n examples of the label, the last one written with the other label's words."""
    n, label = requested(body)
    other = "neg" if label == "pos" else "pos"
    words = {"pos": "great fun best good", "neg": "awful dull worst bad"}
    tag = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=4).hexdigest()
    return json.dumps([f"{words[label if j < n - 1 else other]} {tag} {j}" for j in range(n)])


class SpyTeacher(ClassifierMixin, BaseEstimator):
    """A word-count logistic regression that records what each clone was fitted on and asked to score."""

    fits: list = []
    scored: list = []

    def __init__(self, C=10.0):
        self.C = C

    def fit(self, X, y):
        SpyTeacher.fits.append(list(X))
        self.model_ = word_teacher().set_params(logisticregression__C=self.C).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        SpyTeacher.scored.append(list(X))
        return self.model_.predict_proba(X)


@pytest.fixture
def spy():
    SpyTeacher.fits, SpyTeacher.scored = [], []
    return SpyTeacher


def test_the_switch_keeps_what_the_judge_finds_typical_of_its_class(server, tmp_path):
    server.chat_reply = mixed_writer
    augmenter = make_augmenter(server, tmp_path, cv=None, threshold=0.8, n_per_class=12)
    X_res, y_res = augmenter.fit_resample(TEXTS, LABELS)
    records = augmenter.generations_
    # cv=None: one teacher fitted on the gold examples only
    teacher = word_teacher().fit(TEXTS, LABELS)
    proba = teacher.predict_proba([r["text"] for r in records])
    classes = list(teacher.classes_)
    for label in ("pos", "neg"):
        own = [r["probability"] for r in records if r["label"] == label]
        assert augmenter.class_thresholds_[label] == pytest.approx(0.8 * np.mean(own))
    for record, row in zip(records, proba, strict=True):
        assert record["probability"] == pytest.approx(row[classes.index(record["label"])])
        assert record["kept"] == (record["probability"] >= augmenter.class_thresholds_[record["label"]])
        assert record["reason"] == ("kept" if record["kept"] else "below_threshold")
    flipped = [r for r in records if r["text"].endswith(" 2")]
    assert flipped and not any(r["kept"] for r in flipped)
    assert augmenter.drop_counts_["below_threshold"] == sum(not r["kept"] for r in records) >= len(flipped)
    assert len(X_res) == 10 + sum(r["kept"] for r in records)


def test_out_of_fold_judges_never_saw_the_example_they_judge(server, tmp_path, spy):
    server.chat_reply = mixed_writer
    augmenter = make_augmenter(server, tmp_path, teacher=spy(), cv=3, gold_weight=2, n_per_class=12, threshold=1.0)
    augmenter.fit_resample(TEXTS, LABELS)
    generated = [r["text"] for r in augmenter.generations_]
    assert len(spy.fits) == len(spy.scored) == 3
    for fitted_on, scored in zip(spy.fits, spy.scored, strict=True):
        assert not set(fitted_on) & set(scored)
        # the gold examples, each gold_weight times, and every generation outside the fold
        assert sorted(fitted_on) == sorted(TEXTS * 2 + [t for t in generated if t not in scored])
    assert sorted(t for scored in spy.scored for t in scored) == sorted(generated)
    # the judge learnt from the other generations: the odd one out of each request is rejected
    flipped = [r for r in augmenter.generations_ if r["text"].endswith(" 2")]
    assert flipped and not any(r["kept"] for r in flipped)
    assert sum(r["kept"] for r in augmenter.generations_) >= len(generated) // 2


def test_the_class_thresholds_are_confident_learnings(server, tmp_path):
    server.chat_reply = mixed_writer
    augmenter = make_augmenter(server, tmp_path, cv=2, threshold=1.0, n_per_class=12)
    augmenter.fit_resample(TEXTS, LABELS)
    records = augmenter.generations_
    classes = ["neg", "pos"]
    labels = np.asarray([classes.index(r["label"]) for r in records])
    p = np.asarray([r["probability"] for r in records])
    # two classes: the other column is 1 - p
    pred_probs = np.where(labels[:, None] == np.arange(2), p[:, None], 1 - p[:, None])
    expected = cleanlab_count.get_confident_thresholds(labels, pred_probs)
    assert [augmenter.class_thresholds_[c] for c in classes] == pytest.approx(expected)


def test_threshold_zero_switches_the_filter_off(server, tmp_path, spy):
    augmenter = make_augmenter(server, tmp_path, teacher=spy(), threshold=0, off_task_quantile=None)
    augmenter.fit_resample(TEXTS, LABELS)
    assert spy.fits == [] and augmenter.class_thresholds_ == {} and augmenter.off_task_threshold_ is None
    assert all(math.isnan(r["probability"]) and r["kept"] for r in augmenter.generations_)
    assert all(math.isnan(r["task_similarity"]) for r in augmenter.generations_)


NEWS = "stocks rally as central bank holds rates"


class TopicEmbedder(TransformerMixin, BaseEstimator):
    """Vectors [1, news words...]: every review points the same way, a headline away from it. Counts its fits."""

    fits = 0

    def fit(self, X, y=None):
        TopicEmbedder.fits += 1
        return self

    def transform(self, X):
        words = NEWS.split()
        return np.asarray([[1.0] + [float(w in text.split()) for w in words] for text in X])


def off_task_writer(body):
    """n examples of the label, the last one a news headline."""
    n, label = requested(body)
    examples = json.loads(writer(body))
    tag = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=4).hexdigest()
    return json.dumps(examples[:-1] + [f"{NEWS} {tag}"])


def test_off_task_generations_are_rejected_before_the_label_judge(server, tmp_path, spy):
    server.chat_reply = off_task_writer
    TopicEmbedder.fits = 0
    params = dict(teacher=spy(), embedder=TopicEmbedder(), off_task_quantile=0.02, cv=2, n_per_class=6)
    augmenter = make_augmenter(server, tmp_path, threshold=1.0, **params)
    X_res, _ = augmenter.fit_resample(TEXTS, LABELS)
    records = augmenter.generations_
    off_task = [r for r in records if r["text"].startswith(NEWS)]
    # every gold example is exactly as like the others as the on-task generations; a headline is less so
    assert augmenter.off_task_threshold_ == pytest.approx(1.0)
    assert len(off_task) == augmenter.drop_counts_["off_task"] == 4
    assert all(r["reason"] == "off_task" and not r["kept"] and r["task_similarity"] < 0.5 for r in off_task)
    assert all(r["task_similarity"] == pytest.approx(1.0) for r in records if r not in off_task)
    assert not any(r["kept"] for r in off_task) and not any(t.startswith(NEWS) for t in X_res)
    # the label judge neither learns from nor scores them, and never sees the check's verdict as a label
    judged = [t for batch in spy.fits + spy.scored for t in batch]
    assert judged and not any(t.startswith(NEWS) for t in judged)
    # threshold 0 switches the label judge off, not the off-task check; the similarities are computed once
    spy.fits.clear()
    again = make_augmenter(server, tmp_path, threshold=0, **params)
    again.fit_resample(TEXTS, LABELS)
    assert spy.fits == [] and TopicEmbedder.fits == 1
    assert [r["reason"] for r in again.generations_] == ["off_task" if r in off_task else "kept" for r in records]


def test_the_default_judge_runs_on_the_default_black_box(server, tmp_path):
    augmenter = make_augmenter(server, tmp_path, teacher=None, n_per_class=6, off_task_quantile=0.05)
    augmenter.fit_resample(TEXTS, LABELS)
    checked = [r for r in augmenter.generations_ if r["reason"] != "off_task"]
    assert checked and all(0.0 <= r["probability"] <= 1.0 for r in checked)
    assert all(-1.0 <= r["task_similarity"] <= 1.0 for r in augmenter.generations_)
    assert LLMAugmenter().get_params()["teacher"] is None and LLMAugmenter().embedder is None
    defaults = LLMAugmenter()
    assert (defaults.cv, defaults.gold_weight, defaults.threshold, defaults.off_task_quantile) == (4, 1, 0.5, 0.05)


def test_the_default_judge_is_crosstune_with_the_label_descriptions(server, tmp_path):
    server.chat_reply = mixed_writer
    embedder = BlackBoxEmbedder("openai:test-embed", base_url=server.url, api_key_env=KEY_ENV, store=tmp_path)
    params = dict(teacher=None, embedder=embedder, cv=2, n_per_class=12, threshold=1.0, random_state=3)
    augmenter = make_augmenter(server, tmp_path, **params)
    augmenter.fit_resample(TEXTS, LABELS)
    texts = [r["text"] for r in augmenter.generations_]
    labels = [r["label"] for r in augmenter.generations_]
    # out of fold, each fold's teacher a CrossTune classifier on the embedder's vectors, with the descriptions,
    # seeded by random_state, the gold examples counted once
    teacher = CrossTuneClassifier(embedder, DESCRIPTIONS, random_state=3)
    expected = _judges.out_of_fold_proba(teacher, TEXTS, LABELS, texts, labels, cv=2, gold_weight=1, random_state=3)
    assert [r["probability"] for r in augmenter.generations_] == pytest.approx(expected)
    # the descriptions are part of the judge: without them, other probabilities
    bare = CrossTuneClassifier(embedder, None, random_state=3)
    unlike = _judges.out_of_fold_proba(bare, TEXTS, LABELS, texts, labels, cv=2, gold_weight=1, random_state=3)
    assert [r["probability"] for r in augmenter.generations_] != pytest.approx(unlike)


def search_results(thresholds, means, stds, n_splits=3):
    results = {"param_augment__threshold": thresholds, "mean_test_score": means, "std_test_score": stds}
    return results | {f"split{k}_test_score": means for k in range(n_splits)}


@pytest.mark.parametrize(
    ("means", "chosen"),
    [
        ([0.80, 0.83, 0.70], 0),  # 0.5 wins by less than one standard error (0.06 / sqrt(3)): keep everything
        ([0.70, 0.83, 0.82], 1),  # filtering clearly wins; the lowest threshold close to the best is 0.5
        ([0.70, 0.70, 0.90], 2),  # only the strictest is close to the best
    ],
)
def test_the_cautious_refit_rule_filters_only_when_it_clearly_wins(means, chosen):
    assert lowest_threshold_within_one_se(search_results([0.0, 0.5, 1.0], means, [0.06] * 3)) == chosen


def test_the_cautious_refit_rule_needs_one_threshold_in_the_grid():
    results = search_results([0.0, 0.5], [0.8, 0.8], [0.0, 0.0]) | {"param_clf__C": [1.0, 1.0]}
    del results["param_augment__threshold"]
    with pytest.raises(ValueError, match=r"exactly one parameter named '...threshold'; got \['clf__C'\]"):
        lowest_threshold_within_one_se(results)


def judge_logprobs(body):
    """The generator as judge: "pos" is likely for texts with positive words."""
    text = body["messages"][-1]["content"]
    positive = any(word in text for word in ("great", "fun", "best", "good"))
    return {"pos": -0.05, "neg": -3.0} if positive else {"neg": -0.05, "pos": -3.0}


def judging_server(server):
    server.chat_reply = lambda body: "pos" if body.get("logprobs") else mixed_writer(body)
    server.chat_logprobs = judge_logprobs
    return server


def test_the_generator_can_judge_through_its_log_probabilities(server, tmp_path):
    judging_server(server)
    augmenter = make_augmenter(server, tmp_path, teacher="generator", n_per_class=6, threshold=0.9)
    augmenter.fit_resample(TEXTS, LABELS)
    judged = [r for r in chat_requests(server) if r.body.get("logprobs")]
    records = augmenter.generations_
    # one request per generated example, with the labels in the instruction and the text as the message
    assert augmenter.n_judge_requests_ == len(judged) == len(records) == 12
    assert sorted(r.body["messages"][-1]["content"] for r in judged) == sorted(r["text"] for r in records)
    instruction = judged[0].body["messages"][0]["content"]
    assert '- "pos": a glowing review' in instruction and '- "neg": a scathing review' in instruction
    assert all(r.body["max_tokens"] == 1 and r.body["top_logprobs"] for r in judged)
    flipped = [r for r in records if r["text"].endswith(" 2")]
    assert flipped and not any(r["kept"] for r in flipped)
    assert all(r["kept"] for r in records if not r["text"].endswith(" 2"))
    expected = 1 / (1 + math.exp(-2.95))
    assert [r["probability"] for r in records if r["kept"]] == pytest.approx([expected] * 8)
    # the judge's answers are stored: a refit in a fresh process sends nothing
    server.reset()
    _judges._memo.clear()
    clone(augmenter).fit_resample(TEXTS, LABELS)
    assert chat_requests(server) == []


def test_labels_of_several_words_are_judged_by_their_numbers(server, tmp_path):
    # "very good" and "very bad" share their first token: the judge numbers the labels and reads the digits
    names = {"pos": "very good", "neg": "very bad"}

    def writer(body):
        n, label = requested(body)
        short = "pos" if label == "very good" else "neg"
        return mixed_writer(
            {**body, "messages": [{"content": f'Write {n} new, diverse examples of the label "{short}"'}]}
        )

    def by_number(body):
        scores = judge_logprobs(body)
        return {"1": scores["neg"], "2": scores["pos"]}  # the classes in sorted order: "very bad", "very good"

    server.chat_reply = lambda body: "1" if body.get("logprobs") else writer(body)
    server.chat_logprobs = by_number
    labels = np.array([names[label] for label in LABELS], dtype=object)
    descriptions = {names[k]: v for k, v in DESCRIPTIONS.items()}
    augmenter = make_augmenter(server, tmp_path, teacher="generator", label_descriptions=descriptions, threshold=0.9)
    augmenter.fit_resample(TEXTS, labels)
    judged = [r for r in chat_requests(server) if r.body.get("logprobs")]
    instruction = judged[0].body["messages"][0]["content"]
    assert '1. "very bad": a scathing review' in instruction and '2. "very good": a glowing review' in instruction
    assert "answer with the number of its label" in instruction
    records = augmenter.generations_
    flipped = [r for r in records if r["text"].endswith(" 2")]
    assert flipped and not any(r["kept"] for r in flipped)
    assert all(r["kept"] for r in records if not r["text"].endswith(" 2"))


@pytest.mark.parametrize(
    ("classes", "words"),
    [
        (["negative", "positive"], ["negative", "positive"]),
        (["world", "sports", "business", "science/technology"], ["1", "2", "3", "4"]),
        (["very negative", "negative", "neutral", "positive", "very positive"], ["1", "2", "3", "4", "5"]),
        ([0, 1, 2], ["1", "2", "3"]),  # digits are no words: numbered 1..3, never the ambiguous "0"
        ([f"intent {i}" for i in range(12)], [f"intent {i}" for i in range(12)]),  # more than 9: names
    ],
)
def test_each_class_answers_with_one_word_of_its_own(classes, words):
    assert _judges.answer_words(classes) == words


def test_the_generator_as_judge_needs_an_api_model(tmp_path):
    augmenter = LLMAugmenter("/some/local/model", teacher="generator", store=None)
    with pytest.raises(ValueError, match="teacher='generator' needs an 'openai:<name>' model"):
        augmenter.fit_resample(TEXTS, LABELS)


# --------------------------------------------------------------- cache and cost
def test_a_grid_over_threshold_sends_no_new_request_and_fits_no_teacher_twice(server, tmp_path, spy):
    embedder = BlackBoxEmbedder("openai:test-embed", base_url=server.url, api_key_env=KEY_ENV, store=tmp_path)

    def search(thresholds, cache):
        server.reset()
        _judges._memo.clear()
        spy.fits.clear()
        pipe = Pipeline(
            [
                ("augment", make_augmenter(server, tmp_path, teacher=spy(), cv=2, store=tmp_path / cache)),
                ("clf", CrossTuneClassifier(embedder, DESCRIPTIONS, max_epochs=10, cv=0, random_state=0)),
            ]
        )
        cv = StratifiedKFold(2, shuffle=True, random_state=0)
        grid = GridSearchCV(pipe, {"augment__threshold": thresholds}, cv=cv).fit(TEXTS, LABELS)
        return grid, len(chat_requests(server)), len(spy.fits)

    _, one, fits_one = search([0.5], "a")
    grid, three, fits_three = search([0.5, 0.8, 1.0, 1.2], "b")
    # two training folds and the refit, each with its own prompts and cv=2 teachers; nothing more for more thresholds
    assert one == three == 3 * 4
    assert fits_one == fits_three == 3 * 2
    assert grid.best_params_["augment__threshold"] in (0.5, 0.8, 1.0, 1.2)
    _, again, _ = search([0.5, 0.8, 1.0, 1.2], "b")
    assert again == 0
    assert grid.predict(["great fun"]).shape == (1,)


def test_a_run_killed_halfway_repays_nothing_already_received(server, tmp_path):
    server.push(None, None, unauthorized())
    augmenter = make_augmenter(server, tmp_path, n_concurrent=1)
    with pytest.raises(BlackBoxError):
        augmenter.fit_resample(TEXTS, LABELS)
    assert len(chat_requests(server)) == 3
    server.reset()
    augmenter.fit_resample(TEXTS, LABELS)
    assert augmenter.n_requests_ == len(chat_requests(server)) == 2
    assert augmenter.n_cache_hits_ == 2


QUOTA = Fault(
    status=429,
    body={
        "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    },
)


@pytest.mark.parametrize("n_concurrent", [4, 8])
@pytest.mark.parametrize("refusal", [unauthorized(), Fault(status=400), QUOTA], ids=["401", "400", "quota-429"])
def test_a_failed_request_loses_none_of_the_replies_in_flight_beside_it(server, tmp_path, n_concurrent, refusal):
    # 16 requests; the second to arrive is refused while the others of the first wave are still being answered
    # (slowly enough that a client starved of CPU has long handled the refusal before a slot frees)
    augmenter = make_augmenter(server, tmp_path, n_concurrent=n_concurrent, n_per_class=24, threshold=0, timeout=30.0)
    server.push(slow(1.5), refusal, *[slow(1.5)] * (n_concurrent - 2))
    with pytest.raises(BlackBoxError):
        augmenter.fit_resample(TEXTS, LABELS)
    # no second wave was sent, and every reply of the requests sent beside the refusal was kept (on a
    # loaded box a request of the first wave may not have left yet when the refusal returns: it is not sent)
    sent = len(chat_requests(server))
    assert 2 <= sent <= n_concurrent
    assert augmenter.n_requests_ == sent - 1
    server.reset()
    X_res, _ = clone(augmenter).fit_resample(TEXTS, LABELS)
    assert len(chat_requests(server)) == 16 - (sent - 1)
    assert len(X_res) == 10 + 2 * 24


def test_max_requests_stops_cleanly_and_uses_what_was_generated(server, tmp_path):
    augmenter = make_augmenter(server, tmp_path, threshold=0, max_requests=3, n_concurrent=1)
    with pytest.warns(UserWarning, match="max_requests=3"):
        X_res, _ = augmenter.fit_resample(TEXTS, LABELS)
    assert len(chat_requests(server)) == augmenter.n_requests_ == 3 and augmenter.budget_exhausted_
    assert len(X_res) == 10 + 3 * 3
    # cached answers are free: a second fit with the same budget completes
    server.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X_res, _ = clone(augmenter).fit_resample(TEXTS, LABELS)
    assert len(chat_requests(server)) == 1 and len(X_res) == 10 + 12


# ---------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    "fault, extra_requests",
    [(malformed_json(), 1), (rate_limited(3), 1), (server_error(500), 1), (server_error(503), 1), (slow(4.0), 1)],
    ids=["malformed-json", "429-retry-after", "500", "503", "slow-past-timeout"],
)
def test_transient_faults_are_retried(server, tmp_path, sleeps, fault, extra_requests):
    server.push(fault)
    augmenter = make_augmenter(server, tmp_path, threshold=0, n_concurrent=1, timeout=1.0)
    X_res, _ = augmenter.fit_resample(TEXTS, LABELS)
    assert len(X_res) == 22
    assert len(chat_requests(server)) == 4 + extra_requests and augmenter.n_requests_ == 4
    assert len(sleeps) == 1
    if fault.status == 429:
        assert sleeps[0] >= 3.0


@pytest.mark.parametrize("status", [400, 401, 403])
def test_refused_requests_raise_at_once_naming_endpoint_and_model_never_the_key(server, tmp_path, status, caplog):

    server.push(Fault(status=status, echo_key=True))
    augmenter = make_augmenter(server, tmp_path, n_concurrent=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(BlackBoxError) as info:
        augmenter.fit_resample(TEXTS, LABELS)
    message = str(info.value)
    assert f"HTTP {status}" in message and server.url in message and "'test-chat'" in message
    assert KEY not in message and KEY not in caplog.text
    assert len(chat_requests(server)) == 1


def test_an_unset_key_variable_is_named(server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        make_augmenter(server, tmp_path).fit_resample(TEXTS, LABELS)


# ------------------------------------------------------------ sklearn contract
def test_pipeline_pickles_without_client_or_key(server, tmp_path, caplog):
    embedder = BlackBoxEmbedder("openai:test-embed", base_url=server.url, api_key_env=KEY_ENV, store=tmp_path)
    pipe = Pipeline(
        [
            ("augment", make_augmenter(server, tmp_path, verbose=True)),
            ("clf", CrossTuneClassifier(embedder, DESCRIPTIONS, max_epochs=10, cv=0, random_state=0)),
        ]
    )
    with caplog.at_level(logging.INFO, logger="skcrosstune"):
        pipe.fit(TEXTS, LABELS)
    n_chat = len(chat_requests(server))
    pipe.predict(["great fun", "awful"])
    assert len(chat_requests(server)) == n_chat  # nothing is generated at prediction
    assert "requests sent" in caplog.text and KEY not in caplog.text
    blob = pickle.dumps(pipe)
    assert KEY.encode() not in blob and b"openai._client" not in blob
    restored = pickle.loads(blob)
    assert (
        restored["augment"].generator_._client is None
        and getattr(restored["augment"].generator_, "_secret", None) is None
    )
    np.testing.assert_array_equal(restored.predict(TEXTS), pipe.predict(TEXTS))
    assert KEY not in repr(pipe) and KEY not in str(pipe.get_params())


def test_clone_and_params(tmp_path):
    augmenter = LLMAugmenter("openai:x", threshold=0.7, teacher=word_teacher(), random_state=3)
    copy = clone(augmenter)
    assert copy.get_params()["threshold"] == 0.7 and copy.get_params()["teacher__logisticregression__C"] == 10.0
    assert not [name for name in copy.get_params() if "key" in name and name != "api_key_env"]


@pytest.mark.parametrize(
    "X, y, error, match",
    [
        (np.zeros((4, 3)), [0, 1, 0, 1], TypeError, "LLMAugmenter takes raw texts"),
        (["a", "b", None, "d"], [0, 1, 0, 1], ValueError, "missing value"),
        (["a", "b", "c", "d"], [0, 0, 0, 0], ValueError, "only one class"),
        (["a", "b", "c"], [0, 1, 0, 1], ValueError, "4 labels for 3 inputs"),
    ],
)
def test_bad_input_is_named(server, tmp_path, X, y, error, match):
    with pytest.raises(error, match=match):
        make_augmenter(server, tmp_path).fit_resample(X, y)
    assert not chat_requests(server)


# ------------------------------------------------- imbalanced-learn's sampler checks
_NUMERIC = "feeds numeric arrays; LLMAugmenter takes raw texts and refuses numbers by design"
#: imbalanced-learn's checks that fail by design, with the test of this module that covers the promise instead.
IMBLEARN_EXPECTED_FAILURES = {
    "check_target_type": f"{_NUMERIC}: X is refused before y is read (bad targets: test_bad_input_is_named)",
    "check_samplers_one_label": f"{_NUMERIC} (one class: test_bad_input_is_named)",
    "check_samplers_fit": f"{_NUMERIC} (test_n_per_class_or_sampling_strategy)",
    "check_samplers_fit_resample": f"{_NUMERIC} (test_returns_the_gold_data_then_the_kept_generated_examples)",
    "check_samplers_sampling_strategy_fit_resample": f"{_NUMERIC} (test_n_per_class_or_sampling_strategy)",
    "check_samplers_pandas": f"{_NUMERIC} (test_the_container_type_is_kept)",
    "check_samplers_pandas_sparse": f"{_NUMERIC} (no sparse input: texts)",
    "check_samplers_list": f"{_NUMERIC} (test_returns_the_gold_data_then_the_kept_generated_examples)",
    "check_samplers_multiclass_ova": f"{_NUMERIC} (one-vs-all targets: test_bad_input_is_named)",
    "check_samplers_preserve_dtype": f"{_NUMERIC} (texts stay an object array: test_the_container_type_is_kept)",
    "check_samplers_sample_indices": f"{_NUMERIC} (no sample_indices_: generated rows have no source index)",
    "check_samplers_2d_target": f"{_NUMERIC} (test_bad_input_is_named)",
}


@parametrize_with_imblearn_checks(
    [
        LLMAugmenter(
            "openai:test-chat",
            api_key_env=KEY_ENV,
            teacher=word_teacher(),
            n_per_class=4,
            n_per_request=4,
            store=None,
            max_retries=0,
            random_state=0,
        )
    ],
    expected_failed_checks=lambda estimator: IMBLEARN_EXPECTED_FAILURES,
)
def test_imblearn_sampler_checks(estimator, check, server):
    # every request goes to the local server: nothing leaves 127.0.0.1
    check(estimator.set_params(base_url=server.url))


def test_text_input_is_declared_in_the_tags():
    tags = LLMAugmenter().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array and not tags.input_tags.sparse


def test_refusing_numbers_names_the_augmenter(server, tmp_path):
    with pytest.raises(TypeError, match="numeric array") as info:
        make_augmenter(server, tmp_path).fit_resample(np.random.default_rng(0).random((6, 2)), [0, 1] * 3)
    assert "LLMAugmenter" in str(info.value) and "embedder" not in str(info.value)
    assert not chat_requests(server)


# ------------------------------------------------------------ local generator
def test_a_local_causal_lm_generates_through_the_cache(tiny_gpt2, tmp_path, monkeypatch):
    calls = []
    original = LocalChatGenerator.respond

    def counted(self, messages, seed):
        calls.append(seed)
        return original(self, messages, seed=seed)

    monkeypatch.setattr(LocalChatGenerator, "respond", counted)
    augmenter = LLMAugmenter(
        str(tiny_gpt2), n_per_class=2, n_per_request=2, max_tokens=8, threshold=0, device="cpu", random_state=0
    )
    X_res, _ = augmenter.fit_resample(TEXTS, LABELS)
    # a random model writes no JSON: every reply is counted, at most twice the planned requests are made
    assert augmenter.drop_counts_["unparseable"] == augmenter.n_requests_ == len(calls) == 4
    assert X_res == TEXTS
    # the tokenizer counts what was read and written; at most max_tokens written per request
    assert augmenter.n_prompt_tokens_ > 0 and 0 < augmenter.n_completion_tokens_ <= 4 * 8
    assert augmenter.store_counts()["completion_tokens"] == augmenter.n_completion_tokens_
    generator = augmenter.generator_
    first = generator.complete([{"role": "user", "content": "the film"}], seed=1)
    assert isinstance(first, str) and first == generator.complete([{"role": "user", "content": "the film"}], seed=1)
    calls.clear()
    clone(augmenter).fit_resample(TEXTS, LABELS)
    assert calls == []  # every reply came from the cache
    assert generator.fingerprint()["backend"] == "local-chat"


def test_requests_carry_model_temperature_seed_and_token_limit(server, tmp_path):
    make_augmenter(server, tmp_path, temperature=0.7, max_tokens=300).fit_resample(TEXTS, LABELS)
    bodies = [r.body for r in chat_requests(server)]
    assert {b["model"] for b in bodies} == {"test-chat"}
    assert {b["temperature"] for b in bodies} == {0.7} and {b["max_tokens"] for b in bodies} == {300}
    assert len({b["seed"] for b in bodies}) == len(bodies)  # each sample its own seed
    assert all(r.authorization == f"Bearer {KEY}" for r in chat_requests(server))
