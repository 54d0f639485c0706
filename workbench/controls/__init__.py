"""Positive controls: does the correctness check catch the bugs it exists for?

`workbench controls PARAMS` runs the case clean and once per injected regression (`--inject`,
`workbench.inject`), under upstream's `batch` workload and the `churn` workload, each injection
reusing the clean run's reference engine (`reference_record`). `controls.json` (`ControlsSummary`)
and `controls.html` say which checks caught each injection, and which one no check caught.
"""
