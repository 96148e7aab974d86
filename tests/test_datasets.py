import json
from pathlib import Path

import numpy as np
import pytest

from skcrosstune.datasets import FEWSHOT_SEEDS, list_tasks, load_fewshot, load_full_train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "README.md").exists(),
    reason=f"the benchmark data folder {SHARED} is absent (it sits beside the clone in CI only)",
)


def test_the_bundled_sst2_splits_load_without_any_data_home():
    assert list_tasks() == ["sst2"]
    for seed in FEWSHOT_SEEDS:
        data = load_fewshot("sst2", seed=seed)
        assert len(data.X_train) == len(data.X_dev) == 32 and len(data.X_test) == 872
        assert sorted(set(data.y_train)) == data.labels == ["negative", "positive"]
        assert all(isinstance(t, str) and t for t in data.X_train)
        assert not set(data.X_train) & set(data.X_test)


def test_fewer_shots_are_drawn_reproducibly_per_class_from_the_16_shot_split():
    full = load_fewshot("sst2", shots=16, seed=21)
    for shots in (1, 4):
        a, b = load_fewshot("sst2", shots=shots, seed=21), load_fewshot("sst2", shots=shots, seed=21)
        assert a.X_train == b.X_train and a.X_dev == b.X_dev
        assert len(a.X_train) == len(a.X_dev) == 2 * shots
        assert set(a.X_train) <= set(full.X_train) and set(a.X_dev) <= set(full.X_dev)
        assert all(np.sum(a.y_train == label) == shots for label in a.labels)
    assert load_fewshot("sst2", shots=4, seed=13).X_train != load_fewshot("sst2", shots=4, seed=21).X_train


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(task="imdb"), "Unknown task 'imdb'"),
        (dict(task="sst2", shots=0), "shots must be"),
        (dict(task="sst2", shots=17), "shots must be"),
        (dict(task="sst2", seed=7), "published split seeds"),
    ],
)
def test_bad_requests_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_fewshot(**kwargs)


def test_a_missing_data_home_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fewshot("sst2", data_home=tmp_path / "nowhere")


def test_data_home_from_the_environment(tmp_path, monkeypatch):
    task = tmp_path / "toy"
    (task / "16-13").mkdir(parents=True)
    (task / "meta.json").write_text(json.dumps({"name": "toy", "kind": "pair", "labels": ["no", "yes"]}))
    rows = [{"text": f"p{i}", "text_pair": f"h{i}", "label": ["no", "yes"][i % 2]} for i in range(4)]
    for name in ("16-13/train.jsonl", "16-13/dev.jsonl", "test.jsonl"):
        (task / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setenv("SKCROSSTUNE_DATA", str(tmp_path))
    data = load_fewshot("toy", shots=1)
    assert data.kind == "pair" and len(data.X_train) == 2
    assert all(x in [(f"p{i}", f"h{i}") for i in range(4)] for x in data.X_train)
    with pytest.raises(ValueError, match="no full training set"):
        load_full_train("toy")


@needs_shared
def test_every_shared_task_loads_in_the_documented_layout():
    tasks = list_tasks(SHARED)
    assert len(tasks) == 13 and "goemotions" in tasks  # 12 single-label tasks and a multi-label one
    for task in tasks:
        if task == "goemotions":
            continue
        data = load_fewshot(task, seed=42, data_home=SHARED)
        n_classes = len(data.labels)
        assert len(data.X_train) == 16 * n_classes and sorted(set(data.y_train)) == sorted(data.labels)
        if data.kind == "pair":
            assert all(isinstance(x, tuple) and len(x) == 2 for x in data.X_test[:10])
    X, y = load_full_train("sst2", data_home=SHARED)
    assert len(X) == len(y) == 6920


def _multilabel_task(home):
    task = home / "tags"
    (task / "16-13").mkdir(parents=True)
    meta = {"name": "tags", "kind": "multi", "labels": ["billing", "urgent", "bug"]}
    (task / "labels.json").write_text(json.dumps(meta))
    rows = [
        {"text": "refund me now", "labels": ["billing", "urgent"]},
        {"text": "the app crashes", "labels": ["bug"]},
        {"text": "thanks, all good", "labels": []},
        {"text": "charged twice, and the page is broken", "labels": ["billing", "bug"]},
    ]
    for name in ("16-13/train.jsonl", "16-13/dev.jsonl", "test.jsonl"):
        (task / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return task


def test_a_multi_label_task_loads_as_an_indicator_matrix_in_label_order(tmp_path):
    task = _multilabel_task(tmp_path)
    assert list_tasks(tmp_path) == ["tags"]
    data = load_fewshot("tags", data_home=tmp_path)
    assert data.kind == "multi" and data.labels == ["billing", "urgent", "bug"]
    np.testing.assert_array_equal(data.y_train, [[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    assert data.y_test.shape == (4, 3) and data.X_dev[0] == "refund me now"
    with pytest.raises(ValueError, match="16 shots per label only"):
        load_fewshot("tags", shots=4, data_home=tmp_path)
    (task / "test.jsonl").write_text(json.dumps({"text": "x", "labels": ["spam"]}) + "\n")
    with pytest.raises(ValueError, match=r"test.jsonl:1 names labels \['spam'\]"):
        load_fewshot("tags", data_home=tmp_path)


@needs_shared
def test_goemotions_loads_with_every_label_16_times_or_more():
    data = load_fewshot("goemotions", seed=21, data_home=SHARED)
    assert data.kind == "multi" and len(data.labels) == 7 and data.y_test.shape == (5427, 7)
    assert (data.y_train.sum(0) >= 16).all() and (data.y_dev.sum(0) >= 16).all()
    assert (data.y_train.sum(1) >= 2).any()  # some rows carry several labels


def test_the_readme_main_command_prints_accuracy(capsys):
    from skcrosstune.__main__ import main

    accuracy = main(["--seed", "13"])
    out = capsys.readouterr().out
    assert f"CrossTune accuracy: {accuracy:.4f}" in out and "linear probe accuracy: 0." in out
    assert "DecT accuracy: 0." in out
    assert 0.6 < accuracy <= 1.0  # clearly above chance on SST-2
    # 32 train + 872 test + 2 descriptions, each once; CrossTune and DecT read them from the cache
    assert "black-box queries sent: 906, answered by the cache: 1810" in out
