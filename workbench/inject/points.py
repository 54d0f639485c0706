"""Where in vLLM a fault patches: one patch point per function, named by module, class and attribute.

Each point wraps one vLLM function in the engine's processes, hands the fault the rows it sees
(`workbench.inject.faults`), writes the fault's answer back into vLLM's tensors and logs every
corrupted row. A point whose target is missing or has another signature raises `InjectionError`
inside the import that loaded it, so the engine stops with the cause in its log instead of
running unpatched. Warm-up, profiling and CUDA-graph capture calls are left alone.

Patch points (vLLM 0.32, CPU and CUDA; the same names exist in CUDA vLLM 0.26):
- `gdn_accepted_tokens`: `vllm.v1.attention.backends.gdn_attn.GDNAttentionMetadataBuilder.build`,
  its `num_accepted_tokens` argument (per request row: the state slot GDN's conv and recurrent
  state resume from; the CPU kernels `_spec_forward` and CUDA's `fused_sigmoid_gating_delta_rule_update`
  read it from the metadata this builds);
- `rejection_sampler_output`: `vllm.v1.sample.rejection_sampler.RejectionSampler.forward`, the
  `sampled_token_ids` it returns (everything downstream, the hybrid state's accepted counts, the
  drafter, the scheduler, the output, sees the changed row);
- `emitted_tokens`: `vllm.v1.sample.rejection_sampler.RejectionSampler.parse_output`, the host-side
  lists it builds from the sampled tokens (after the device side has used them).

This module imports nothing but the standard library at import time; torch is imported when a
patched function first runs in an engine process.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.inject.faults import Chance, EmittedRow, Fault, SampledRow, SpecRow

_WARMUP_CALLERS = frozenset({"profile_run", "warming_up_model", "compile_or_warm_up_model", "capture_model",
                             "build_for_cudagraph_capture", "execute_dummy_batch"})
"""vLLM's start-up work (profiling, warm-up, CUDA-graph capture): a patched call below one of these, or
below a `_dummy*` function, is not a generation step."""


class InjectionError(RuntimeError):
    """A fault could not be installed: its vLLM target is missing or not what the point expects."""


@dataclass
class FaultRun:
    """The installed fault in one process: the fault, its draw, and where events go."""

    fault: Fault
    chance: Chance
    emit: Callable[[dict[str, Any]], None]

    def report(self, point: str, changes: list[tuple[int, Any, Any]], **extra: Any) -> None:
        """One event per patched call that corrupted rows: how many, and the first few (row, was, now)."""
        if changes:
            self.emit({"kind": "injected", "fault": self.fault.name, "point": point, "rows": len(changes),
                       "changes": [list(c) for c in changes[:8]], **extra})


@dataclass(frozen=True)
class PatchPoint:
    """One vLLM function a fault wraps: `module.owner.attribute`, which must take `parameters`."""

    name: str
    module: str
    owner: str
    attribute: str
    parameters: tuple[str, ...]
    wrap: Callable[[Callable[..., Any], inspect.Signature, FaultRun], Callable[..., Any]]
    static: bool = False

    @property
    def target(self) -> str:
        return f"{self.module}.{self.owner}.{self.attribute}"


def in_warmup(depth: int = 16) -> bool:
    """Whether the caller runs below vLLM's warm-up, profiling or CUDA-graph capture (not a real step)."""
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        name = frame.f_code.co_name
        if name in _WARMUP_CALLERS or name.startswith("_dummy") or name.startswith("_capture"):
            return True
        frame = frame.f_back
    return False


# ------------------------------------------------------------------ gdn_accepted_tokens


def _wrap_gdn_build(original: Callable[..., Any], signature: inspect.Signature, run: FaultRun) -> Callable[..., Any]:
    """`GDNAttentionMetadataBuilder.build` with the fault's accepted-token counts.

    vLLM builds GDN metadata once per KV-cache group and step with the same counts: the fault
    decides once per step (keyed by the batch's sequence lengths) and every group gets the same
    wrong counts, so each corrupted row is logged once.
    """
    state: dict[str, Any] = {"key": None, "wrong": {}, "spec_slots": set()}

    def decide(builder: Any, metadata: Any, counts: Any, drafts: Any) -> dict[int, int]:
        num_reqs = int(metadata.num_reqs)
        key = (num_reqs, tuple(metadata.seq_lens[:num_reqs].tolist()))
        if key == state["key"]:
            return state["wrong"]
        draft_list = drafts[:num_reqs].tolist()
        count_list = counts[:num_reqs].tolist()
        starts = metadata.query_start_loc_cpu[: num_reqs + 1].tolist()
        slots = metadata.block_table_tensor[:num_reqs, 0].tolist()  # the request's state slot: its identity
        previous = state["spec_slots"]
        rows = [SpecRow(index=i, count=int(count_list[i]), query_len=starts[i + 1] - starts[i],
                        first_spec=slots[i] not in previous)
                for i in range(num_reqs) if draft_list[i] >= 0]
        wrong = run.fault.corrupt(rows, int(getattr(builder, "num_spec", 1)), run.chance) if rows else {}
        wrong = {i: c for i, c in wrong.items() if c != count_list[i]}
        first = {r.index for r in rows if r.first_spec}
        run.report("gdn_accepted_tokens", [(i, int(count_list[i]), c) for i, c in sorted(wrong.items())],
                   first_spec=sum(1 for i in wrong if i in first), spec_rows=len(rows))
        state.update(key=key, wrong=wrong, spec_slots={slots[r.index] for r in rows})
        return wrong

    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        counts = bound.arguments.get("num_accepted_tokens")
        drafts = bound.arguments.get("num_decode_draft_tokens_cpu")
        if counts is None or drafts is None or in_warmup():
            return original(*args, **kwargs)
        wrong = decide(bound.arguments["self"], bound.arguments["common_attn_metadata"], counts, drafts)
        if wrong:
            counts = counts.clone()  # never vLLM's persistent buffer: the next step starts from the truth
            for index, count in wrong.items():
                counts[index] = count
            bound.arguments["num_accepted_tokens"] = counts
        return original(*bound.args, **bound.kwargs)

    return build


# ------------------------------------------------------------------ rejection_sampler_output


def _write_rows(tensor: Any, rows: dict[int, list[int]]) -> Any:
    """A copy of a [batch, k + 1] token tensor with `rows` replaced (padded with -1, vLLM's placeholder)."""
    import torch

    table = tensor.tolist()
    width = tensor.shape[-1]
    for index, tokens in rows.items():
        table[index] = list(tokens) + [-1] * (width - len(tokens))
    return torch.tensor(table, dtype=tensor.dtype, device=tensor.device)


def _valid(tokens: list[int]) -> list[int]:
    """A row's emitted tokens: everything before the first -1 placeholder."""
    return tokens[:tokens.index(-1)] if -1 in tokens else list(tokens)


def _wrap_rejection_forward(original: Callable[..., Any], signature: inspect.Signature,
                            run: FaultRun) -> Callable[..., Any]:
    """`RejectionSampler.forward` whose `sampled_token_ids` carry the fault's rows."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        if in_warmup():
            return original(*args, **kwargs)
        metadata, logits = bound.arguments["metadata"], bound.arguments["logits"]
        greedy = logits.argmax(dim=-1).tolist()  # before the sampler, which may update logits in place
        output = original(*args, **kwargs)
        sampled = output.sampled_token_ids
        table = sampled.tolist()
        drafts = metadata.draft_token_ids.tolist()
        target_at = metadata.target_logits_indices.tolist()
        bonus_at = metadata.bonus_logits_indices.tolist()
        changed: dict[int, list[int]] = {}
        changes = []
        start = 0
        for index, count in enumerate(metadata.num_draft_tokens):
            row = SampledRow(index=index, drafts=drafts[start:start + count], tokens=_valid(table[index]),
                             target=[greedy[target_at[start + p]] for p in range(count)] + [greedy[bonus_at[index]]])
            start += count
            new = run.fault.corrupt(row, run.chance) if count else None
            if new is not None and new != row.tokens:
                changed[index] = new
                changes.append((index, row.tokens, new))
        if changed:
            output.sampled_token_ids = _write_rows(sampled, changed)
            run.report("rejection_sampler_output", changes)
        return output

    return forward


# ------------------------------------------------------------------ emitted_tokens


def _wrap_parse_output(original: Callable[..., Any], signature: inspect.Signature, run: FaultRun) -> Callable[..., Any]:
    """`RejectionSampler.parse_output` (host side) fed the fault's rows; the device tensors keep the truth."""

    def parse_output(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        tokens = bound.arguments["output_token_ids"]
        if in_warmup():
            return original(*args, **kwargs)
        discard = bound.arguments.get("discard_req_indices")
        skip = {int(i) for i in discard} if discard is not None else set()  # a list or a numpy array
        width = int(tokens.shape[-1])
        changed: dict[int, list[int]] = {}
        changes = []
        for index, row_tokens in enumerate(tokens.tolist()):
            if index in skip:
                continue
            row = EmittedRow(index=index, tokens=_valid(row_tokens), width=width)
            new = run.fault.corrupt(row, run.chance)
            if new is not None and new != row.tokens:
                changed[index] = new
                changes.append((index, row.tokens, new))
        if changed:
            bound.arguments["output_token_ids"] = _write_rows(tokens, changed)
            run.report("emitted_tokens", changes)
        return original(*bound.args, **bound.kwargs)

    return parse_output


POINTS: dict[str, PatchPoint] = {point.name: point for point in (
    PatchPoint("gdn_accepted_tokens", "vllm.v1.attention.backends.gdn_attn", "GDNAttentionMetadataBuilder", "build",
               ("self", "common_attn_metadata", "num_accepted_tokens", "num_decode_draft_tokens_cpu"),
               _wrap_gdn_build),
    PatchPoint("rejection_sampler_output", "vllm.v1.sample.rejection_sampler", "RejectionSampler", "forward",
               ("self", "metadata", "logits"), _wrap_rejection_forward),
    PatchPoint("emitted_tokens", "vllm.v1.sample.rejection_sampler", "RejectionSampler", "parse_output",
               ("output_token_ids",), _wrap_parse_output, static=True),
)}

_MARKER = "_workbench_inject"


def apply(point: PatchPoint, module: Any, run: FaultRun) -> str:
    """Wrap `point`'s function in the freshly imported `module`; returns the target. Idempotent.

    Raises `InjectionError` when the class or function is missing or lacks a parameter the point
    reads: patching by name must fail loudly when vLLM moves things.
    """
    owner = getattr(module, point.owner, None)
    if not isinstance(owner, type):
        raise InjectionError(f"fault {run.fault.name!r}: {module.__name__} has no class {point.owner} "
                             f"(patch point {point.name}, vLLM changed?)")
    current = inspect.getattr_static(owner, point.attribute, None)
    if current is None:
        raise InjectionError(f"fault {run.fault.name!r}: {point.owner} has no {point.attribute} "
                             f"(patch point {point.name}, vLLM changed?)")
    function = current.__func__ if isinstance(current, staticmethod) else current
    if getattr(function, _MARKER, None) == run.fault.name:
        return point.target
    if point.static != isinstance(current, staticmethod) or not callable(function):
        raise InjectionError(f"fault {run.fault.name!r}: {point.target} is not the "
                             f"{'static ' if point.static else ''}method the patch point expects")
    signature = inspect.signature(function)
    missing = [p for p in point.parameters if p not in signature.parameters]
    if missing:
        raise InjectionError(f"fault {run.fault.name!r}: {point.target}{signature} has no parameter "
                             f"{', '.join(missing)} (patch point {point.name}, vLLM changed?)")
    replacement = point.wrap(function, signature, run)
    replacement.__name__ = function.__name__
    replacement.__qualname__ = function.__qualname__
    replacement.__doc__ = f"{function.__doc__ or ''}\n\n[workbench.inject: fault {run.fault.name!r} installed]"
    setattr(replacement, _MARKER, run.fault.name)
    setattr(owner, point.attribute, staticmethod(replacement) if point.static else replacement)
    return point.target
