"""Torch plumbing shared by the backends and the trained heads.

Device resolution lives here so that every part of the package agrees on
what ``device="auto"`` means and on how a model pickled on a GPU machine
comes back on a CPU-only one.
"""

from __future__ import annotations

import re
import warnings

from ._compat import StrOptions

__all__ = [
    "DeviceOptions",
    "autocast_dtype",
    "check_device",
    "predict_logits",
    "resolve_device",
    "torch_seed",
    "train_classifier",
]

_DEVICE_FORMS = "'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index, e.g. 'cuda:1') or 'mps'"
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


def check_device(device, *, name: str = "device") -> str:
    """Check that ``device`` is one of the forms skcrosstune accepts, naming them if not.

    Only the form is checked, not what this machine has: a model configured
    or pickled for a GPU stays usable on a CPU-only machine (see
    :func:`resolve_device`).
    """
    if not isinstance(device, str) or not _DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f"{name} must be {_DEVICE_FORMS}; got {device!r}.")
    return device


class DeviceOptions(StrOptions):
    """The ``_parameter_constraints`` entry of a ``device`` parameter: a form :func:`check_device` accepts.

    A ``StrOptions`` (the constraint kinds scikit-learn's parameter validation
    knows) that also takes ``"cuda:N"``.
    """

    def __init__(self):
        super().__init__({"auto", "cpu", "cuda", "mps"})

    def is_satisfied_by(self, val) -> bool:
        return isinstance(val, str) and _DEVICE_PATTERN.fullmatch(val) is not None

    def __str__(self) -> str:
        return f"a device: {_DEVICE_FORMS}"


def resolve_device(device: str = "auto") -> str:
    """Turn a ``device`` parameter into a torch device string that exists here.

    ``"auto"`` picks CUDA when it is available, else the CPU. An explicit
    CUDA (or MPS) device on a machine without one falls back to the CPU with a
    warning, so a model configured or pickled on a GPU machine still works.
    A device of no accepted form raises a ``ValueError`` naming the forms.
    """
    import torch

    check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"device={device!r} was requested but CUDA is not available here; using the CPU instead.",
            RuntimeWarning,
            stacklevel=2,
        )
        return "cpu"
    if device == "mps" and not torch.backends.mps.is_available():
        warnings.warn(
            "device='mps' was requested but MPS is not available here; using the CPU instead.",
            RuntimeWarning,
            stacklevel=2,
        )
        return "cpu"
    return device


def autocast_dtype(device: str):
    """The reduced precision to autocast to on ``device``, or None for full precision.

    bf16 where the GPU supports it, fp16 on older GPUs; the CPU keeps fp32.
    """
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def torch_seed(random_state) -> int:
    """A torch seed drawn from a scikit-learn ``random_state``."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _stratified_folds(y, n_splits: int, seed: int):
    """Stratified ``(train, validation)`` index pairs, as many folds as the smallest class allows.

    None when fewer than two folds are possible.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    n_splits = min(n_splits, int(np.bincount(np.asarray(y)).min()))
    if n_splits < 2:
        return None
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(y)), y))


def _multilabel_folds(Y, n_splits: int, seed: int):
    """``(train, validation)`` index pairs for a label-indicator matrix, each label spread over the folds.

    Each row is stratified by its rarest label (a row without labels by "none"),
    so every fold holds some of each label's rows; as many folds as the
    rarest label's rows allow. None when fewer than two folds are possible.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    Y = np.asarray(Y) > 0
    counts = Y.sum(axis=0)
    rarest = np.where(Y.any(axis=1), np.argmin(np.where(Y, counts, np.inf), axis=1), -1)
    n_splits = min(n_splits, int(counts.min()), int(np.bincount(rarest + 1)[np.unique(rarest + 1)].min()))
    if n_splits < 2:
        return None
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(Y)), rarest))


def train_classifier(
    make_module,
    X,
    y,
    *,
    max_epochs: int,
    learning_rate: float,
    weight_decay: float,
    batch_size: int | None,
    cv: int,
    n_iter_no_change: int,
    device: str,
    seed: int,
    no_decay: tuple = (),
    epochs_without_cv: int | None = None,
    paired: bool = False,
    out_of_fold: dict | None = None,
    multilabel: bool = False,
    verbose: bool = False,
):
    """Train a classification head with cross-entropy; the shared loop of every method.

    With ``cv >= 2`` the number of epochs is chosen by stratified ``cv``-fold
    cross-validation on the training data (the epoch with the lowest mean
    held-out loss, epoch 0, the untrained module, included), and the module
    is then retrained from the same initialisation on all the data for that
    many epochs. So a head initialised at a prior (zero-shot) moves away from
    it only as far as held-out data supports.

    Parameters
    ----------
    make_module : callable
        ``make_module(X_train, y_train) -> torch.nn.Module`` mapping features
        to class logits, given the rows it will be trained on (CPU tensors) for
        data-dependent initialisation. Called under a fixed seed, so the same
        rows always give the same initial module.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Class indices. With ``cv < 2``, also of shape (n_samples, n_heads)
        for a module whose logits are (n_samples, n_classes, n_heads):
        independent heads trained side by side on the same batches.
    max_epochs : int
        Upper bound on passes over the data; 0 returns the untrained module.
    learning_rate, weight_decay : float
        AdamW settings; decay applies to every parameter whose name does not
        start with one of ``no_decay``.
    batch_size : int or None
        Mini-batch size; None for full batches.
    cv : int
        Folds used to choose the number of epochs (fewer when the smallest
        class has fewer examples).
    n_iter_no_change : int
        Epochs without a better held-out loss before a fold stops; with
        more than two mini-batches per epoch, a fold also stops after three
        epochs and ``2 * n_iter_no_change`` gradient steps without one (see
        :func:`_patience_runs_out`).
    device : str
        A device that exists (see :func:`resolve_device`).
    seed : int
        Seeds initialisation, shuffling and dropout.
    no_decay : tuple of str
        Parameter-name prefixes exempt from weight decay.
    epochs_without_cv : int or None
        Epochs to train when ``cv >= 2`` but a class has a single example, so
        nothing can be validated; None means ``max_epochs`` (as does
        ``cv < 2``, which asks for no validation). A module
        initialised at a trusted prior passes 0: with nothing to validate
        against, it keeps the prior.
    paired : bool
        Measure how far an epoch's held-out loss is from the best one by the
        standard error of the per-example differences (the same examples
        score every epoch) rather than by the spread of the best epoch's
        losses; see :func:`_simplest_within_one_standard_error`.
    out_of_fold : dict or None
        When given, it holds ``"summarizer"``: ``summarizer(train, validation)``
        is called at the start of each fold with its index arrays and returns
        a function of that fold's held-out logits (a numpy array) after an
        epoch, whose result (what the caller needs of them, e.g. which rows
        some candidate addition to the model gets right) is kept for every
        epoch until the number of epochs is chosen; the logits themselves are
        not kept. When the epochs are chosen by cross-validation, the dict is
        then filled with ``"folds"``, the ``(train, validation)`` index
        pairs, and ``"summaries"``, each fold's summary after the chosen
        number of epochs (after its last one when it stopped sooner): of the
        held-out predictions of the model as chosen. Left so otherwise.
    multilabel : bool
        ``y`` is a label-indicator matrix (n_samples, n_labels): each logit
        is a label's own yes/no, trained with binary cross-entropy (an
        example's held-out loss sums it over the labels), and the folds are
        stratified by each row's rarest label.
    verbose : bool
        Show a progress bar over epochs.

    Returns
    -------
    module : torch.nn.Module
        The trained module, in eval mode, on the CPU.
    n_epochs : int
        Epochs of the final training.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    X_all = torch.as_tensor(np.asarray(X, dtype=np.float32))
    y_all = torch.as_tensor(np.asarray(y, dtype=np.float32 if multilabel else np.int64))
    criterion = _binary_cross_entropy if multilabel else torch.nn.functional.cross_entropy

    def build(train_idx):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make_module(X_all[train_idx], y_all[train_idx]).to(device)

    def run(train_idx, epochs, valid_idx=None):
        module = build(train_idx)
        decay = [p for n, p in module.named_parameters() if not n.startswith(no_decay)]
        rest = [p for n, p in module.named_parameters() if n.startswith(no_decay)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=learning_rate,
        )
        generator = torch.Generator().manual_seed(seed)
        Xt, yt = X_all[train_idx].to(device), y_all[train_idx].to(device)
        size = len(train_idx) if batch_size is None else batch_size
        steps = steps_per_epoch(len(train_idx), batch_size)
        losses = []  # per epoch, the loss of each validation example
        summaries, summarize = [], None  # per epoch, what the caller keeps of the held-out logits
        if valid_idx is not None:
            Xv, yv = X_all[valid_idx].to(device), y_all[valid_idx].to(device)
            if out_of_fold is not None:
                summarize = out_of_fold["summarizer"](train_idx, valid_idx)
            losses.append(_losses(module, Xv, yv, summaries, summarize, multilabel))
            means = [losses[0].mean()]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)  # dropout
            bar = tqdm(range(epochs), disable=not verbose, desc="training", unit="epoch", leave=False)
            for _ in bar:
                module.train()
                order = torch.randperm(len(train_idx), generator=generator)
                X_epoch, y_epoch = Xt[order], yt[order]  # one gather an epoch; the batches are slices of it
                for start in range(0, len(order), size):
                    optimizer.zero_grad()
                    batch = slice(start, start + size)
                    loss = criterion(module(X_epoch[batch]), y_epoch[batch])
                    loss.backward()
                    optimizer.step()
                if valid_idx is not None:
                    losses.append(_losses(module, Xv, yv, summaries, summarize, multilabel))
                    means.append(losses[-1].mean())
                    if _patience_runs_out(len(means) - 1 - int(np.argmin(means)), steps, n_iter_no_change):
                        break
        return module.eval().cpu(), (losses, summaries)

    everything = np.arange(len(y_all))
    with _small_work_threads(device):
        folds = None
        if max_epochs > 0 and cv >= 2:
            folds = _multilabel_folds(y, cv, seed) if multilabel else _stratified_folds(y, cv, seed)
        return _select_and_train(
            run, everything, folds, cv, max_epochs, epochs_without_cv, paired, out_of_fold, multilabel
        )


def _binary_cross_entropy(logits, Y):
    """Each label's yes/no loss, averaged over labels and examples."""
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(logits, Y)


def _select_and_train(
    run, everything, folds, cv, max_epochs, epochs_without_cv, paired, out_of_fold=None, multilabel=False
):
    import numpy as np

    n_epochs = max_epochs
    if cv >= 2 and folds is None and epochs_without_cv is not None:
        n_epochs = min(epochs_without_cv, max_epochs)  # too few examples to validate anything
    if folds is not None:
        held_out = [run(train_idx, max_epochs, valid_idx)[1] for train_idx, valid_idx in folds]
        curves = [losses for losses, _ in held_out]
        longest = max(len(c) for c in curves)
        # a fold that stopped early keeps its last (worsening) losses; every example is validated once
        padded = [np.array(c + [c[-1]] * (longest - len(c))) for c in curves]
        losses = np.concatenate(padded, axis=1)
        # multi-label: the lowest mean loss (its per-label sums move slowly over many epochs, and one standard
        # error of them stops the labels before their ranking has formed)
        if multilabel:
            n_epochs = int(np.argmin(losses.mean(1)))
        else:
            n_epochs = _simplest_within_one_standard_error(losses, paired=paired)
        if out_of_fold is not None:
            out_of_fold["folds"] = folds
            out_of_fold["summaries"] = [kept[min(n_epochs, len(kept) - 1)] for _, kept in held_out]
    module, _ = run(everything, n_epochs)
    return module, n_epochs


def steps_per_epoch(n_rows: int, batch_size: int | None) -> int:
    """Gradient steps in one epoch over ``n_rows`` rows (``batch_size`` None: the whole set, one step)."""
    return 1 if batch_size is None else -(-n_rows // batch_size)


def _patience_runs_out(epochs_since_best: int, steps_per_epoch: int, n_iter_no_change: int) -> bool:
    """Whether a fold has gone long enough without a better held-out loss to stop.

    Patience is ``n_iter_no_change`` epochs, or, when an epoch is many
    mini-batches, at least three epochs and ``2 * n_iter_no_change`` gradient
    steps. A few-shot training set (one or two mini-batches an epoch) waits
    the full ``n_iter_no_change`` epochs; 1,800 texts in 150 classes in
    batches of 64 (29 steps an epoch) waited three epochs instead of thirty,
    which chose the same epoch on CLINC150's 16-shot split (seed 13) in far
    less time.
    """
    if epochs_since_best >= n_iter_no_change:
        return True
    return epochs_since_best >= 3 and epochs_since_best * steps_per_epoch >= 2 * n_iter_no_change


def _simplest_within_one_standard_error(losses, *, paired: bool = False):
    """The first (simplest) candidate whose mean held-out loss is within one standard error of the best.

    ``losses`` has shape ``(n_candidates, n_validated)``: the loss of every
    held-out example (each validated once, in its fold) for each candidate,
    simplest first; for the number of epochs, the losses after each epoch,
    epoch 0 first. Heads choose other settings with it too (DecT the weight
    of its zero-shot term, CrossTune that of its sub-centroid scores).

    With a handful of validation examples the mean curve is noisy, and its
    plain minimum often picks a long run whose advantage is noise; the
    one-standard-error rule prefers the simplest model the held-out examples
    cannot tell apart from the best (Hastie, Tibshirani and Friedman, *The
    Elements of Statistical Learning*, 7.10). The standard error is taken
    over examples rather than folds: with two or three folds a spread over
    folds says next to nothing.

    With ``paired=True`` the error of each epoch is that of its mean
    difference from the best epoch, example by example. The examples'
    difficulty, which makes the best epoch's own spread wide, cancels in
    the differences: with thousands of held-out examples the unpaired error
    let 150-class training stop at half the epochs its held-out loss
    supported.
    """
    import numpy as np

    mean = losses.mean(axis=1)
    best = int(np.argmin(mean))
    n = losses.shape[1]
    if n < 2:
        return best
    error = (losses - losses[best]).std(axis=1, ddof=1) if paired else losses[best].std(ddof=1)
    return int(np.flatnonzero(mean <= mean[best] + error / np.sqrt(n))[0])


class _small_work_threads:
    """One intra-op thread while training small heads on the CPU.

    A few-shot head's matrices are tiny: thread start-up and synchronisation
    cost more than they save, and on a busy machine two threads were measured
    20 times slower than one. The caller's setting is restored afterwards.
    """

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.previous)
        return False


def _losses(module, X, y, summaries=None, summarize=None, multilabel=False):
    """The cross-entropy of each example, as a numpy array; ``summarize(logits)`` is appended to ``summaries``.

    ``multilabel``: the binary cross-entropy of each label, summed over an example's labels.
    """
    import torch

    module.eval()
    with torch.inference_mode():
        scores = module(X)
        if summarize is not None:
            summaries.append(summarize(scores.cpu().numpy()))
        if multilabel:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, y, reduction="none").sum(1)
        else:
            loss = torch.nn.functional.cross_entropy(scores, y, reduction="none")
        # copied out of torch: keeping the tensor held about 1 MiB per epoch alive (measured at n=6,920)
        return loss.cpu().numpy().copy()


def predict_logits(module, X):
    """The logits of a fitted head (a float64 module on the CPU) for the rows of ``X``, in float64.

    Prediction runs in double precision: float32 matrix products round
    differently for different batch sizes (measured up to 1.7e-6 between a
    full batch and single rows), so a row's prediction would depend on the
    rows predicted with it. In float64 the differences are about 1e-16.
    """
    import numpy as np
    import torch

    with torch.inference_mode():
        return module(torch.as_tensor(np.asarray(X), dtype=torch.float64)).numpy()
