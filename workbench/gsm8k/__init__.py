"""GSM8k: the packaged data and vLLM's 5-shot prompts (`data`), and the named answer scorers (`scorers`).

The public API is re-exported here, so `workbench.gsm8k.extract_answer(text, scorer)` and
`workbench.gsm8k.is_correct(completion, reference_answer, scorer)` work as documented.
"""

from workbench.gsm8k.data import (DATA_DIR, HUB_CONFIG, MAX_TOKENS, NUM_SHOTS, SPLITS, STOP, TEMPERATURE, GSM8kItem,
                                  build_prompt, build_prompts, few_shot_prefix, load_gsm8k, sampling_kwargs)
from workbench.gsm8k.scorers import (INVALID, SCORERS, FlexibleScorer, Scorer, StrictScorer, UpstreamScorer, accuracy,
                                     accuracy_table, extract_answer, get_answer_value, get_scorer, invalid_completions,
                                     is_correct, normalize_number, reference_number, register_scorer,
                                     score_completions)

__all__ = ["DATA_DIR", "HUB_CONFIG", "MAX_TOKENS", "NUM_SHOTS", "SPLITS", "STOP", "TEMPERATURE", "GSM8kItem",
           "build_prompt", "build_prompts", "few_shot_prefix", "load_gsm8k", "sampling_kwargs", "INVALID", "SCORERS",
           "FlexibleScorer", "Scorer", "StrictScorer", "UpstreamScorer", "accuracy", "accuracy_table",
           "extract_answer", "get_answer_value", "invalid_completions", "get_scorer", "is_correct", "normalize_number",
           "reference_number",
           "register_scorer", "score_completions"]
