"""query_through_store: the one place that decides whether a black-box query is paid for.

For a list of items (texts, or sentence pairs) it answers each unique item
once, in this order:

1. look the items up in the store (:mod:`skcrosstune.stores`);
2. claim the missing ones, so that other threads, processes and machines
   sharing the store wait for this caller's answers instead of paying for
   them again;
3. ask the black box for the claimed items only, in batches (longest first),
   and check every batch (one finite row of the expected width per input,
   plus the caller's own check) *before* storing it;
4. store each batch as soon as it is answered and release its claims, so a
   run killed halfway loses at most the batch in flight;
5. wait, polling with backoff, for the items others are fetching, and take
   over any whose claim ended without an answer (its owner failed, was
   killed, or its lease ran out).

The answers are written into one preallocated array, so the peak memory of a
call is the output plus one batch, not a copy per stage.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from numbers import Real

import numpy as np

from .backends.base import BlackBoxError, Paid, Usage
from .stores.base import Store, StoreError, new_owner

__all__ = [
    "LEASE_SECONDS",
    "WAIT_SECONDS",
    "QueryEstimate",
    "QueryPlan",
    "QueryReport",
    "estimate_queries",
    "plan_queries",
    "query_through_store",
]

#: Seconds a claim on an item being fetched stays valid without renewal. The
#: owner renews its claims every third of this while it queries, so a slow
#: batch keeps them; a killed owner holds up the others for at most this long
#: (on its own machine not at all: a claim whose process is gone is taken
#: over at once).
LEASE_SECONDS = 60.0

#: Seconds a caller waits for answers that others are fetching before it pays
#: for them itself (with a warning): a bound on waiting for a live but stuck owner.
WAIT_SECONDS = 600.0

_LOOKUP_CHUNK = 2000  # keys per store look-up: a look-up holds at most this many answers besides the output
_FIRST_POLL, _LONGEST_POLL = 0.02, 0.5


class ProcessCountersMixin:
    """Query counters that count this process's queries: a loaded (unpickled) estimator starts them at zero.

    A model fitted on one machine and loaded on another has sent nothing
    there yet; carrying the fitting process's counts over would read as
    queries paid by the new one. The store's counters (``store_counts``)
    are the cumulative figures. Also what joblib workers send back: their
    counts stay with the process that made them.
    """

    #: The fitted attributes that count this process's queries.
    _process_counters: tuple[str, ...] = ("n_queries_", "n_cache_hits_", "n_tokens_")

    def __setstate__(self, state):
        super().__setstate__(state)
        for name in self._process_counters:
            if name in self.__dict__:
                setattr(self, name, 0)


@dataclass
class QueryReport:
    """What one call cost: items asked for, unique items, store answers, queries sent, corrupt entries, tokens."""

    n_items: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_queried: int = 0
    n_corrupt: int = 0
    usage: Usage = Usage()
    store_error: StoreError | None = None


def query_through_store(
    items: Sequence[Hashable],
    compute: Callable[[list], np.ndarray],
    *,
    store: Store | None,
    batch_size: int,
    lengths: Callable[[list], Sequence[int]] | None = None,
    validate: Callable[[list, np.ndarray], None] | None = None,
    width: int | None = None,
    dtype=None,
    progress: Callable[[int], object] | None = None,
    concurrency: int = 1,
    store_errors: str = "raise",
) -> tuple[np.ndarray, QueryReport]:
    """Answer ``items`` from the store, asking ``compute`` only for what nobody has paid for.

    Parameters
    ----------
    items : sequence of hashable
        Texts, or ``(text, text_pair)`` tuples. Duplicates are answered once.
    compute : callable
        ``compute(list_of_items) -> ndarray`` of shape (n, ...), one row per
        item: the black-box query; or a :class:`~skcrosstune.backends.base.Paid`
        holding that array and the request's tokens, which are added to the
        store's counters with the items sent.
    store : Store or None
        Where answers are kept and claimed (:func:`skcrosstune.stores.open_store`);
        None keeps nothing (duplicates within the call are still sent once).
    batch_size : int
        Items per call of ``compute``.
    lengths : callable, optional
        ``lengths(items) -> sequence of int``; when given, the items to send
        are sorted longest first (batches pad little).
    validate : callable, optional
        ``validate(batch, rows)`` raises if the rows cannot be the answers of
        ``batch``; called after the built-in checks, before anything is stored.
    width : int, optional
        The expected row width: computed rows of another width are an error,
        stored ones are stale and fetched again. None: the first row seen sets it.
    dtype : dtype, optional
        The output's dtype; None: the first answers'.
    progress : callable, optional
        Called with the number of items after each answered batch.
    store_errors : {"raise", "warn"}, default="raise"
        When the store fails to keep a paid answer (a full disk, a server
        gone for longer than its retries), the answers of the call are
        computed to the end anyway and held in this process, to be written
        at the store's next use; then ``"raise"`` raises the store's error,
        ``"warn"`` returns the answers with the error in the report's
        ``store_error``.
    concurrency : int, default=1
        Batches in flight at once (``compute`` is then called from that many
        threads): for a remote black box whose answers wait on latency more
        than on its throughput. Each answer is still checked and stored as it
        arrives, on the calling thread; after a failure, nothing new is sent
        and the answers in flight are stored before the error is raised.

    Returns
    -------
    answers : ndarray of shape (len(items), ...)
        One row per item, in the order of ``items``.
    report : QueryReport
        What the call cost.

    Raises
    ------
    BlackBoxError
        When the black box answers a batch with the wrong number of rows, the
        wrong width, non-numeric or non-finite values, or ``validate``
        rejects it. Nothing of that batch is stored; earlier batches are.
    """
    answers = _Answers(items, width, dtype)
    report = QueryReport(n_items=len(items), n_unique=len(answers.unique))
    if store is None:
        payer = _Payer(answers, compute, None, None, None, batch_size, lengths, validate, progress, report, concurrency)
        payer.pay(answers.unique)
        return answers.result(), report

    _write_held(store)
    keys = dict(zip(answers.unique, store.keys(answers.unique), strict=True))
    look_up = _LookUp(store, keys, answers, report)
    missing = look_up(answers.unique)
    if missing:
        owner = new_owner()
        payer = _Payer(
            answers, compute, store, owner, keys, batch_size, lengths, validate, progress, report, concurrency
        )
        _claim_and_pay(missing, keys, store, owner, look_up, payer)
    if report.store_error is not None and store_errors == "raise":
        raise report.store_error
    return answers.result(), report


# Answers paid for whose store failed to keep them (a full disk, a server gone past its retries), per store:
# written at the store's next use in this process, so that nothing paid for is lost while the process runs.
_held: dict[tuple, list] = {}
_held_lock = threading.Lock()


def _store_id(store: Store) -> tuple:
    return type(store).__name__, str(store.location), store.digest


def _hold(store: Store, entries: list, sent: int, usage: Usage) -> None:
    with _held_lock:
        _held.setdefault(_store_id(store), []).append((entries, sent, usage))


def _write_held(store: Store) -> None:
    """Write the answers held for ``store`` (those its failure left unwritten); kept held if it fails again."""
    with _held_lock:
        held = _held.pop(_store_id(store), [])
    for position, (entries, sent, usage) in enumerate(held):
        try:
            store.put_many(entries)
            store.add_counts(sent=sent, **usage.counts())
        except StoreError:
            with _held_lock:
                _held.setdefault(_store_id(store), []).extend(held[position:])
            return
    if held:
        warnings.warn(
            f"{sum(len(entries) for entries, _, _ in held)} answers paid for while the store {store.describe()} "
            "could not keep them were written to it now.",
            RuntimeWarning,
            stacklevel=3,
        )


def _claim_and_pay(missing, keys, store, owner, look_up, payer) -> None:
    """Pay for what this caller claims, then wait for (or take over) what others are fetching."""
    granted = set(store.claim([keys[item] for item in missing], owner, LEASE_SECONDS))
    others = [item for item in missing if keys[item] not in granted]
    others += payer.pay_claimed([item for item in missing if keys[item] in granted], look_up)
    deadline = time.monotonic() + WAIT_SECONDS
    delay = _FIRST_POLL
    while others:
        others = look_up(others)
        if not others:
            break
        taken = set(store.claim([keys[item] for item in others], owner, LEASE_SECONDS))
        if taken:
            lost = payer.pay_claimed([item for item in others if keys[item] in taken], look_up)
            others = [item for item in others if keys[item] not in taken] + lost
            continue
        if time.monotonic() > deadline:
            warnings.warn(
                f"{len(others)} inputs claimed by another user of the store {store.describe()} were not answered "
                f"within {WAIT_SECONDS:.0f} s (skcrosstune.cache.WAIT_SECONDS); querying them here.",
                RuntimeWarning,
                stacklevel=4,
            )
            payer.pay(others)
            break
        time.sleep(delay)
        delay = min(delay * 1.5, _LONGEST_POLL)


class _Answers:
    """The output array, filled at the first position of each unique item; repeats are copied at the end."""

    def __init__(self, items: Sequence[Hashable], width: int | None, dtype):
        self.n = len(items)
        self.unique = list(dict.fromkeys(items))  # in order of first appearance
        # each unique item's first position: read backwards, the first one is the last written
        self.first: dict[Hashable, int] = dict(zip(reversed(items), range(self.n - 1, -1, -1), strict=True))
        self.repeated: tuple[np.ndarray, np.ndarray] | None = None  # later positions, and their first ones
        if len(self.unique) < self.n:
            source = self.positions(items)
            later = np.flatnonzero(source != np.arange(self.n))
            self.repeated = (later, source[later])
        self.row_shape = None if width is None else (int(width),)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.out: np.ndarray | None = None

    def positions(self, items: list) -> np.ndarray:
        """The first position of each of ``items`` in the output."""
        return np.fromiter(map(self.first.__getitem__, items), dtype=np.intp, count=len(items))

    def fill(self, at: np.ndarray, rows: np.ndarray) -> None:
        """Write ``rows`` at the first positions ``at`` of their items."""
        if self.out is None:
            self.row_shape = self.row_shape or rows.shape[1:]
            self.out = np.empty((self.n, *self.row_shape), dtype=self.dtype or rows.dtype)
        self.out[at] = rows

    def result(self) -> np.ndarray:
        if self.out is None:
            return np.empty((0, *(self.row_shape or (0,))), dtype=self.dtype or np.float32)
        if self.repeated is not None:
            later, source = self.repeated
            self.out[later] = self.out[source]
        return self.out


class _LookUp:
    """Serve what the store holds, in chunks straight into the output; returns the items still missing."""

    def __init__(self, store: Store, keys: dict, answers: _Answers, report: QueryReport):
        self.store, self.keys, self.answers, self.report = store, keys, answers, report
        self.stale: set = set()  # stored answers refused once (not finite, another width): counted once

    def __call__(self, items: list) -> list:
        answers, report = self.answers, self.report
        missing = []
        hits = 0
        for start in range(0, len(items), _LOOKUP_CHUNK):
            chunk = items[start : start + _LOOKUP_CHUNK]
            blocks, n_corrupt = self.store.get_stacked(list(map(self.keys.__getitem__, chunk)))
            report.n_corrupt += n_corrupt
            served = np.zeros(len(chunk), dtype=bool)
            first_at = answers.positions(chunk) if blocks else None
            for positions, block in blocks:
                if answers.row_shape is None:
                    answers.row_shape = block.shape[1:]
                good = _usable(block, answers.row_shape)
                for position in positions[~good]:  # stored answers that cannot be right: counted once
                    if chunk[position] not in self.stale:
                        self.stale.add(chunk[position])
                        report.n_corrupt += 1
                if good.any():
                    answers.fill(first_at[positions[good]], block if good.all() else block[good])
                    served[positions[good]] = True
                    hits += int(good.sum())
            missing += [chunk[i] for i in np.flatnonzero(~served)]
        if hits:
            report.n_cached += hits
            self.store.add_counts(hits=hits)
        return missing


def _usable(block: np.ndarray, row_shape: tuple | None) -> np.ndarray:
    """Which stored rows can be answers: finite numbers of the expected shape (others are stale, asked again)."""
    if block.dtype.kind in "fiu" and (row_shape is None or block.shape[1:] == row_shape):
        return np.isfinite(block.reshape(len(block), -1)).all(axis=1)
    return np.zeros(len(block), dtype=bool)


@dataclass
class QueryPlan:
    """What :func:`query_through_store` would send for some items, as the store stands now."""

    n_items: int
    n_unique: int
    n_stored: int
    to_send: list


def plan_queries(items: Sequence[Hashable], store: Store | None, *, width: int | None = None) -> QueryPlan:
    """The items a query would pay for: the unique ones the store cannot answer. Nothing is sent or counted.

    The store's answers are read and checked as a query reads them (a
    corrupt or stale entry counts as one to send), so, with no other user
    paying in between, ``to_send`` is exactly what the query then sends.

    Parameters
    ----------
    items : sequence of hashable
        Texts, or ``(text, text_pair)`` tuples.
    store : Store or None
        None: every unique item is sent.
    width : int, optional
        The expected row width (stored rows of another width are stale).

    Returns
    -------
    plan : QueryPlan
    """
    unique = list(dict.fromkeys(items))
    if store is None:
        return QueryPlan(len(items), len(unique), 0, unique)
    row_shape = None if width is None else (int(width),)
    to_send = []
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        blocks, _ = store.get_stacked(store.keys(chunk))
        served = np.zeros(len(chunk), dtype=bool)
        for positions, block in blocks:
            row_shape = row_shape or block.shape[1:]
            served[positions[_usable(block, row_shape)]] = True
        to_send += [chunk[i] for i in np.flatnonzero(~served)]
    return QueryPlan(len(items), len(unique), len(unique) - len(to_send), to_send)


@dataclass(frozen=True)
class QueryEstimate:
    """What a call would send, before anything is sent: inputs, and their tokens and cost when they can be told.

    Attributes
    ----------
    n_inputs : int
        Inputs the call would look up (repeats included).
    n_unique : int
        Distinct inputs among them.
    n_stored : int
        Distinct inputs the store answers (not sent).
    n_to_send : int
        Distinct inputs that would be sent to the black box and paid for.
    tokens : int or None
        Tokens of the inputs to send, from the local model's tokenizer or
        the ``tokenizer`` given; None when neither can tell.
    cost : float or None
        ``tokens`` at the price given; None without a price or a count.
    """

    n_inputs: int
    n_unique: int
    n_stored: int
    n_to_send: int
    tokens: int | None = None
    cost: float | None = None


def check_price(price_per_1k_tokens):
    """``price_per_1k_tokens`` checked: None, a price >= 0, or a (prompt, completion) pair of them."""
    value = price_per_1k_tokens
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if value is None:
        return None
    if len(parts) in (1, 2) and all(
        isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in parts
    ):
        return float(parts[0]) if len(parts) == 1 else (float(parts[0]), float(parts[1]))
    raise ValueError(
        "price_per_1k_tokens must be a price per 1,000 tokens (a number >= 0) or a (prompt, completion) pair of "
        f"them, got {value!r:.60}."
    )


def cost_of(prompt_tokens: int, completion_tokens: int, price) -> float:
    """The cost of tokens at a price checked by :func:`check_price` (one price, or prompt and completion apart)."""
    prompt_price, completion_price = price if isinstance(price, tuple) else (price, price)
    return (prompt_tokens * prompt_price + completion_tokens * completion_price) / 1000.0


def estimate_queries(plans, *, tokenizer=None, price_per_1k_tokens=None) -> QueryEstimate:
    """What the queries of ``plans`` would send, with their tokens and cost where they can be told.

    Parameters
    ----------
    plans : list of (store, items, width, backend)
        The look-ups a call makes. Those sharing one store are one set of
        items: an input two of them ask for is paid once.
    tokenizer : callable, default=None
        ``tokenizer(text)`` giving a text's tokens (a list) or their number;
        None asks each backend (a local model counts its own).
    price_per_1k_tokens : float, default=None

    Returns
    -------
    estimate : QueryEstimate
    """
    price = check_price(price_per_1k_tokens)
    if isinstance(price, tuple):
        raise ValueError("An estimate counts the tokens of the inputs only: give one price_per_1k_tokens.")
    if tokenizer is not None and not callable(tokenizer):
        raise TypeError(f"tokenizer must be a callable giving a text's tokens, got {type(tokenizer).__name__}.")
    merged: dict[int, list] = {}
    for store, items, width, backend in plans:
        slot = merged.setdefault(id(store) if store is not None else -len(merged) - 1, [store, [], width, backend])
        slot[1] += list(items)
        slot[2] = slot[2] or width
    n_inputs = n_unique = n_stored = n_to_send = 0
    tokens: int | None = 0
    for store, items, width, backend in merged.values():
        plan = plan_queries(items, store, width=width)
        n_inputs, n_unique = n_inputs + plan.n_items, n_unique + plan.n_unique
        n_stored, n_to_send = n_stored + plan.n_stored, n_to_send + len(plan.to_send)
        counted = _count_tokens(plan.to_send, backend, tokenizer) if plan.to_send else 0
        tokens = None if tokens is None or counted is None else tokens + counted
    cost = None if price is None or tokens is None else cost_of(tokens, 0, price)
    return QueryEstimate(n_inputs, n_unique, n_stored, n_to_send, tokens, cost)


def _count_tokens(items: list, backend, tokenizer) -> int | None:
    if tokenizer is None:
        count = getattr(backend, "count_tokens", None)
        return None if count is None else count(items)
    total = 0
    for item in items:
        for text in [item] if isinstance(item, str) else item:
            counted = tokenizer(text)
            total += counted if isinstance(counted, int) else len(counted)
    return total


class _Payer:
    """Send items to the black box in batches; check, store and release each batch as it returns."""

    def __init__(
        self, answers, compute, store, owner, keys, batch_size, lengths, validate, progress, report, concurrency=1
    ):
        self.answers, self.compute, self.store, self.owner, self.keys = answers, compute, store, owner, keys
        self.batch_size, self.lengths, self.validate = batch_size, lengths, validate
        self.progress, self.report, self.concurrency = progress, report, concurrency
        self._written: list = []  # the batches this call stored (their rows are in the output)

    def pay_claimed(self, items: list, look_up: _LookUp) -> list:
        """Pay for claimed items, first serving any answered between the look-up and the claim.

        Returns the items whose claims this caller lost while it could not
        renew them (a process paused past its lease: another took them over),
        for the caller to wait for rather than pay for again.
        """
        if not items:
            return []
        keys = self.keys
        try:
            missing = look_up(items)
        except BaseException:
            self.store.release([keys[item] for item in items], self.owner)
            raise
        answered = set(items).difference(missing)
        if answered:
            self.store.release([keys[item] for item in answered], self.owner)
        with _LeaseKeeper(self.store, self.owner, [keys[item] for item in missing]) as lease:
            return self.pay(missing, lease=lease, look_up=look_up)

    def pay(self, items: list, *, lease: _LeaseKeeper | None = None, look_up: _LookUp | None = None) -> list:
        """Send ``items`` in batches; returns those whose claims were lost meanwhile (see :meth:`_revalidate`)."""
        if self.lengths is not None and len(items) > self.batch_size:
            order = np.argsort(-np.asarray(self.lengths(items)), kind="stable")
            items = [items[i] for i in order]
        batches = self._batches(items)
        lost: list = []
        if self.concurrency <= 1 or len(batches) <= 1:
            while batches:
                if lease is not None and look_up is not None and lease.lapsed():
                    batches = self._revalidate(batches, lease, look_up, lost)
                    if not batches:
                        break
                batch = batches.pop(0)
                self._settle(batch, self.compute(batch), lease)
            return lost
        # Up to `concurrency` requests in flight; each answer is checked, stored and released here, on the
        # calling thread, as it arrives. After a failure nothing new is sent, but every request already in
        # flight is awaited and its answer stored: it has been paid for.
        queue, pending, failure = list(reversed(batches)), {}, None
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="skcrosstune-query") as pool:
            while pending or (queue and failure is None):
                if queue and lease is not None and look_up is not None and lease.lapsed():
                    queue = list(reversed(self._revalidate(list(reversed(queue)), lease, look_up, lost)))
                while queue and failure is None and len(pending) < self.concurrency:
                    batch = queue.pop()
                    pending[pool.submit(self.compute, batch)] = batch
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    batch = pending.pop(future)
                    try:
                        self._settle(batch, future.result(), lease)
                    except BaseException as exc:  # noqa: BLE001 - raised below, once the others are stored
                        failure = failure or exc
        if failure is not None:
            raise failure
        return lost

    def _batches(self, items: list) -> list[list]:
        return [items[start : start + self.batch_size] for start in range(0, len(items), self.batch_size)]

    def _revalidate(self, batches: list[list], lease: _LeaseKeeper, look_up: _LookUp, lost: list) -> list[list]:
        """The batches still to pay for, after this caller's claims lapsed (its process was paused, say).

        Another user of the store may meanwhile have taken the claims over
        and paid: what the store now holds is served from it, the claims
        are made again, and the items someone else now holds are added to
        ``lost`` (waited for by the caller, not paid for again).
        """
        keys = self.keys
        remaining = [item for batch in batches for item in batch]
        missing = look_up(remaining)
        answered = set(remaining).difference(missing)
        if answered:
            lease.done([keys[item] for item in answered])
        held = set(self.store.claim([keys[item] for item in missing], self.owner, LEASE_SECONDS))
        lease.renewed()
        gone = [item for item in missing if keys[item] not in held]
        lease.forget([keys[item] for item in gone])
        lost += gone
        return self._batches([item for item in missing if keys[item] in held])

    def _settle(self, batch: list, rows, lease: _LeaseKeeper | None) -> None:
        """Count, check and store one answered batch, release its claims and fill its rows in."""
        usage = Usage()
        if isinstance(rows, Paid):
            rows, usage = rows
        self.report.n_queried += len(batch)
        self.report.usage += usage
        counted = self._count(len(batch), usage)  # before the check: an unusable answer was paid for too
        rows = self._check(batch, rows)
        if self.store is not None:
            batch_keys = [self.keys[item] for item in batch]
            entries = list(zip(batch_keys, rows, strict=True))
            if self.report.store_error is None:
                try:
                    replaced = getattr(self.store, "replacements", 0)
                    self.store.put_many(entries)
                    if getattr(self.store, "replacements", 0) != replaced:  # the file was deleted under us
                        self._write_again()
                    self._written.append(batch)
                    entries = []
                except StoreError as exc:  # paid for: held, and the call goes on without writing
                    self.report.store_error = exc
            if entries or not counted:
                _hold(self.store, entries, 0 if counted else len(batch), Usage() if counted else usage)
            if lease is not None:
                lease.done(batch_keys)
        self.answers.fill(self.answers.positions(batch), rows)
        if self.progress is not None:
            self.progress(len(batch))

    def _write_again(self) -> None:
        """Store this call's earlier answers again: the file they were written to was deleted or replaced."""
        out = self.answers.out
        for batch in self._written:
            rows = out[self.answers.positions(batch)]
            self.store.put_many(zip([self.keys[item] for item in batch], rows, strict=True))

    def _count(self, n_sent: int, usage: Usage) -> bool:
        """Add a paid batch to the store's counters; False when the store failed (the counts are then held)."""
        if self.store is None:
            return True
        if self.report.store_error is None:
            try:
                self.store.add_counts(sent=n_sent, **usage.counts())
                return True
            except StoreError as exc:
                self.report.store_error = exc
        return False

    def _check(self, batch: list, rows) -> np.ndarray:
        """The rows as an array, if they can be the answers of ``batch``; else a clear error."""
        problem = None
        try:
            rows = np.asarray(rows)
        except (ValueError, TypeError):
            problem = "rows of different lengths or types"
        if problem is None and rows.dtype.kind not in "fiu":
            problem = f"values of type {rows.dtype} instead of numbers"
        elif problem is None and (rows.ndim < 2 or len(rows) != len(batch)):
            problem = f"an array of shape {rows.shape} for {len(batch)} inputs"
        elif problem is None and self.answers.row_shape is not None and rows.shape[1:] != self.answers.row_shape:
            problem = f"rows of shape {rows.shape[1:]} where {self.answers.row_shape} was expected"
        elif problem is None:
            bad = np.flatnonzero(~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1))
            if len(bad):
                first = _preview(batch[bad[0]])
                problem = f"non-finite values (NaN or infinity) for {len(bad)} inputs, the first {first}"
        if problem is not None:
            raise BlackBoxError(f"The black box answered {problem}; nothing of this batch was stored.")
        if self.validate is not None:
            self.validate(batch, rows)
        return rows


def _preview(item) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


class _LeaseKeeper:
    """Renews an owner's claims every third of the lease while its batches run; releases what is left at the end."""

    def __init__(self, store: Store, owner: str, keys: list[str]):
        self.store, self.owner = store, owner
        self.pending = set(keys)
        self.renewed_at = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="skcrosstune-lease", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        if self.pending:
            self._thread.start()
        return self

    def done(self, keys: list[str]) -> None:
        with self._lock:
            self.pending.difference_update(keys)
        try:
            self.store.release(keys, self.owner)
        except StoreError:  # a store that failed: the claims lapse with their lease
            pass

    def forget(self, keys: list[str]) -> None:
        """Stop renewing claims another caller now holds (they are theirs to release)."""
        with self._lock:
            self.pending.difference_update(keys)

    def renewed(self) -> None:
        self.renewed_at = time.monotonic()

    def lapsed(self) -> bool:
        """Whether the claims went unrenewed for half a lease: others may have taken them over.

        The monotonic clock runs on while a process is stopped (Ctrl-Z, a
        closed laptop lid, a paused VM), so a resumed process sees the gap.
        """
        return time.monotonic() - self.renewed_at > LEASE_SECONDS / 2

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            if self.lapsed():  # the process was stopped: the payer claims again, and learns what it lost
                continue
            with self._lock:
                keys = list(self.pending)
            try:
                self.store.extend(keys, self.owner, LEASE_SECONDS)
                self.renewed()
            except Exception:  # noqa: BLE001 - a missed renewal only lets another caller take over
                pass

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            left = list(self.pending)
        if left:  # a failure: let the others take over at once
            try:
                self.store.release(left, self.owner)
            except Exception:  # noqa: BLE001 - the claims lapse with their lease; never hide the error being raised
                pass
