"""The shipped tiny Qwen3.5 stand-in: its format, its data hygiene, and a micro train -> export -> vLLM round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import REPO
from workbench import gsm8k
from workbench.core.engine import start_engine_job, wait_engine_job
from workbench.correctness.generation import EngineJob, correctness_child
from workbench.tinymodel import chat, corpus
from workbench.tinymodel.synthetic import generate_problems
from workbench.tinymodel.tokenizer import CHAT_TEMPLATE, IM_END, IM_START, SPECIAL_TOKENS

MODEL = REPO / "models" / "tiny-qwen3_5-mtp"


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def test_no_gsm8k_test_question_in_training_data() -> None:
    test_questions = {normalise(item.question) for item in gsm8k.load_gsm8k("test")}
    train = {normalise(q) for q, _ in corpus.gsm8k_train_pairs()}
    synthetic = {normalise(p.question) for p in generate_problems(30000, seed=0)}
    assert len(train) > 7000 and len(synthetic) > 1000
    assert not test_questions & train
    assert not test_questions & synthetic
    tokenizer_text = "".join(corpus.tokenizer_training_texts())
    some_test = gsm8k.load_gsm8k("test")[0].question
    assert some_test not in tokenizer_text


@pytest.mark.parametrize("seed", [0, 1000])  # epochs 0 and 1 of `train.py` (seed * 1000 + epoch)
def test_chat_samples_ask_train_questions_only(seed: int) -> None:
    """Every GSM8k question in a chat (the asked one and the 5 shots) is a train question, none a test one."""
    import re

    test_questions = {normalise(item.question) for item in gsm8k.load_gsm8k("test")}
    pairs = corpus.gsm8k_train_pairs()
    train = {normalise(q) for q, _ in pairs}
    samples = chat.chat_samples(pairs, chat.ChatMix(), seed)
    kinds = {kind: sum(s.kind == kind for s in samples) for kind in ("repeat", "few_shot", "question")}
    assert kinds == {"repeat": chat.ChatMix.repeat, "few_shot": chat.ChatMix.few_shot,
                     "question": chat.ChatMix.question}
    asked = {normalise(s.question) for s in samples if s.question is not None}
    shown = {normalise(q) for s in samples for q in re.findall(r"Question: (.*?)\nAnswer:", s.content, re.S)}
    assert asked and len(shown) == chat.ChatMix.few_shot + gsm8k.NUM_SHOTS  # each asked question + the shots
    assert asked <= train and shown <= train
    assert not (asked | shown) & test_questions
    text = "".join(s.text for s in samples)
    assert gsm8k.load_gsm8k("test")[0].question not in text
    assert samples == chat.chat_samples(pairs, chat.ChatMix(), seed)  # seeded


def test_chat_user_turns_are_context_only() -> None:
    """The 5-shot chat's message is the completion prompt itself: were its closing <|im_end|> a target, plain
    completions would end right after "Answer:". Only the replies (and their <|im_end|>) are learned."""
    from tokenizers import Tokenizer

    from workbench.tinymodel.train import epoch_examples, epoch_stream

    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    start, end = tokenizer.token_to_id(IM_START), tokenizer.token_to_id(IM_END)
    examples = epoch_examples(corpus.gsm8k_train_pairs()[:300], 20, chat.ChatMix(repeat=20, few_shot=5, question=5),
                              seed=0)
    stream, learn, chat_tokens = epoch_stream(tokenizer, examples, eos_id=0)
    chats = sum(1 for context, _ in examples if context)
    assert chats == 30 and len(stream) == len(learn) and 0 < chat_tokens < len(stream)
    targets = [token for token, is_target in zip(stream, learn) if is_target]
    assert start not in targets and targets.count(end) == chats and stream.count(end) == 2 * chats
    answer = tokenizer.encode("Answer:").ids
    for i in range(len(stream) - len(answer)):
        if stream[i:i + len(answer)] == answer and stream[i + len(answer)] == end:
            assert not learn[i + len(answer)]  # "Answer:<|im_end|>" is never taught


def test_chat_samples_have_upstream_shapes() -> None:
    """Repeat chats carry upstream's message byte for byte; 5-shot chats are the eval's prompt as the user turn."""
    from workbench.correctness.prompts import REPEAT_MESSAGE

    assert chat.REPEAT_MESSAGE == REPEAT_MESSAGE
    pairs = corpus.gsm8k_train_pairs()
    samples = chat.chat_samples(pairs, chat.ChatMix(repeat=400, few_shot=2, question=1), seed=0)
    words = {s.reply.split()[0] for s in samples if s.kind == "repeat"}
    assert set(chat.UPSTREAM_REPEAT_WORDS) <= words and len(words) > 50
    repeat = next(s for s in samples if s.kind == "repeat")
    word = repeat.reply.split()[0]
    assert repeat.content == REPEAT_MESSAGE.format(word=word) and repeat.reply == " ".join([word] * 10)
    assert repeat.text == f"{IM_START}user\n{repeat.content}{IM_END}\n{IM_START}assistant\n{repeat.reply}{IM_END}\n"
    few_shot = next(s for s in samples if s.kind == "few_shot")
    train = gsm8k.load_gsm8k("train")
    item = next(i for i in train if i.question == few_shot.question)
    assert few_shot.content == gsm8k.build_prompts([item], train)[0]
    assert few_shot.reply == " " + item.answer


def test_synthetic_problems_are_seeded_and_correct() -> None:
    first = list(generate_problems(200, seed=3))
    assert first == list(generate_problems(200, seed=3)) != list(generate_problems(200, seed=4))
    for problem in first:
        # every calculator annotation's arithmetic is right, and the final answer is the last result
        for expr, value in __import__("re").findall(r"<<([^=]+)=(-?\d+)>>", problem.answer):
            assert int(eval(expr.replace("/", "//"))) == int(value), problem.answer
        assert gsm8k.is_correct(problem.answer, problem.answer, "strict")


def test_shipped_checkpoint_has_qwen3_5_format() -> None:
    config = json.loads((MODEL / "config.json").read_text())
    assert config["architectures"] == ["Qwen3_5ForConditionalGeneration"] and config["model_type"] == "qwen3_5"
    text = config["text_config"]
    assert text["mtp_num_hidden_layers"] == 1 and text["head_dim"] == 64
    assert text["linear_key_head_dim"] == text["linear_value_head_dim"]
    assert {"linear_attention", "full_attention"} == set(text["layer_types"])
    with safe_open(str(MODEL / "model.safetensors"), "pt") as handle:
        names = list(handle.keys())
        dtypes = {str(handle.get_tensor(n).dtype) for n in names[:20]}
    prefixes = {n.split(".")[0] + "." + n.split(".")[1] if n.startswith("model.") else n.split(".")[0] for n in names}
    assert {"model.language_model", "model.visual", "mtp"} <= prefixes
    assert "mtp.fc.weight" in names and "mtp.pre_fc_norm_embedding.weight" in names
    assert dtypes == {"torch.bfloat16"}
    total = sum(f.stat().st_size for f in MODEL.iterdir())
    assert total < 25 * 1024 * 1024, f"model files take {total / 2**20:.1f} MiB"


def test_shipped_tokenizer_renders_upstream_repeat_message_with_its_chat_template() -> None:
    """`llm.chat` renders upstream's message as ChatML, the turn markers single special ids; replies stop at
    <|im_end|>."""
    from transformers import AutoTokenizer

    from workbench.correctness.prompts import REPEAT_MESSAGE

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    message = REPEAT_MESSAGE.format(word="test")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered == f"{IM_START}user\n{message}{IM_END}\n{IM_START}assistant\n"
    assert chat.format_chat(message, "test").startswith(rendered)  # the training chats are the template's output
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    start, end = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
    assert ids[0] == start and ids.count(start) == 2 and ids.count(end) == 1
    assert tokenizer.decode(ids) == rendered
    # ids 0-6 in SPECIAL_TOKENS order, so config.json's vision token ids hold
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))
    assert len(tokenizer) == 4096
    config = json.loads((MODEL / "config.json").read_text())
    assert config["vision_start_token_id"] == 1 and config["image_token_id"] == 3 and config["video_token_id"] == 4
    generation = json.loads((MODEL / "generation_config.json").read_text())
    assert set(generation["eos_token_id"]) == {0, end} == set(config["text_config"]["eos_token_id"])


def test_shipped_tokenizer_gives_vllm_the_ids_it_was_trained_on() -> None:
    """transformers loads a qwen3_5 tokenizer as `Qwen3_5Tokenizer`, which rebuilds the pre-tokenizer with Qwen's
    regex: the trainer's own `tokenizers` pipeline (tokenizer.json) must give the same ids, chat and plain text
    alike."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    from transformers.models.qwen3_5 import tokenization_qwen3_5

    from workbench.tinymodel.tokenizer import QWEN_PRETOKENIZE_REGEX

    assert QWEN_PRETOKENIZE_REGEX == tokenization_qwen3_5.PRETOKENIZE_REGEX
    loaded = AutoTokenizer.from_pretrained(str(MODEL))
    trained = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    pairs = corpus.gsm8k_train_pairs()
    texts = [s.text for s in chat.chat_samples(pairs, chat.ChatMix(repeat=50, few_shot=3, question=20), seed=0)]
    texts += [corpus.format_example(q, a) for q, a in pairs[:200] + corpus.synthetic_pairs(100, seed=0)]
    texts += gsm8k.build_prompts(gsm8k.load_gsm8k("test")[:20], gsm8k.load_gsm8k("train"))
    assert loaded(texts, add_special_tokens=False)["input_ids"] == [e.ids for e in trained.encode_batch(texts)]


def test_model_card_states_what_it_is() -> None:
    card = (MODEL / "README.md").read_text()
    assert "not Qwen3.5" in card and "train-tiny" in card
    stage1 = json.loads((MODEL / "training_facts_stage1.json").read_text())
    stage2 = json.loads((MODEL / "training_facts_stage2.json").read_text())
    assert stage1["steps"] > 0 and stage1["parameters"] > 1e6
    assert stage2["train_only_mtp"] and stage2["mtp_steps"] == 3  # the MTP layer, unrolled for k > 1


@pytest.mark.vllm
def test_micro_model_trains_exports_and_speculates_in_vllm(tmp_path: Path) -> None:
    from workbench.tinymodel.train import main as train_main

    out = tmp_path / "micro"
    assert train_main(["--out", str(out), "--micro", "--steps", "4", "--batch-size", "2", "--seq-len", "128",
                       "--synthetic-per-epoch", "50"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    job = EngineJob(
        label="speculative",
        llm_kwargs={"model": str(out), "dtype": "bfloat16", "max_model_len": 512, "gpu_memory_utilization": 0.1,
                    "enforce_eager": True, "enable_prefix_caching": False, "disable_log_stats": False,
                    "limit_mm_per_prompt": {"image": 0, "video": 0},
                    "speculative_config": {"method": "mtp", "num_speculative_tokens": 1}},
        gsm8k_prompts=["Question: Tom has 3 apples.\nAnswer:"], gsm8k_sampling={"temperature": 0.0, "max_tokens": 8},
        match_prompts=["Hello"], match_sampling={"temperature": 0.0, "max_tokens": 4},
        record_path=str(tmp_path / "rec.json"), log_path=str(tmp_path / "engine.log"),
        env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    running = start_engine_job(job, correctness_child)
    record = wait_engine_job(running, timeout_s=900)
    assert len(record["gsm8k"][0]["token_ids"]) == 8  # generated with the micro weights
    assert record["spec_counters"]["vllm:spec_decode_num_drafts"] > 0  # MTP drafted
    # vLLM was shut down by the child itself (nothing left for the parent's backstop to kill), and
    # no process of this engine (every one seen below the child, whatever its parent now) is alive
    assert record["orphans_killed"] == [], f"vLLM processes outlived the engine child: {record['orphans_killed']}"
    assert not running.tree.alive()


def test_unrolled_mtp_steps_and_checkpoint_round_trip(tmp_path: Path) -> None:
    """Step s of the MTP loss predicts token t+s+1; export then load gives back the same weights."""
    import torch

    from workbench.tinymodel.model import MICRO, TinyQwen35MTP, build_config, export_checkpoint, load_checkpoint
    from workbench.tinymodel.tokenizer import SPECIAL_TOKENS

    config = build_config(MICRO, {token: i for i, token in enumerate(SPECIAL_TOKENS)})
    torch.manual_seed(0)
    model = TinyQwen35MTP(config.text_config)
    batch = torch.randint(5, MICRO.vocab_size, (2, 24))
    out = model(batch, mtp_steps=3)
    assert out["mtp_loss_steps"].shape == (3,)
    assert torch.equal(out["mtp_loss_steps"][0], out["mtp_loss"])
    assert torch.allclose(model(batch, mtp_steps=1)["mtp_loss"], out["mtp_loss"])
    # labels -100 leave a token out of every loss (a chat's user turn)
    assert torch.equal(model(batch, mtp_steps=3, labels=batch)["mtp_loss_steps"], out["mtp_loss_steps"])
    masked = batch.clone()
    masked[:, :12] = -100
    partial = model(batch, mtp_steps=3, labels=masked)
    assert torch.isfinite(partial["mtp_loss_steps"]).all() and not torch.equal(partial["main_loss"], out["main_loss"])
    # export (bf16) and load back: both the text model and the MTP layer come back
    (tmp_path / "tok").mkdir()
    from tokenizers import Tokenizer, models as tok_models

    from workbench.tinymodel.tokenizer import save_tokenizer

    save_tokenizer(Tokenizer(tok_models.BPE()), tmp_path / "tok")
    export_checkpoint(model, config, tmp_path / "tok", tmp_path / "ckpt")
    reloaded = TinyQwen35MTP(config.text_config)
    load_checkpoint(reloaded, tmp_path / "ckpt")
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor.to(torch.bfloat16).float()), name
