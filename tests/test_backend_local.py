"""The local backend's own output checks: one finite vector of the hidden size per input, or a clear error."""

import numpy as np
import pytest

from skcrosstune import BlackBoxError
from skcrosstune.backends.local import LocalBackend


@pytest.fixture
def backend(tiny_bert):
    return LocalBackend(str(tiny_bert), device="cpu")


def test_a_forward_pass_gives_finite_rows_of_the_hidden_size(backend):
    rows = backend.encode(["a great film", "dull"])
    assert rows.shape == (2, backend.dimension) and rows.dtype == np.float32 and np.isfinite(rows).all()


@pytest.mark.parametrize(
    "spoil, match",
    [
        (
            lambda rows: np.where(np.arange(rows.size).reshape(rows.shape) == 5, np.nan, rows),
            "vector 0 holds a non-finite",
        ),
        (lambda rows: np.vstack([rows, rows[:1]]), "3 vectors for 2 inputs"),
        (lambda rows: rows[:, :-1], r"wide, not \d+"),
    ],
    ids=["nan", "extra-row", "narrow"],
)
def test_unusable_outputs_raise_naming_the_model(backend, spoil, match):
    rows = backend.encode(["a great film", "dull"])
    with pytest.raises(BlackBoxError, match=f"local model .* gave no usable representations: .*({match})"):
        backend._checked(spoil(rows), 2)


def test_an_overflow_in_half_precision_suggests_the_cpu(backend):
    rows = np.full((1, backend.dimension), np.inf, dtype=np.float32)
    with pytest.raises(BlackBoxError, match="half-precision overflow"):
        backend._checked(rows, 1, half_precision=True)
    with pytest.raises(BlackBoxError, match="non-finite") as info:  # in full precision, no such guess
        backend._checked(rows, 1)
    assert "half-precision" not in str(info.value)
    with pytest.raises(BlackBoxError, match="wide") as info:  # finite rows of another width: no such guess
        backend._checked(np.zeros((1, 3), dtype=np.float32), 1, half_precision=True)
    assert "half-precision" not in str(info.value)
