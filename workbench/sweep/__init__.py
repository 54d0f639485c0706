"""Sweeps: one case over the Cartesian product of varied params keys, one reference per reference key (issue 18).

`spec.py` (the cells), `executors.py` (where they run: this machine, or Ray tasks), `archive.py` (a cell's
folder sent back from a worker), `runner.py` (plan, run, sweep.json, report), `report.py` (what
notebooks/sweep.ipynb shows), `cli.py` (`workbench sweep`).
"""
