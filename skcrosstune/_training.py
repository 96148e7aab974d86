"""Torch plumbing shared by the backends and the trained heads.

Device resolution lives here so that every part of the package agrees on
what ``device="auto"`` means and on how a model pickled on a GPU machine
comes back on a CPU-only one.
"""

from __future__ import annotations

import warnings

__all__ = ["resolve_device", "autocast_dtype"]


def resolve_device(device: str = "auto") -> str:
    """Turn a ``device`` parameter into a torch device string that exists here.

    ``"auto"`` picks CUDA when it is available, else the CPU. An explicit
    CUDA device on a machine without one falls back to the CPU with a
    warning, so a model configured or pickled on a GPU machine still works.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"device={device!r} was requested but CUDA is not available here; using the CPU instead.",
            RuntimeWarning,
            stacklevel=2,
        )
        return "cpu"
    return str(device)


def autocast_dtype(device: str):
    """The reduced precision to autocast to on ``device``, or None for full precision.

    bf16 where the GPU supports it, fp16 on older GPUs; the CPU keeps fp32.
    """
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
