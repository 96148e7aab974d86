"""Tiny randomly initialised masked LMs, built offline from configs."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a an it was is movie film great terrible good bad awful fine plot acting story "
    "not very really boring fun funny dull long short love hate best worst actor scene "
    "and or but so too of to in on with for at by this that question answer news sport "
    "business science world yes no maybe true false same different"
).split()
#: The size every tiny model shares: 32-wide, 2 layers, 2 heads.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
CORPUS = [" ".join(WORDS[i : i + 7]) for i in range(0, len(WORDS), 3)] * 4


def make_tiny_masked_lm(kind: str, folder: Path) -> Path:
    """Save a tiny ``kind`` ("bert" or "roberta") masked LM and its tokenizer in ``folder``."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertTokenizerFast,
        RobertaConfig,
        RobertaForMaskedLM,
        RobertaTokenizerFast,
    )

    torch.manual_seed(0)
    folder = Path(folder)
    if kind == "bert":
        vocab = (
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS)) + list("abcdefghijklmnopqrstuvwxyz.,?!")
        )
        vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
        vocab = list(dict.fromkeys(vocab))  # a word that is also a letter ("a") once: ids below the vocabulary size
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = _build(BertTokenizerFast, vocab=str(folder / "vocab.txt"), do_lower_case=True)
        config = BertConfig(
            vocab_size=len(tokenizer),
            **TINY,
            max_position_embeddings=64,
            type_vocab_size=2,
        )
        model = BertForMaskedLM(config)
    elif kind == "roberta":
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(
            CORPUS,
            vocab_size=600,
            min_frequency=1,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        )
        bpe.save_model(str(folder))
        tokenizer = _build(
            RobertaTokenizerFast,
            vocab=str(folder / "vocab.json"),
            merges=str(folder / "merges.txt"),
            model_max_length=64,
        )
        config = RobertaConfig(
            vocab_size=len(tokenizer),
            **TINY,
            max_position_embeddings=66,
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = RobertaForMaskedLM(config)
    else:
        raise ValueError(kind)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _build(cls, **kwargs):
    """Construct a tokenizer from files under transformers 5 (``vocab=``) or 4 (``vocab_file=``)."""
    import inspect

    if "vocab" not in inspect.signature(cls.__init__).parameters:
        kwargs["vocab_file"] = kwargs.pop("vocab")
        if "merges" in kwargs:
            kwargs["merges_file"] = kwargs.pop("merges")
    return cls(**kwargs)


def make_tiny_causal_lm(folder: Path) -> Path:
    """A randomly initialised 2-layer GPT-2 with a small byte-level BPE tokenizer."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS + ['["a", "b"]'], vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(folder))
    tokenizer = _build(GPT2TokenizerFast, vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=TINY["hidden_size"],
        n_layer=TINY["num_hidden_layers"],
        n_head=TINY["num_attention_heads"],
        n_positions=2048,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
