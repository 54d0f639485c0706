"""The no-sync audit of async scheduling with speculative decoding (issue 6).

`probe` (standard library only: loaded into every vLLM process), `hook` (the generated
sitecustomize and its environment), `child` (the engine child), `stages` (what the notebook
runs), `checks` (`no_sync`, `positive_control`), `views` (what the notebook shows).
Nothing is imported here: `import workbench.audit.probe` must pull in nothing but the standard library.
"""
