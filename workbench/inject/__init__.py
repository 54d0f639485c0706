"""Injected regressions (positive controls): named faults installed into the speculative engine only.

`faults` (the registry: what each fault does to a row, standard library only), `points` (where
in vLLM a fault patches, standard library at import time), `runtime` (what the generated
sitecustomize installs in every engine process), `stages` (what the correctness pipeline calls:
params check, environment, the record of what was injected).
Nothing is imported here: `import workbench.inject.runtime` must pull in nothing but the standard library.
"""
