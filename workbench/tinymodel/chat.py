"""Chat-format training samples, so prompts rendered through the checkpoint's chat template get sensible replies.

Why: the workbench sends its output-match prompts through `llm.chat` as upstream's MTP test does, so
the stand-in must answer ChatML turns: upstream's "repeat the word" instruction and a 5-shot GSM8k
prompt sent as one user message. Every sample is `tokenizer.CHAT_TEMPLATE`'s rendering of one user
turn with the generation prompt, followed by the reply and `<|im_end|>`. The user turn is context
only (the trainer masks it out of the losses): the 5-shot chat's message is the completion prompt
itself, and a model taught to end it with `<|im_end|>` ends plain GSM8k completions right after
"Answer:" (seen in a first training of this recipe: every completion was `<|im_end|>`). GSM8k
questions come from the train split only; `tests/test_tinymodel.py` checks that no test question
gets in.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from workbench.correctness.prompts import REPEAT_MESSAGE, REPEAT_WORDS
from workbench.gsm8k.data import NUM_SHOTS, GSM8kItem, build_prompt, few_shot_prefix
from workbench.tinymodel.tokenizer import IM_END, IM_START

UPSTREAM_REPEAT_WORDS: tuple[str, ...] = REPEAT_WORDS
"""The words upstream's `get_test_prompts` draws from; half the repeat samples use them."""

REPEAT_TIMES = 10


@dataclass(frozen=True)
class ChatMix:
    """Chat samples per epoch: beside 4.4 M plain tokens an epoch the default makes 15 % of the tokens chat, so
    GSM8k completion prompts (the majority, and what the eval measures) keep their quality."""

    repeat: int = 3000
    few_shot: int = 450
    question: int = 550


@dataclass(frozen=True)
class ChatSample:
    """One user turn and its reply; `question` is the GSM8k train question it asks (None for repeats)."""

    kind: str
    content: str
    reply: str
    question: str | None = None

    @property
    def prompt(self) -> str:
        """What `llm.chat` sends: context only in training, never a target."""
        return chat_prompt(self.content)

    @property
    def completion(self) -> str:
        """What the model learns to generate after the prompt; generation stops at <|im_end|>."""
        return f"{self.reply}{IM_END}\n"

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def chat_prompt(content: str) -> str:
    """The chat template's rendering of one user turn with the generation prompt."""
    return f"{IM_START}user\n{content}{IM_END}\n{IM_START}assistant\n"


def format_chat(content: str, reply: str) -> str:
    """The chat template's rendering of one user turn (generation prompt added), then the reply and its end."""
    return ChatSample("chat", content, reply).text


def repeat_words(pairs: list[tuple[str, str]]) -> list[str]:
    """Upstream's words plus the lowercase words of GSM8k train questions, so the model learns to copy any word."""
    seen = {word for question, _ in pairs for word in re.findall(r"\b[a-z]{3,10}\b", question)}
    return sorted(seen | set(UPSTREAM_REPEAT_WORDS))


def repeat_sample(word: str) -> ChatSample:
    return ChatSample("repeat", REPEAT_MESSAGE.format(word=word), " ".join([word] * REPEAT_TIMES))


def train_items(pairs: list[tuple[str, str]]) -> list[GSM8kItem]:
    """GSM8k train pairs as items in file order, as `workbench.gsm8k.load_gsm8k('train')` gives them."""
    return [GSM8kItem(index, question, answer) for index, (question, answer) in enumerate(pairs)]


def few_shot_sample(prefix: str, item: GSM8kItem) -> ChatSample:
    """The evaluation's 5-shot prompt as the user message; the reply is what follows "Answer:" in a completion."""
    return ChatSample("few_shot", build_prompt(prefix, item), f" {item.answer}", item.question)


def chat_samples(pairs: list[tuple[str, str]], mix: ChatMix, seed: int) -> list[ChatSample]:
    """One epoch's chat samples, seeded; `pairs` must be GSM8k train (its first 5 items are the shots)."""
    rng = random.Random(seed)
    words = repeat_words(pairs)
    samples = [repeat_sample(rng.choice(UPSTREAM_REPEAT_WORDS) if rng.random() < 0.5 else rng.choice(words))
               for _ in range(mix.repeat)]
    items = train_items(pairs)
    prefix = few_shot_prefix(items, NUM_SHOTS)
    samples += [few_shot_sample(prefix, items[i]) for i in rng.sample(range(NUM_SHOTS, len(items)), mix.few_shot)]
    samples += [ChatSample("question", item.question, item.answer, item.question)
                for item in rng.sample(items, mix.question)]
    return samples
