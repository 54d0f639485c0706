"""Build the packaged no-sync audit notebook, clean (no outputs, no execution counts) and deterministic.

Writes workbench/resources/notebooks/no_sync_audit.ipynb (the repository's notebooks/ links there),
or the path given as the first argument. Stable cell ids (`cell-00`, ...): a rebuild changes only
what the builder changed.
"""

from nbformat.v4 import new_code_cell, new_markdown_cell

from notebook_builder import write_notebook


cells = [
    new_markdown_cell(
        "# No-sync audit: async scheduling with speculative decoding\n\n"
        "Mirrors upstream vLLM's `test_no_sync_with_spec_decode`: a probe counts the lazy initialisations of "
        "`CommonAttentionMetadata.seq_lens_cpu` (each is an implicit device->host sync that breaks async "
        "scheduling) in every process of a real `vllm.LLM` built with `async_scheduling=True` and the case's "
        "speculative config, while a few prompts are generated. A positive control then forces such an "
        "initialisation in the model process on purpose and must be counted. `workbench audit` executes this "
        "notebook with papermill."),
    new_code_cell('params_file = "../params/tiny-qwen3_5-cpu.yaml"  # a case from params/\n'
                  'overrides = {}  # e.g. {"max_model_len": 1024}\n'
                  'run_dir = ""  # empty: a new folder under results/\n'
                  'positive_control = True  # afterwards force lazy inits in the model process: they must be counted',
                  metadata={"tags": ["parameters"]}),
    new_code_cell("import pandas as pd\nfrom IPython.display import HTML, Markdown, display\n\n"
                  "from workbench.audit import stages, views\nfrom workbench.core.pages import use_people_tables\n\n"
                  "pd.set_option(\"display.max_colwidth\", 120)\n"
                  "use_people_tables()  # no NaN, no six-decimal floats\n"
                  "ctx = stages.prepare(params_file, overrides, run_dir)\n"
                  "display(HTML(views.describe_case(ctx)))"),
    new_markdown_cell("## Engine run with the probe\nOne real `vllm.LLM` in a child process; the probe is loaded into "
                      "every process vLLM starts (EngineCore, workers) before vLLM is imported. Every probe event is "
                      "in `records/probe_events.jsonl`, the engine record in `records/audit.json`."),
    new_code_cell("result = stages.run_audit(ctx.params, ctx.run_dir, positive_control)\n"
                  "display(views.counts_frame(result))\n"
                  "display(Markdown(f\"**Probe:** {result['probe']['note']}\"))\n"
                  "display(views.outputs_frame(result))"),
    new_markdown_cell("## Where the syncs came from\nA short stack of each counted lazy initialisation (none is the "
                      "expected answer), then of the positive control's."),
    new_code_cell("print(\"syncs during the audit:\\n\" + views.stacks_text(result[\"sync_stacks\"]))\n"
                  "print(\"\\npositive control:\\n\" + views.stacks_text(result[\"positive_control_stacks\"], limit=1))"),
    new_markdown_cell("## Checks\n`no_sync` is skipped (not applicable), never passed, where the engine turned async "
                      "scheduling off (vLLM's CPU platform does)."),
    new_code_cell("from workbench.correctness.pipeline import checks_frame\n\n"
                  "summary = stages.build_summary(ctx, result)\n"
                  "display(checks_frame(summary))"),
    new_code_cell("from workbench.core.checks import assert_checks, verdict\n\n"
                  "assert_checks(summary.checks)\nprint(verdict(summary.checks))",
                  metadata={"tags": ["assertion"]}),
]
write_notebook(cells, "no_sync_audit.ipynb")
