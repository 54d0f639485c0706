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
from workbench.tinymodel import corpus
from workbench.tinymodel.synthetic import generate_problems

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
