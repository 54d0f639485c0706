"""Before any engine starts: what would make a correctness run fail late, refused now (exit 2, naming the key).

The dataset must be there and large enough, the prompts must render in their format (a chat format
needs the model's tokenizer and its template), every prompt must fit `max_model_len` (tokenized with
the model's own tokenizer), and a case must check something: one whose every check is switched
off would pass while checking nothing.
"""

from __future__ import annotations

from pathlib import Path

from workbench import gsm8k
from workbench.baseline.store import check_baseline
from workbench.core.caches import check_cache_dir
from workbench.core.errors import ParamsError
from workbench.core.gpu import check_parallel_engines, read_engine_gpu
from workbench.core.params import CaseParams, check_against_vllm
from workbench.correctness.prompts import build_prompt_sets, split_counts


def switched_off_checks(params: CaseParams) -> list[str]:
    """Which of the correctness checks this case switches off."""
    off = []
    if not params.threshold:
        off.append("accuracy (threshold 0)")
    if not params.output_match_prompts:
        off.append("output match (output_match_prompts 0)")
    if params.min_acceptance_length is None:
        off.append("acceptance length (min_acceptance_length unset)")
    if params.baseline is None:
        off.append("baseline comparisons (baseline unset)")
    return off


def _longest_prompt_tokens(params: CaseParams, prompts: list[str]) -> int | None:
    """Token count of the longest prompt with the model's tokenizer.json; None when there is none locally."""
    tokenizer_file = Path(params.tokenizer or params.model) / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    longest = max(prompts, key=len)
    return max(len(e.ids) for e in tokenizer.encode_batch([longest, *sorted(prompts, key=len)[-5:]]))


def preflight(params: CaseParams, params_file: str | Path, allow_no_checks: bool = False) -> None:
    """Raise `ParamsError` for a case that cannot give a meaningful run."""
    where = str(params_file)
    check_against_vllm(params, where)
    check_baseline(params, where)  # other hardware, model, method or draft length: refused before any engine
    check_cache_dir(params.cache_dir, where)
    check_parallel_engines(params, where, read_engine_gpu())  # engines side by side on one GPU: do they fit
    if not allow_no_checks and len(switched_off_checks(params)) == 4:
        raise ParamsError(f"{where}: every check is switched off ({'; '.join(switched_off_checks(params))}): the run "
                          "would pass while checking nothing. Set one, or pass --allow-no-checks",
                          key="threshold", path=where)
    try:
        test = gsm8k.load_gsm8k("test", params.dataset)
        train = gsm8k.load_gsm8k("train", params.dataset)
    except (FileNotFoundError, ValueError) as exc:
        raise ParamsError(f"{where}: key 'dataset': {exc}", key="dataset", path=where) from exc
    if params.num_questions is not None and params.num_questions > len(test):
        raise ParamsError(f"{where}: key 'num_questions': {params.num_questions} asked, the test split has "
                          f"{len(test)}", key="num_questions", path=where)
    _, match_gsm8k = split_counts(params.output_match_prompts, params.output_match_gsm8k_share)
    if match_gsm8k > len(test):
        raise ParamsError(f"{where}: key 'output_match_prompts': {match_gsm8k} GSM8k output-match prompts asked, the "
                          f"test split has {len(test)}", key="output_match_prompts", path=where)
    if params.num_shots > len(train):
        raise ParamsError(f"{where}: key 'num_shots': {params.num_shots} shots, the train split has {len(train)}",
                          key="num_shots", path=where)
    sets = build_prompt_sets(params, test, train, where)  # a chat format needs the tokenizer: loaded here
    longest = _longest_prompt_tokens(params, [p.prompt for p in [*sets.gsm8k, *sets.output_match]])
    if longest is not None and longest >= params.max_model_len:
        raise ParamsError(f"{where}: key 'max_model_len': {params.max_model_len} tokens, but the longest prompt has "
                          f"{longest} (5-shot GSM8k prompts need room for their answer too)",
                          key="max_model_len", path=where)
