"""What the installed vLLM accepts, read from its source without importing it.

Importing vLLM takes seconds and pulls in torch; validating params must be instant and must
not start anything. So the speculative methods (`SpeculativeMethod`), the engine arguments
(`EngineArgs` fields and `LLM.__init__` parameters) and the speculative config keys are read
from vLLM's files with `ast`. Where the source cannot be read, the fact is unknown (None) and
the check is left to vLLM.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path


@functools.cache
def _vllm_dir() -> Path | None:
    spec = importlib.util.find_spec("vllm")  # a top-level spec does not import the package
    return Path(spec.origin).parent if spec and spec.origin else None


@functools.cache
def _tree(relative: str) -> ast.Module | None:
    root = _vllm_dir()
    path = root / relative if root else None
    if path is None or not path.is_file():
        return None
    return ast.parse(path.read_text(encoding="utf-8"))


def vllm_version() -> str | None:
    root = _vllm_dir()
    version_file = root / "_version.py" if root else None
    if version_file and version_file.is_file():
        for node in ast.walk(ast.parse(version_file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in ("__version__", "version")
                                                    for t in node.targets) and isinstance(node.value, ast.Constant):
                return str(node.value.value)
    return None


def _literal_values(tree: ast.Module, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The strings of a `Name = Literal[...]` alias, following aliases it includes."""
    aliases = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
               for t in node.targets if isinstance(t, ast.Name)}
    value = aliases.get(name)
    if not isinstance(value, ast.Subscript) or name in seen:
        return set()
    items = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
    out: set[str] = set()
    for item in items:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            out.add(item.value)
        elif isinstance(item, ast.Name):
            out |= _literal_values(tree, item.id, seen | {name})
    return out


def _class_fields(tree: ast.Module, class_name: str) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return set()


@functools.cache
def speculative_methods() -> frozenset[str] | None:
    tree = _tree("config/speculative.py")
    values = _literal_values(tree, "SpeculativeMethod") if tree else set()
    return frozenset(values) or None


@functools.cache
def speculative_config_keys() -> frozenset[str] | None:
    tree = _tree("config/speculative.py")
    keys = _class_fields(tree, "SpeculativeConfig") if tree else set()
    return frozenset(keys) or None


@functools.cache
def engine_argument_names() -> frozenset[str] | None:
    """`EngineArgs` fields plus `LLM.__init__`'s own parameters: what `vllm.LLM(**kwargs)` accepts."""
    args_tree, llm_tree = _tree("engine/arg_utils.py"), _tree("entrypoints/llm.py")
    names = _class_fields(args_tree, "EngineArgs") if args_tree else set()
    for node in ast.walk(llm_tree) if llm_tree else ():
        if isinstance(node, ast.ClassDef) and node.name == "LLM":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    names |= {a.arg for a in (*item.args.args, *item.args.kwonlyargs)} - {"self"}
    return frozenset(names) or None
