"""Text generators as black boxes: chat messages in, one reply out.

Two generators share one small protocol: :meth:`ChatGenerator.complete`
answers a list of chat messages with the reply's text, for a given sampling
seed, and :meth:`ChatGenerator.fingerprint` names the model and every
setting that changes its answers (the cache key of a generation starts from
it). An OpenAI-compatible chat-completions endpoint is queried through the
``openai`` client with retries; a local Hugging Face causal LM samples on
this machine.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from .base import Paid, UnusableAnswer, Usage, read_usage
from .local import _load, _load_tokenizer, resolve_model_path, weights_digest
from .openai import OpenAIClient, _describe

__all__ = ["ChatGenerator", "LocalChatGenerator", "OpenAIChatGenerator"]


class ChatGenerator(ABC):
    """Base class of text generators."""

    #: Whether several requests may be in flight at once.
    concurrent = False

    @abstractmethod
    def fingerprint(self) -> dict:
        """Everything that changes the answers: model identity and sampling settings."""

    @abstractmethod
    def complete(self, messages: list[dict], *, seed: int) -> str:
        """The reply to ``messages`` (``[{"role": ..., "content": ...}, ...]``), sampled with ``seed``."""

    def respond(self, messages: list[dict], *, seed: int) -> Paid:
        """:meth:`complete`, with the tokens the request read and wrote (zeros when the generator cannot tell)."""
        return Paid(self.complete(messages, seed=seed), Usage())


class OpenAIChatGenerator(OpenAIClient, ChatGenerator):
    """A chat-completions endpoint speaking the OpenAI protocol.

    Parameters
    ----------
    model : str
        The model name the endpoint knows.
    base_url : str or None
        The endpoint; None uses ``$OPENAI_BASE_URL`` or the OpenAI API.
    api_key_env : str or None
        Name of the environment variable holding the key; None for servers
        that need no key.
    temperature : float
    max_tokens : int or None
        Upper bound on the reply's tokens; None leaves it to the server.
    timeout : float
        Seconds before a request counts as failed and is retried.
    max_retries : int
        Retries of rate-limited, failed or timed-out requests.
    """

    concurrent = True

    def __init__(
        self,
        model,
        *,
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        temperature=1.0,
        max_tokens=None,
        timeout=60.0,
        max_retries=5,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self._refuse_credentials_in_parameter()

    def fingerprint(self) -> dict:
        """The endpoint, model and sampling settings."""
        return {
            "backend": "openai-chat",
            "base_url": self.endpoint,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def complete(self, messages: list[dict], *, seed: int) -> str:
        """One chat-completions request, retried on transient faults."""
        return self.respond(messages, seed=seed).answer

    def respond(self, messages: list[dict], *, seed: int) -> Paid:
        """:meth:`complete`, with the prompt and completion tokens of the endpoint's ``usage``."""
        extra = {} if self.max_tokens is None else {"max_tokens": self.max_tokens}
        return self._request(
            lambda client: client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature, seed=seed, **extra
            ),
            "chat-completions",
            check=lambda response: Paid(_reply_text(response), read_usage(response)),
        )


def _reply_text(response) -> str:
    """The first choice's text ("" for no choice or a refusal), or :class:`UnusableAnswer`."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise UnusableAnswer(
            "its choices are not a list" if hasattr(response, "choices") else _describe(response, "a completion")
        )
    if not choices:
        return ""
    content = getattr(getattr(choices[0], "message", None), "content", None)
    if content is not None and not isinstance(content, str):
        raise UnusableAnswer(f"its reply is a {type(content).__name__}, not a text")
    return content or ""


class LocalChatGenerator(ChatGenerator):
    """A Hugging Face causal language model on this machine, sampled for each request.

    Parameters
    ----------
    model : str
        A model folder (written by ``save_pretrained``) or a hub name already
        in the local Hugging Face cache; nothing is downloaded.
    temperature : float
        Sampling temperature; 0 decodes greedily.
    max_tokens : int or None
        New tokens per reply (None: 512).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...

    Notes
    -----
    The messages are rendered with the tokenizer's chat template when it has
    one, else as ``"role: content"`` lines followed by ``"assistant:"``.
    """

    _lock = threading.Lock()

    def __init__(self, model, *, temperature=1.0, max_tokens=None, device="auto"):
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.device = device
        self.path = resolve_model_path(model)
        self._digest = weights_digest(self.path)

    def fingerprint(self) -> dict:
        """The weights digest and sampling settings."""
        return {
            "backend": "local-chat",
            "weights": self._digest,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def complete(self, messages: list[dict], *, seed: int) -> str:
        """Sample one reply; the same seed gives the same reply on the same device."""
        return self.respond(messages, seed=seed).answer

    def count_prompt_tokens(self, messages: list[dict]) -> int:
        """The tokens :meth:`respond` reads for ``messages``, by the tokenizer alone (nothing is generated)."""
        tokenizer = _load_tokenizer(str(self.path))
        return len(tokenizer(_render(tokenizer, messages))["input_ids"])

    def respond(self, messages: list[dict], *, seed: int) -> Paid:
        """:meth:`complete`, with the tokens of the prompt and of the reply, as the tokenizer counts them."""
        import torch

        from .._training import resolve_device

        device = resolve_device(self.device)
        tokenizer, model = _load(str(self.path), "causal_lm", device)
        inputs = tokenizer(_render(tokenizer, messages), return_tensors="pt").to(device)
        sampling = {"do_sample": False}
        if self.temperature > 0:
            sampling = {"do_sample": True, "temperature": self.temperature, "top_k": 0}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            output = model.generate(**inputs, max_new_tokens=self.max_tokens or 512, pad_token_id=pad, **sampling)
        n_prompt = inputs["input_ids"].shape[1]
        reply = output[0, n_prompt:]
        usage = Usage(prompt_tokens=int(n_prompt), completion_tokens=int(reply.shape[0]))
        return Paid(tokenizer.decode(reply, skip_special_tokens=True), usage)


def _render(tokenizer, messages: list[dict]) -> str:
    """The prompt text of chat messages: the tokenizer's chat template, else ``role: content`` lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
