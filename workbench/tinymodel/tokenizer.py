"""Byte-level BPE tokenizer trained on GSM8k train, loadable by transformers and vLLM, with Qwen's chat template."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from workbench.tinymodel.corpus import GSM8K_DIR, tokenizer_training_texts

END_OF_TEXT = "<|endoftext|>"
# Qwen3.5's vision placeholders: the checkpoint format names their ids in config.json,
# so the tokenizer carries them even though the cases run text only.
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# ChatML turn markers, appended after the others so ids 0-4 keep the meaning config.json gives them.
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHAT_TOKENS = [IM_START, IM_END]
SPECIAL_TOKENS = [END_OF_TEXT, *VISION_TOKENS, *CHAT_TOKENS]

CHAT_TEMPLATE = """\
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = message.content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') %}
    {%- endif %}
    {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""
"""Qwen3's ChatML shape without a default system message: what `llm.chat` renders upstream's test
prompts with. The training chats (`chat.ChatSample.text`) are this template's output plus the reply."""


QWEN_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}|"""
                          r""" ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
"""Qwen's pre-tokenizer split (single digits, punctuation with its newlines). transformers 5 loads a
`qwen3_5` checkpoint's tokenizer as `Qwen3_5Tokenizer`, which rebuilds the pipeline with this split
and NFC whatever tokenizer.json says; training with the same pipeline makes the ids the model learns
on the ids vLLM feeds it (tests/test_tinymodel.py compares both)."""


def train_tokenizer(vocab_size: int = 4096, gsm8k_dir: Path = GSM8K_DIR) -> Tokenizer:
    """Train the BPE with Qwen's normalizer and pre-tokenizer; deterministic for the same data and vocab size."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_training_texts(gsm8k_dir), trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, out_dir: Path) -> None:
    """Save as a transformers fast tokenizer with the chat template (transformers 5 writes chat_template.jinja)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        additional_special_tokens=CHAT_TOKENS,
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
