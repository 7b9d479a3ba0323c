"""Real tokenizers with tiny vocabularies, written to disk, for the random-weight adapter tests.

The vocabularies are made here (no download): a CLIP-style byte-level BPE whose vocabulary is the
256 byte symbols, each also with the end-of-word marker, plus the two special tokens (no merges,
so every character is one token); and a BERT WordPiece vocabulary of the special tokens, the
lower-case letters, digits, punctuation and a few whole words.
"""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character table (the published scheme)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def write_clip_tokenizer(folder: Path) -> Path:
    """vocab.json + merges.txt of a CLIP BPE tokenizer (vocab size 514) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


CLIP_VOCAB_SIZE = 514

BERT_WORDS = ("a", "an", "the", "cat", "dog", "car", "person", "what", "is", "in", "on", "of", "picture", "color",
              "how", "many", "there", "yes", "no", "red", "blue", "photo")


def write_bert_vocab(folder: Path) -> Path:
    """vocab.txt of a BERT WordPiece tokenizer (specials, a few words, characters and ## pieces)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(".,?!'-:;()")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, *chars, *("##" + c for c in chars)]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return folder


def bert_vocab_size(folder: Path) -> int:
    return len((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())


def clip_tokenizer(folder: Path):
    """A transformers CLIPTokenizer over the tiny vocabulary (written to ``folder`` first)."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    return CLIPTokenizer(vocab=vocab, merges=[])


def bert_tokenizer(folder: Path):
    """A transformers BertTokenizer over the tiny WordPiece vocabulary (written to ``folder`` first)."""
    from transformers import BertTokenizer

    write_bert_vocab(folder)
    tokens = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
