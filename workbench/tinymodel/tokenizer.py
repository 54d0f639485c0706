"""Byte-level BPE tokenizer trained on GSM8k train, loadable by transformers and vLLM."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from workbench.tinymodel.corpus import GSM8K_DIR, tokenizer_training_texts

END_OF_TEXT = "<|endoftext|>"
# Qwen3.5's vision placeholders: the checkpoint format names their ids in config.json,
# so the tokenizer carries them even though the cases run text only.
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
SPECIAL_TOKENS = [END_OF_TEXT, *VISION_TOKENS]


def train_tokenizer(vocab_size: int = 4096, gsm8k_dir: Path = GSM8K_DIR) -> Tokenizer:
    """Train the BPE; deterministic for the same data and vocab size."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_training_texts(gsm8k_dir), trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, out_dir: Path) -> None:
    """Save as a transformers fast tokenizer (tokenizer.json + tokenizer_config.json)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=2048,
    )
    fast.save_pretrained(str(out_dir))
