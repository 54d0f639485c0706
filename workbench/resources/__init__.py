"""Packaged resources: the notebooks, the params cases and the shipped tiny model.

They live inside the package so a wheel carries them (`importlib.resources`); the repository's
top-level `notebooks/`, `params/` and `models/` are links to these folders.
"""
