"""A small GPT-2-style byte-level BPE tokenizer trained here on a fixed corpus (no network), saved as a Hugging Face
tokenizer folder beside a tiny model: gives the tiny models text in and text out for tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

EOS_TOKEN = "<|endoftext|>"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
_CORPUS = ["the quick brown fox jumps over the lazy dog", "a lora adapter learns a low rank update of the weights",
           "hello world, hello loraport", "tokens stream from the model one at a time"]


def train_byte_bpe(folder: str | Path, vocab_size: int) -> int:
    """Write tokenizer.json + tokenizer_config.json of exactly `vocab_size` tokens (the last one `<|endoftext|>`)
    into `folder`; returns the EOS id. Deterministic: the same corpus and size give the same tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 50, trainer)
    tok.add_special_tokens([EOS_TOKEN])
    if tok.get_vocab_size() != vocab_size:
        raise ValueError(f"trained {tok.get_vocab_size()} tokens, wanted {vocab_size} (corpus too small for that many merges?)")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "chat_template": CHAT_TEMPLATE,
    }))
    return vocab_size - 1
