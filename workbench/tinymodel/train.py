"""Train the tiny Qwen3.5 stand-in (main LM loss + MTP loss) and export it in Qwen3.5's format.

Seeded and self-contained: `python -m workbench.tinymodel.train --out models/tiny-qwen3_5-mtp`
re-creates the shipped weights (GPU recommended; it also runs on CPU, slowly). The tokenizer is
trained first on GSM8k train only; the text is GSM8k train plus the project's own synthetic
problems, packed into fixed-length sequences of "Question: ...\nAnswer: ...\n\n" blocks, the
shape of the 5-shot evaluation prompt, with a minority of ChatML conversations (`chat.py`: upstream's
"repeat the word" instruction, the 5-shot prompt as a user message, single questions; their user
turns are context only) so that prompts sent through the chat template get sensible replies.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from workbench.tinymodel.chat import ChatMix, chat_samples
from workbench.tinymodel.corpus import format_example, gsm8k_train_pairs, synthetic_pairs
from workbench.tinymodel.model import (MICRO, TinyQwen35MTP, TinySize, build_config, export_checkpoint,
                                       load_checkpoint, size_as_dict)
from workbench.tinymodel.tokenizer import SPECIAL_TOKENS, save_tokenizer, train_tokenizer


IGNORE = -100
"""Label of a token that is context only (cross-entropy's ignore_index)."""


def packed_batches(token_ids: list[int], learn: list[bool], seq_len: int, batch_size: int, rng: random.Random):
    """Cut one long token stream into shuffled [batch, seq_len] (input ids, labels) blocks."""
    n_blocks = len(token_ids) // seq_len
    data = torch.tensor(token_ids[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len)
    mask = torch.tensor(learn[: n_blocks * seq_len], dtype=torch.bool).view(n_blocks, seq_len)
    labels = data.masked_fill(~mask, IGNORE)
    order = list(range(n_blocks))
    rng.shuffle(order)
    for start in range(0, n_blocks - batch_size + 1, batch_size):
        rows = order[start:start + batch_size]
        yield data[rows], labels[rows]


def epoch_examples(pairs: list[tuple[str, str]], synthetic_count: int, chat_mix: ChatMix,
                   seed: int) -> list[tuple[str, str]]:
    """(context, target) texts of GSM8k train + fresh synthetic problems + chats, shuffled at the example level.

    A plain block is all target; a chat's prompt (the rendered user turn) is context only.
    """
    examples = [("", format_example(q, a)) for q, a in pairs + synthetic_pairs(synthetic_count, seed)]
    examples += [(sample.prompt, sample.completion) for sample in chat_samples(pairs, chat_mix, seed)]
    random.Random(seed).shuffle(examples)
    return examples


def epoch_stream(tokenizer, examples: list[tuple[str, str]], eos_id: int) -> tuple[list[int], list[bool], int]:
    """One token stream of the epoch, which of its tokens are targets, and how many tokens are chat.

    Context and target are tokenized apart, as `llm.chat` tokenizes the prompt alone.
    """
    stream: list[int] = []
    learn: list[bool] = []
    chat_tokens = 0
    for i in range(0, len(examples), 2048):
        chunk = examples[i:i + 2048]
        contexts = tokenizer.encode_batch([context for context, _ in chunk])
        targets = tokenizer.encode_batch([target for _, target in chunk])
        for context, target in zip(contexts, targets):
            stream += context.ids + target.ids
            learn += [False] * len(context.ids) + [True] * len(target.ids)
            chat_tokens += len(context.ids) + len(target.ids) if context.ids else 0
    stream.append(eos_id)
    learn.append(True)
    return stream, learn, chat_tokens


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--micro", action="store_true", help="a micro configuration for tests")
    parser.add_argument("--steps", type=int, default=1750)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mtp-weight", type=float, default=0.5)
    parser.add_argument("--mtp-steps", type=int, default=1,
                        help="train the MTP layer unrolled this many steps (vLLM reuses it for k > 1 drafts)")
    parser.add_argument("--synthetic-per-epoch", type=int, default=30000)
    parser.add_argument("--chat-repeat-per-epoch", type=int, default=ChatMix.repeat,
                        help="chats with upstream's 'repeat the word' instruction")
    parser.add_argument("--chat-few-shot-per-epoch", type=int, default=ChatMix.few_shot,
                        help="chats whose user message is the 5-shot GSM8k prompt of a train question")
    parser.add_argument("--chat-question-per-epoch", type=int, default=ChatMix.question,
                        help="chats asking one GSM8k train question")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from an exported checkpoint (e.g. the shipped model) instead of random weights")
    parser.add_argument("--train-only-mtp", action="store_true",
                        help="freeze the main model: only the MTP layer learns (reference outputs stay identical)")
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop early after this long (0: no limit)")
    parser.add_argument("--stop-after", type=int, default=0,
                        help="stop after this many steps of the --steps schedule (0: run it all); replays a run "
                             "that --max-minutes stopped")
    args = parser.parse_args(argv)

    started = time.time()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok_dir = args.out.parent / (args.out.name + ".tokenizer-tmp")
    bpe = train_tokenizer(args.vocab_size)
    save_tokenizer(bpe, tok_dir)
    special_ids = {t: bpe.token_to_id(t) for t in SPECIAL_TOKENS}
    size = MICRO if args.micro else TinySize(vocab_size=args.vocab_size)
    config = build_config(size, special_ids)
    model = TinyQwen35MTP(config.text_config)
    if args.init_from is not None:
        load_checkpoint(model, args.init_from)
    if args.train_only_mtp:
        for parameter in model.lm.parameters():
            parameter.requires_grad_(False)
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device={device} params={n_params / 1e6:.2f}M", flush=True)

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2]
    no_decay = [p for n, p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), fused=device == "cuda")
    pairs = gsm8k_train_pairs()
    chat_mix = ChatMix(args.chat_repeat_per_epoch, args.chat_few_shot_per_epoch, args.chat_question_per_epoch)
    eos_id = special_ids["<|endoftext|>"]
    step, epoch, tokens_seen = 0, 0, 0
    scheduled_steps = args.steps
    stream_tokens, chat_tokens = 0, 0
    log: list[dict] = []
    rng = random.Random(args.seed)
    last = {}
    while step < args.steps:
        examples = epoch_examples(pairs, args.synthetic_per_epoch, chat_mix, args.seed * 1000 + epoch)
        stream, learn, epoch_chat_tokens = epoch_stream(bpe, examples, eos_id)
        stream_tokens, chat_tokens = stream_tokens + len(stream), chat_tokens + epoch_chat_tokens
        for batch, labels in packed_batches(stream, learn, args.seq_len, args.batch_size, rng):
            if (step >= args.steps or (args.stop_after and step >= args.stop_after)
                    or (args.max_minutes and time.time() - started > 60 * args.max_minutes)):
                scheduled_steps, args.steps = args.steps, step
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, args.steps, args.lr, warmup=min(200, args.steps // 10 + 1))
            batch, labels = batch.to(device), labels.to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                out = model(batch, mtp_steps=args.mtp_steps, labels=labels)
                step_weights = 0.5 ** torch.arange(args.mtp_steps, device=batch.device)  # 1, 0.5, 0.25, ...
                loss = out["main_loss"] + args.mtp_weight * (step_weights * out["mtp_loss_steps"]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
            optimizer.step()
            tokens_seen += batch.numel()
            step += 1
            if step % 50 == 0 or step == 1:
                last = {k: round(float(v), 4) for k, v in out.items() if v.ndim == 0}
                last["mtp_loss_steps"] = [round(float(v), 4) for v in out["mtp_loss_steps"]]
                elapsed = time.time() - started
                row = {"step": step, "epoch": epoch, "tokens": tokens_seen, "elapsed_s": round(elapsed, 1),
                       "tokens_per_s": round(tokens_seen / elapsed), **last}
                log.append(row)
                print(json.dumps(row), flush=True)
        epoch += 1

    train_seconds = time.time() - started
    facts = {
        "seed": args.seed, "steps": step, "scheduled_steps": scheduled_steps, "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_seen": tokens_seen, "epochs_started": epoch, "lr": args.lr, "mtp_weight": args.mtp_weight, "mtp_steps": args.mtp_steps,
        "synthetic_per_epoch": args.synthetic_per_epoch, "chat_per_epoch": asdict(chat_mix),
        "chat_token_share": round(chat_tokens / max(1, stream_tokens), 4),
        "init_from": str(args.init_from) if args.init_from else None, "train_only_mtp": args.train_only_mtp, "parameters": n_params, "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "train_seconds": round(train_seconds, 1), "final": last, "size": size_as_dict(size),
        "torch": torch.__version__,
    }
    model = model.float().cpu()
    export_checkpoint(model, config, tok_dir, args.out, seed=args.seed, card_facts=facts)
    (args.out / "training_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    import shutil
    shutil.rmtree(tok_dir, ignore_errors=True)
    print(json.dumps(facts), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
