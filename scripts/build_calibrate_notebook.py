"""Builds notebooks/calibrate_threshold.ipynb (clean: no outputs, no execution counts)."""
from nbformat.v4 import new_code_cell, new_markdown_cell

from notebook_builder import write_notebook

md, code = new_markdown_cell, new_code_cell
cells = [
    md("# Calibrating the GSM8k threshold\n\n"
       "How likely is a threshold to fail a healthy build, and how large a regression does it miss? "
       "Binomial model of the correct count (see `workbench/calibration.py` for the assumptions); the check fails "
       "when a run's accuracy is strictly below the threshold. Either finished run folders (`run_dirs`) or what-if "
       "numbers (`accuracy`, `questions`). `workbench calibrate` executes this notebook with papermill."),
    code('from typing import Optional  # papermill\'s parameter parser reads Optional[X], not X | None\n\n'
         'run_dirs: list[str] = []  # finished run folders (summary.json + questions.csv)\n'
         'accuracy: Optional[float] = None  # what-if: reference accuracy, used when run_dirs is empty\n'
         'questions: Optional[int] = None  # what-if: number of questions\n'
         'threshold: Optional[float] = None  # threshold to evaluate; None: the runs\' own / the recommended one\n'
         'max_false_failure: float = 1e-3  # allowed P(one healthy run fails)\n'
         'scorer: str = "upstream"  # questions.csv scorer column\n'
         'out_dir: str = "."  # where calibration.json goes\n'
         'controls: Optional[str] = None  # a `workbench controls` folder: measured detection beside the power',
         metadata={"tags": ["parameters"]}),
    code("from pathlib import Path\n\nimport pandas as pd\nfrom IPython.display import display\n\n"
         "from workbench.calibration import figures as cf\nfrom workbench.calibration import stats as calibration\n"
         "from workbench.core.pages import use_people_tables\n\n"
         "pd.set_option(\"display.max_colwidth\", 200)\nuse_people_tables()  # no NaN, no six-decimal floats\n"
         "result = calibration.calibrate_inputs(run_dirs, accuracy, questions, threshold, max_false_failure, scorer,\n"
         "                                      controls)\n"
         "runs = calibration.load_runs(run_dirs) if run_dirs else []"),
    md("## Reference accuracy: interval and run-to-run spread\n"
       "The Wilson interval says how far the measured accuracy may sit from the true one; repeated runs show the "
       "healthy noise a threshold must sit clear of."),
    code("fig = cf.show_accuracy(result, threshold)"),
    md("## Reference vs speculative on the same questions (McNemar)\n"
       "Only discordant questions carry evidence of a difference; the exact McNemar test is a binomial test on them."),
    code("cf.show_paired(result, runs, scorer)"),
    md("## False failures and detectable drop across thresholds\n"
       "Left: probability that a healthy build fails (log scale). Right: the smallest drop in true accuracy "
       "caught with 90% probability. Dashed: recommended threshold; dotted: the one in force."),
    code("fig = cf.threshold_curves_figure(result, threshold)\ndisplay(cf.thresholds_frame(result, threshold))"),
    md("## Questions needed\n"
       "Smallest question count separating the reference accuracy from a regressed one at both error rates "
       "(miss rate 10%), and where its threshold goes."),
    code("display(calibration.questions_needed_table(result[\"accuracy\"]))"),
    md("## Acceptance length gate\n"
       "One-sided t prediction bound from repeated speculative runs (a candidate `min_acceptance_length`)."),
    code("fig = cf.show_acceptance(result)"),
    md("## Output match: how often a healthy build fails it\n"
       "Prompts counted against the check (exact: every mismatch; tie_aware: divergences beyond near-ties), pooled "
       "over the runs into a per-prompt rate, and the probability that one run falls below the required count."),
    code("cf.show_output_match(result)"),
    md("## Output match: the threshold the engine's own noise allows\n"
       "Each run's control generates the output-match prompts on the reference engine a second time under other "
       "batching. Prompts that differ there differ without speculation, so any build carries them: the recommended "
       "share is the strictest one a healthy build still passes (overall and per kind), as the accuracy threshold "
       "is recommended above."),
    code("cf.show_output_match_control(result)"),
    md("## Positive controls: measured detection beside the computed power\n"
       "Injected regressions (`workbench controls`): did a check fail, and how likely the model says it was to."),
    code("cf.show_controls(result)"),
    md("## Try a threshold\nMove the slider (live in JupyterLab; rendered once under papermill).",
       metadata={"tags": ["widget"]}),
    code("display(cf.threshold_explorer(result, threshold))", metadata={"tags": ["widget"]}),
    md("## Result"),
    code("path = Path(out_dir) / \"calibration.json\"\npath.write_text(calibration.to_json(result), encoding=\"utf-8\")\n"
         "print(path)\nprint(calibration.yaml_snippet(result, \", \".join(run_dirs) or \"what-if numbers (no runs)\"))"),
]
write_notebook(cells, "calibrate_threshold.ipynb")
