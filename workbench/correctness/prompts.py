"""The prompts of a correctness run: upstream's GSM8k eval prompts and output-match prompt set,
rendered in the format the case asks for.

The output-match set mirrors ``get_test_prompts`` in vllm-project/vllm
``tests/v1/e2e/spec_decode/utils.py``: ``num_prompts // 2`` "repeat the word" prompts
(``random.seed(0)``, one ``random.choice`` of ``["test", "temp", "hello", "where"]`` each, the
instruction an indented multi-line string), then 5-shot GSM8k prompts of the first test
questions, each sent as one user message through ``llm.chat`` and generated greedily for 10
tokens. Repeats are easy for a drafter to predict, GSM8k prompts are not, so both the accepted
and the rejected paths of speculative decoding are exercised.

Formats (`prompt_format`): ``chat`` renders each message with the model's chat template, as
``llm.chat`` does (upstream); ``completion`` sends plain text, for a model without a template: the
repeat instruction dedented with the word appended once, so a base model carries on; ``auto`` is
chat when the tokenizer has a template. The GSM8k eval keeps upstream's completion prompts
(``gsm8k_prompt_format``, upstream's ``use_chat_completions`` off).
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workbench.core.errors import ParamsError
from workbench.gsm8k import NUM_SHOTS, GSM8kItem, build_prompts, load_gsm8k

if TYPE_CHECKING:
    from workbench.core.params import CaseParams

OUTPUT_MATCH_MAX_TOKENS = 10
"""New tokens per output-match prompt, as upstream's ``greedy_sampling()``."""

REPEAT_WORDS: tuple[str, ...] = ("test", "temp", "hello", "where")
"""Upstream's word choices, in its order (the order matters for ``choice``)."""

REPEAT_MESSAGE = (
    "\n"
    "        please repeat the word '{word}' 10 times.\n"
    "        give no other output than the word at least ten times in a row,\n"
    "        in lowercase with spaces between each word and without quotes.\n"
    "        "
)
"""Upstream's user message, byte for byte: an f-string indented inside its test (leading newline,
eight-space indents, and the indent before the closing quotes)."""

REPEAT_TEMPLATE = (
    "please repeat the word '{word}' 10 times.\n"
    "give no other output than the word at least ten times in a row,\n"
    "in lowercase with spaces between each word and without quotes.\n"
    "{word}"
)
"""The completion format's text: upstream's instruction dedented, then the word once so a base model carries on."""

PromptKind = Literal["repeat", "gsm8k"]
PromptFormat = Literal["chat", "completion"]


@dataclass(frozen=True)
class OutputMatchPrompt:
    """One prompt with its kind (matches are reported per kind), in both formats' source forms."""

    kind: PromptKind
    text: str
    """The completion-format prompt."""
    message: str
    """The user message of the chat format, byte-identical to upstream's."""


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt as the engine gets it: `messages` for `llm.chat` (chat), and the text either way
    (for chat, the model's template applied, as `llm.chat` renders it)."""

    kind: str
    format: PromptFormat
    prompt: str
    messages: list[dict[str, str]] | None = None


def repeat_prompt(word: str) -> str:
    """The completion-format "repeat the word" prompt for ``word``."""
    return REPEAT_TEMPLATE.format(word=word)


def repeat_message(word: str) -> str:
    """Upstream's chat message asking to repeat ``word``."""
    return REPEAT_MESSAGE.format(word=word)


def split_counts(num_prompts: int, gsm8k_share: float) -> tuple[int, int]:
    """(repeat, gsm8k) counts; share 0.5 gives upstream's ``n // 2`` repeats."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 0:
        raise ValueError(f"num_prompts must be an integer >= 0, got {num_prompts!r}")
    if not 0.0 <= gsm8k_share <= 1.0:
        raise ValueError(f"gsm8k_share must be within [0, 1], got {gsm8k_share!r}")
    # The epsilon keeps float noise (100 * 0.9 = 89.999...) from losing a prompt.
    num_repeat = min(num_prompts, math.floor(num_prompts * (1.0 - gsm8k_share) + 1e-9))
    return num_repeat, num_prompts - num_repeat


def output_match_prompt_set(
    num_prompts: int = 100,
    seed: int = 0,
    gsm8k_share: float = 0.5,
    train_items: Sequence[GSM8kItem] | None = None,
    test_items: Sequence[GSM8kItem] | None = None,
) -> list[OutputMatchPrompt]:
    """The prompt set with kinds: repeats first (seeded words), then GSM8k, as upstream.

    The GSM8k prompts are the first test questions with the 5-shot prefix of
    ``workbench.gsm8k``; items default to the packaged copy.
    """
    num_repeat, num_gsm8k = split_counts(num_prompts, gsm8k_share)
    rng = random.Random(seed)  # seed 0 draws the same words as upstream's random.seed(0)
    words = [rng.choice(REPEAT_WORDS) for _ in range(num_repeat)]
    prompts = [OutputMatchPrompt("repeat", repeat_prompt(word), repeat_message(word)) for word in words]
    if num_gsm8k:
        tests = load_gsm8k("test") if test_items is None else test_items
        trains = load_gsm8k("train") if train_items is None else train_items
        if num_gsm8k > len(tests):
            raise ValueError(
                f"{num_gsm8k} GSM8k prompts asked for but only {len(tests)} test items given"
            )
        prompts.extend(
            OutputMatchPrompt("gsm8k", text, text)
            for text in build_prompts(tests[:num_gsm8k], trains, NUM_SHOTS)
        )
    return prompts


def output_match_prompts(
    num_prompts: int = 100,
    seed: int = 0,
    gsm8k_share: float = 0.5,
    train_items: Sequence[GSM8kItem] | None = None,
    test_items: Sequence[GSM8kItem] | None = None,
) -> list[str]:
    """The output-match prompts as completion-format strings (see ``output_match_prompt_set``)."""
    return [
        p.text
        for p in output_match_prompt_set(num_prompts, seed, gsm8k_share, train_items, test_items)
    ]


# ------------------------------------------------------------------ chat rendering


def user_messages(content: str) -> list[dict[str, str]]:
    """One conversation of one user turn, as upstream builds each test prompt."""
    return [{"role": "user", "content": content}]


def render_chat(tokenizer: Any, content: str) -> str:
    """The prompt text `llm.chat` sends for one user message: the model's template, generation prompt added."""
    return tokenizer.apply_chat_template(user_messages(content), tokenize=False, add_generation_prompt=True)


SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _jinja_environment() -> Any:
    """The Jinja environment transformers renders chat templates in (`apply_chat_template`): sandboxed,
    trim_blocks and lstrip_blocks, loop controls, a `{% generation %}` tag that renders its body, a `tojson`
    that does not HTML-escape, `raise_exception` and `strftime_now`. Importing transformers for it costs
    seconds (its package imports torch's neighbours) before the engines can start; the parity test holds
    the two renderings equal."""
    import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


@functools.lru_cache(maxsize=8)
def _compiled_template(text: str) -> Any:
    return _jinja_environment().from_string(text)


@dataclass(frozen=True)
class ChatTemplate:
    """A local checkpoint's chat template and special tokens, rendered as `apply_chat_template` renders
    them, without importing transformers (the prompts are ready seconds sooner, byte for byte the same)."""

    chat_template: str
    special_tokens: dict[str, str]

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        assert not tokenize, "only rendering is needed here"
        template = _compiled_template(self.chat_template)
        return template.render(messages=messages, tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt, **self.special_tokens)


def read_chat_template(folder: Path) -> ChatTemplate | None:
    """The template of a plain local checkpoint (chat_template.jinja, else tokenizer_config.json's string);
    None when the folder has anything else (named templates, processor templates, no template), for which
    the full tokenizer decides."""
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file() or (folder / "chat_template.json").exists() or \
            (folder / "additional_chat_templates").exists():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    template_file = folder / "chat_template.jinja"
    template = template_file.read_text(encoding="utf-8") if template_file.is_file() else config.get("chat_template")
    if not isinstance(template, str) or not template:
        return None
    tokens = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens[key] = value
    return ChatTemplate(template, tokens)


def load_tokenizer(params: CaseParams, where: str) -> Any:
    """The case's chat template as vLLM renders it: a local checkpoint's template directly, else the full
    tokenizer (transformers); a `ParamsError` naming the key when it cannot be loaded."""
    source = params.tokenizer or params.model
    key = "tokenizer" if params.tokenizer else "model"
    try:
        light = read_chat_template(Path(source)) if Path(source).is_dir() and not params.trust_remote_code else None
        if light is not None:
            return light
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, trust_remote_code=params.trust_remote_code)
    except Exception as exc:  # offline hub id, broken folder: say so before any engine starts
        raise ParamsError(f"{where}: key {key!r}: cannot load the tokenizer of {source!r} to render the prompts "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); set "
                          f"prompt_format: completion to send plain text", key=key, path=where) from exc


def resolve_format(requested: str, tokenizer: Any, key: str, where: str) -> PromptFormat:
    """`auto` -> chat when the tokenizer has a chat template, else completion; `chat` needs a template."""
    has_template = bool(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else False
    if requested == "chat" and not has_template:
        raise ParamsError(f"{where}: key {key!r}: chat asked, but the tokenizer has no chat template",
                          key=key, path=where)
    if requested == "auto":
        return "chat" if has_template else "completion"
    return "chat" if requested == "chat" else "completion"


def render(kind: str, completion_text: str, message: str, fmt: PromptFormat, tokenizer: Any) -> RenderedPrompt:
    if fmt == "chat":
        return RenderedPrompt(kind, "chat", render_chat(tokenizer, message), user_messages(message))
    return RenderedPrompt(kind, "completion", completion_text)


@dataclass(frozen=True)
class PromptSets:
    """Both prompt sets of a run, rendered: what `prepare` writes to records/prompts.json and the engines get."""

    questions: list[GSM8kItem]
    gsm8k: list[RenderedPrompt]
    output_match: list[RenderedPrompt]
    gsm8k_format: PromptFormat
    match_format: PromptFormat


def build_prompt_sets(params: CaseParams, test: Sequence[GSM8kItem], train: Sequence[GSM8kItem],
                      where: str) -> PromptSets:
    """Every prompt of a run in its format; the tokenizer is loaded only when a set may be chat."""
    needs_tokenizer = ((params.prompt_format != "completion" and params.output_match_prompts > 0)
                       or params.gsm8k_prompt_format == "chat")
    tokenizer = load_tokenizer(params, where) if needs_tokenizer else None
    match_format = resolve_format(params.prompt_format, tokenizer, "prompt_format", where) \
        if params.output_match_prompts else "completion"
    gsm8k_format = resolve_format(params.gsm8k_prompt_format, tokenizer, "gsm8k_prompt_format", where)
    questions = list(test[: params.num_questions] if params.num_questions else test)
    gsm8k_texts = build_prompts(questions, train, params.num_shots)
    match_set = output_match_prompt_set(params.output_match_prompts, params.seed, params.output_match_gsm8k_share,
                                        train, test)
    return PromptSets(
        questions=questions,
        gsm8k=[render("gsm8k", text, text, gsm8k_format, tokenizer) for text in gsm8k_texts],
        output_match=[render(p.kind, p.text, p.message, match_format, tokenizer) for p in match_set],
        gsm8k_format=gsm8k_format, match_format=match_format)
