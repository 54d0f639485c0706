"""Regression baselines: a finished run's acceptance and accuracy, recorded once and held against later runs.

`store` records a baseline from a run folder and refuses one that cannot judge a run (another machine,
model, method or draft length); `checks` registers the `*_vs_baseline` checks; `cli` is
`workbench baseline record`.
"""
