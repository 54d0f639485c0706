"""Builds workbench/resources/notebooks/sweep.ipynb (clean, stable cell ids): python THIS [OUT]."""

from nbformat.v4 import new_code_cell, new_markdown_cell

from notebook_builder import write_notebook

md, code = new_markdown_cell, new_code_cell
cells = [
    md("# Sweep: speculative configs against one reference\n\n"
       "One case run over the Cartesian product of the varied params keys; the reference engine ran once per "
       "distinct reference key and every other cell ran only its speculative engine against it. "
       "`workbench sweep` executes this notebook with papermill into the sweep folder; every number is in "
       "`sweep.json` and each cell's own run folder (with its report)."),
    code('sweep_dir = "."  # the sweep folder (sweep.json)', metadata={"tags": ["parameters"]}),
    code("import pandas as pd\nfrom IPython.display import HTML, display\n\nfrom workbench.core.pages import use_people_tables\n"
         "from workbench.sweep import report\n\n"
         "pd.set_option(\"display.max_colwidth\", 120)\nuse_people_tables()\n"
         "sweep = report.load(sweep_dir)  # report.html opens with its verdict (report.sweep_head)"),
    md("## Cells\nOne row per config: verdict, acceptance, accuracy (primary scorer), output match and its "
       "control, output tokens per second of both engines, and where the cell's reference came from "
       "(*computed*: its own reference engine; *cache*: another cell's)."),
    code("display(report.cells_frame(sweep))"),
    md("## Acceptance against the config\nAcceptance length per config (dotted: the most it can be, 1 + k) and "
       "the acceptance rate at each draft position."),
    code("fig = report.acceptance_figure(sweep)"),
    md("## Speed against the reference\nGSM8k output tokens per second of the speculative engine over the "
       "reference's, per config. A cell that reused another cell's reference is compared with that run's "
       "reference engine, which may have shared the machine with its speculative engine (`parallel_engines`) "
       "while this cell's speculative engine ran alone: compare configs on the speculative tokens/s too. "
       "Speculation pays where decoding is memory-bound (a GPU, small batches), not in a compute-bound batch."),
    code("fig = report.speed_figure(sweep)"),
    md("## Accuracy against the threshold"),
    code("fig = report.accuracy_figure(sweep)"),
    md("## Output match, with its control\nSpeculative against reference beside the reference against itself "
       "under other batching (the engine's own noise floor), and the share the check requires."),
    code("fig = report.match_figure(sweep)"),
    md("## Fastest passing config"),
    code("display(HTML(report.fastest_html(sweep)))"),
]
write_notebook(cells, "sweep.ipynb")
