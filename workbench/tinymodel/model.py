"""The tiny Qwen3.5 stand-in: config, the MTP head, and export to Qwen3.5's checkpoint format.

The exported folder has the layout of Qwen/Qwen3.5-0.8B-Base: `Qwen3_5ForConditionalGeneration`
(`text_config` + `vision_config`), weights under `model.language_model.*`, `model.visual.*`,
`lm_head` (tied) and `mtp.*`. The MTP head mirrors vLLM's `Qwen3_5MultiTokenPredictor`
(vllm/model_executor/models/qwen3_5_mtp.py): `fc(cat(pre_fc_norm_embedding(embed(x[t+1])),
pre_fc_norm_hidden(h[t])))` -> one full-attention decoder layer -> `norm` -> shared lm_head,
with Qwen3.5's zero-centred RMSNorm (weight stored as an offset from 1).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TinySize:
    """Sizes of the stand-in. CPU vLLM needs head_dim 64 and equal GDN key/value head dims."""

    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 8
    full_attention_interval: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    linear_num_key_heads: int = 4
    linear_num_value_heads: int = 4
    linear_head_dim: int = 64
    max_position_embeddings: int = 2048
    vision_hidden_size: int = 128
    vision_depth: int = 1
    extra: dict = field(default_factory=dict)


MICRO = TinySize(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=2,
                 num_key_value_heads=1, linear_num_key_heads=2, linear_num_value_heads=2, vision_hidden_size=64)


def build_config(size: TinySize, special_token_ids: dict[str, int]):
    """A `Qwen3_5Config` of Qwen3.5's shape at the given size."""
    from transformers import Qwen3_5Config

    layer_types = [
        "full_attention" if (i + 1) % size.full_attention_interval == 0 else "linear_attention"
        for i in range(size.num_hidden_layers)
    ]
    rotary_dim = size.head_dim // 2  # partial_rotary_factor 0.5
    half = rotary_dim // 2
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        vocab_size=size.vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim,
        linear_conv_kernel_dim=4,
        linear_key_head_dim=size.linear_head_dim,
        linear_value_head_dim=size.linear_head_dim,
        linear_num_key_heads=size.linear_num_key_heads,
        linear_num_value_heads=size.linear_num_value_heads,
        layer_types=layer_types,
        max_position_embeddings=size.max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000000.0,
            "partial_rotary_factor": 0.5,
            "mrope_section": mrope_section,
            "mrope_interleaved": True,
        },
        # chat replies end at <|im_end|>, completions at <|endoftext|>: both stop, as in Qwen's configs
        eos_token_id=[special_token_ids["<|im_end|>"], special_token_ids["<|endoftext|>"]],
        pad_token_id=special_token_ids["<|endoftext|>"],
        mtp_num_hidden_layers=1,
        mtp_use_dedicated_embeddings=False,
        dtype="bfloat16",
    )
    vision_config = dict(
        depth=size.vision_depth,
        hidden_size=size.vision_hidden_size,
        intermediate_size=2 * size.vision_hidden_size,
        num_heads=size.vision_hidden_size // 64,
        in_channels=3,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=size.hidden_size,
        num_position_embeddings=64,
        hidden_act="gelu_pytorch_tanh",
    )
    config = Qwen3_5Config(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=special_token_ids["<|image_pad|>"],
        video_token_id=special_token_ids["<|video_pad|>"],
        vision_start_token_id=special_token_ids["<|vision_start|>"],
        vision_end_token_id=special_token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    config.architectures = ["Qwen3_5ForConditionalGeneration"]
    return config


class MTPHead(nn.Module):
    """Parameter names match the checkpoint's `mtp.*` keys exactly."""

    def __init__(self, text_config) -> None:
        super().__init__()
        from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5DecoderLayer, Qwen3_5RMSNorm

        layer_config = copy.deepcopy(text_config)
        layer_config.num_hidden_layers = 1
        layer_config.layer_types = ["full_attention"]
        layer_config._attn_implementation = "sdpa"
        hidden = text_config.hidden_size
        eps = text_config.rms_norm_eps
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        self.pre_fc_norm_embedding = Qwen3_5RMSNorm(hidden, eps=eps)
        self.pre_fc_norm_hidden = Qwen3_5RMSNorm(hidden, eps=eps)
        self.layers = nn.ModuleList([Qwen3_5DecoderLayer(layer_config, 0)])
        self.norm = Qwen3_5RMSNorm(hidden, eps=eps)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)


class TinyQwen35MTP(nn.Module):
    """Text model + MTP head, trained jointly on next-token and token-after-next losses."""

    def __init__(self, text_config) -> None:
        super().__init__()
        from transformers import Qwen3_5ForCausalLM

        text_config = copy.deepcopy(text_config)
        text_config._attn_implementation = "sdpa"
        self.lm = Qwen3_5ForCausalLM(text_config)
        self.mtp = MTPHead(text_config)

    def forward(self, input_ids: torch.Tensor, mtp_steps: int = 1,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses and the teacher-forced draft agreement (a proxy for acceptance rate).

        MTP step s (1-based) at index t sees the embedding of token t+s and a hidden state, and
        predicts token t+s+1, at rotary position t+s-1. Step 1 takes the main model's final hidden
        state h[t]; step s > 1 takes step s-1's normed output, exactly what vLLM feeds the one MTP
        layer when it drafts k > 1 tokens by reusing it. `mtp_loss` is step 1's; `mtp_loss_steps`
        lists every step's, for a weighted sum in the trainer. `labels` are the targets (default
        `input_ids`); -100 marks a context-only token (a chat's user turn), left out of every loss.
        """
        labels = input_ids if labels is None else labels
        batch, length = input_ids.shape
        hidden = self.lm.model(input_ids=input_ids).last_hidden_state  # final-normed, as vLLM hands to MTP
        logits = self.lm.lm_head(hidden)
        main_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        previous = hidden
        step_losses: list[torch.Tensor] = []
        first_logits = None
        for step in range(1, mtp_steps + 1):
            count = length - step  # indices t with token t+s available as input
            embeds = self.lm.model.embed_tokens(input_ids[:, step:])
            x = self.mtp.fc(torch.cat([self.mtp.pre_fc_norm_embedding(embeds),
                                       self.mtp.pre_fc_norm_hidden(previous[:, :count])], dim=-1))
            positions = (torch.arange(count, device=input_ids.device) + step - 1).view(1, 1, -1).expand(3, batch, -1)
            position_embeddings = self.lm.model.rotary_emb(x, positions)
            x = self.mtp.norm(self.mtp.layers[0](x, position_embeddings=position_embeddings, attention_mask=None))
            step_logits = self.lm.lm_head(x)
            step_losses.append(F.cross_entropy(step_logits[:, :-1].flatten(0, 1).float(),
                                               labels[:, step + 1:].flatten(), ignore_index=-100))
            if first_logits is None:
                first_logits = step_logits
            previous = x
        with torch.no_grad():
            # step-1 draft for t+2 agrees with what the main model itself predicts at t+1
            agree = (first_logits[:, :-1].argmax(-1) == logits[:, 1:-1].argmax(-1)).float().mean()
        return {"main_loss": main_loss, "mtp_loss": step_losses[0], "mtp_loss_steps": torch.stack(step_losses),
                "draft_agreement": agree}


def export_checkpoint(model: TinyQwen35MTP, config, tokenizer_dir: Path, out_dir: Path,
                      seed: int = 0, card_facts: dict | None = None) -> Path:
    """Write a Qwen3.5-format checkpoint (bf16 safetensors) that vLLM and transformers load."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, Qwen3_5ForConditionalGeneration

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    full = Qwen3_5ForConditionalGeneration(config)  # vision tower stays at its (seeded) init
    text_state = model.lm.state_dict()
    missing = full.model.language_model.load_state_dict(
        {k.removeprefix("model."): v for k, v in text_state.items() if k.startswith("model.")}, strict=True)
    del missing
    full = full.to(torch.bfloat16)
    full.save_pretrained(str(out_dir), safe_serialization=True)
    weights_path = out_dir / "model.safetensors"
    tensors = load_file(str(weights_path))
    for name, tensor in model.mtp.state_dict().items():
        tensors[f"mtp.{name}"] = tensor.detach().to(torch.bfloat16).contiguous()
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(out_dir))
    _fix_tokenizer_class(out_dir)
    _write_processor_configs(out_dir)
    if card_facts is not None:
        (out_dir / "training_facts.json").write_text(json.dumps(card_facts, indent=2) + "\n")
    return out_dir


def load_checkpoint(model: TinyQwen35MTP, checkpoint: Path) -> None:
    """Load an exported checkpoint's text and MTP weights back into the training module."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(checkpoint) / "model.safetensors"))
    text = {k.replace("model.language_model.", "model.", 1): v.float() for k, v in tensors.items()
            if k.startswith("model.language_model.")}
    text["lm_head.weight"] = text["model.embed_tokens.weight"]  # tied
    model.lm.load_state_dict(text, strict=True)
    model.mtp.load_state_dict({k.removeprefix("mtp."): v.float() for k, v in tensors.items() if k.startswith("mtp.")},
                              strict=True)


def _fix_tokenizer_class(out_dir: Path) -> None:
    """Name the tokenizer class that every transformers 5.x (and 4.x) resolves."""
    path = out_dir / "tokenizer_config.json"
    data = json.loads(path.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(data, indent=2) + "\n")


def _write_processor_configs(out_dir: Path) -> None:
    """Qwen3.5 is multimodal: vLLM builds its processor even with images/videos limited to 0."""
    image = {
        "image_processor_type": "Qwen2VLImageProcessorFast",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "size": {"shortest_edge": 65536, "longest_edge": 16777216},
        "processor_class": "Qwen3VLProcessor",
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(image, indent=2) + "\n")
    video = dict(image, video_processor_type="Qwen3VLVideoProcessor")
    video.pop("image_processor_type")
    (out_dir / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")


def size_as_dict(size: TinySize) -> dict:
    return asdict(size)
