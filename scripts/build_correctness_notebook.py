"""Builds workbench/resources/notebooks/mtp_correctness.ipynb (clean, stable cell ids): python THIS [OUT]."""

from nbformat.v4 import new_code_cell, new_markdown_cell

from notebook_builder import write_notebook

cells = [
 new_markdown_cell("# MTP vs reference on GSM8k\n\nReference run (plain vLLM) and speculative run (MTP) of the same model, greedy, "
                   "5-shot GSM8k exactly as vLLM's offline eval builds it, scored under three named scorers, plus upstream's "
                   "output-match check. Parameters come from a `params/*.yaml` case; `workbench run` executes this notebook "
                   "with papermill."),
 new_code_cell('params_file = "../params/tiny-qwen3_5-cpu.yaml"  # a case from params/\noverrides = {}  # e.g. {"num_questions": 50}\nrun_dir = ""  # empty: a new folder under results/', metadata={"tags": ["parameters"]}),
 new_code_cell("from workbench.correctness import pipeline\n\n"
               "ctx = pipeline.prepare(params_file, overrides, run_dir)\n"
               "engines = pipeline.start_engines(ctx)  # they start now; the rest of the set-up runs meanwhile"),
 new_code_cell("import pandas as pd\nfrom IPython.display import HTML, display\n\nfrom workbench.core.pages import use_people_tables\nfrom workbench.correctness import figures\n\n"
               "pd.set_option(\"display.max_colwidth\", 120)\nuse_people_tables()  # no NaN, no six-decimal floats\n"
               "display(HTML(pipeline.describe_case(ctx)))"),
 new_markdown_cell("## Engine runs\nEach engine is a real `vllm.LLM` in its own child process (both at once when the case sets "
                   "`parallel_engines`); its full record is in `records/`."),
 new_code_cell('reference, speculative = pipeline.wait_engines(ctx, engines)\n'
               'display(pd.DataFrame([pipeline.timings(reference), pipeline.timings(speculative)], index=["reference", "speculative"]))'),
 new_code_cell('fig = figures.start_breakdown({"reference": reference, "speculative": speculative})  # each start by phase, from vLLM\'s log'),
 new_markdown_cell("## GSM8k accuracy under every scorer"),
 new_code_cell("questions = pipeline.score(ctx, reference, speculative)\naccuracy = pipeline.accuracy_table(questions)\n"
               "display(pipeline.score_frame(questions).style.format(\"{:.4f}\"))\n"
               "fig = figures.accuracy_vs_threshold(accuracy, ctx.params.threshold, ctx.params.primary_scorer)"),
 new_markdown_cell("## Speculative decoding: acceptance\nAcceptance rate and length over every GSM8k prompt, from "
                   "vLLM's counters. The per-prompt histogram covers only the prompts vLLM sends per-request counts "
                   "for: those its engine core finishes (EOS or max_tokens); a prompt ended by a stop string "
                   "(upstream's \"Question\") is finished in vLLM's front end and carries none."),
 new_code_cell("accept = pipeline.acceptance(speculative)\ndisplay(pipeline.acceptance_frame(accept))\n"
               "fig = figures.acceptance_length(accept, ctx.params.num_speculative_tokens)\n"
               "fig = figures.per_position_acceptance(accept[\"acceptance_rate_per_position\"])"),
 new_markdown_cell("## Do the greedy outputs agree?\nUpstream's check: the output-match prompts (repeat-a-word and GSM8k), "
                   "10 new tokens, compared exactly. Each mismatch is classified at its first divergent token from both "
                   "engines' top logprobs: a *near-tie* when each engine's token is in the other's top-N and the "
                   "reference's top-2 gap is within the dtype's rounding (`tie_margin`), else a *divergence*. "
                   "`match_mode: exact` judges identical texts only (upstream); `tie_aware` also counts near-ties. "
                   "Beside it, the *control*: the reference engine against itself under other batching (reversed "
                   "order, smaller batches). A prompt that differs there differs without speculation: engine noise."),
 new_code_cell("match = pipeline.compare_outputs(ctx, reference, speculative)\ndisplay(pipeline.match_frame(match))\n"
               "fig = figures.match_classes(match)"),
 new_markdown_cell("### Mismatches, at their first divergent token\nBoth engines' top logprobs at that position and "
                   "the class: a near-tie's tokens are each in the other's top-N, with a reference top-2 gap within "
                   "`tie_margin`. *also in control* tells engine noise (the prompt differs in the control too) "
                   "from a difference that comes only with speculation."),
 new_code_cell("display(pipeline.mismatch_frame(match))"),
 new_markdown_cell("### GSM8k completions: where the two runs disagree"),
 new_code_cell(
               "fig = figures.disagreement(questions, ctx.params.primary_scorer)\n"
               "display(pipeline.disagreement_frame(questions, ctx.params.primary_scorer))"),
 new_markdown_cell("## Checks"),
 new_code_cell("summary = pipeline.build_summary(ctx, reference, speculative, questions, match, accept)\n"
               "display(pipeline.checks_frame(summary))"),
 new_code_cell("from workbench.core.checks import assert_checks, verdict\n\nassert_checks(summary.checks)\nprint(verdict(summary.checks))",
               metadata={"tags": ["assertion"]}),
]
write_notebook(cells, "mtp_correctness.ipynb")
