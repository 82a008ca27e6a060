"""Whether a work function uses the GPU: such a job may only go to WebGPU workers.

One definition for every side that needs to know (the client adds the `webgpu` requirement
from it). Python work functions use the GPU through `dcp.gpu`; JavaScript ones through the
`gpu` helper global or `navigator.gpu`.

The JavaScript reading is a light scan, not a parser: comments and string literals are blanked
out first, and a source that declares a `gpu` of its own (`let`, `const`, `var`, `function`,
`class`) is taken to mean that one. Known limits: code inside a template literal's `${...}` is
not seen, a regular-expression literal is read as code, and a `gpu` parameter or destructured
name shadows the global unnoticed (such a source is said to use the GPU).
"""

from __future__ import annotations

import ast
import re

__all__ = ["GPU_MODULES", "uses_gpu"]

# The module a Python work function imports to use the GPU, under both of its names.
GPU_MODULES = frozenset({"dcp.gpu", "dcp.runtime.gpu"})

_JS_COMMENT_OR_STRING = re.compile(
    r"""//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`""",
    re.DOTALL,
)
# The helper global used bare: `gpu.`, `gpu[`, `gpu?.`, not as a property (`foo.gpu`).
_JS_BARE_GPU = re.compile(r"(?<![\w$.])gpu\s*(?:\?\.|\.|\[)")
# `navigator.gpu`, and the helper reached through the global object (`globalThis.gpu`).
_JS_GLOBAL_GPU = re.compile(
    r"(?<![\w$.])(?:navigator|globalThis|self|window)\s*\??\.\s*gpu(?![\w$])"
)
_JS_OWN_GPU = re.compile(r"(?<![\w$.])(?:let|const|var|function|class)\s+gpu(?![\w$])")


def uses_gpu(language: str, source: str) -> bool:
    """Whether a work function (wire language "python" or "js") uses the GPU.

    Python: it imports `dcp.gpu` (`from dcp import gpu`, `import dcp.gpu`,
    `from dcp.gpu import ...`, or `import dcp` and then `dcp.gpu`); source that does not parse
    says False (the work function's own checks report it). JavaScript: it uses the `gpu` global
    or `navigator.gpu` (see the module's notes for what the scan does not see).
    """
    if language == "python":
        return _python_uses_gpu(source)
    if language == "js":
        return _js_uses_gpu(source)
    return False


def _python_uses_gpu(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return False
    dcp_names: set[str] = set()  # names bound to the dcp package itself
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _imports_gpu_from(node):
            return True
        if isinstance(node, ast.Import):
            if any(_is_gpu_module(alias.name) for alias in node.names):
                return True
            dcp_names.update(alias.asname or "dcp" for alias in node.names if alias.name == "dcp")
    return bool(dcp_names) and any(_is_gpu_attribute(node, dcp_names) for node in ast.walk(tree))


def _imports_gpu_from(node: ast.ImportFrom) -> bool:
    """`from dcp import gpu`, `from dcp.runtime import gpu`, `from dcp.gpu import ...`."""
    if node.level or node.module is None:
        return False  # a relative import is the work function's own module, never dcp's
    if _is_gpu_module(node.module):
        return True
    return any(_is_gpu_module(f"{node.module}.{alias.name}") for alias in node.names)


def _is_gpu_module(name: str) -> bool:
    return any(name == module or name.startswith(module + ".") for module in GPU_MODULES)


def _is_gpu_attribute(node: ast.AST, dcp_names: set[str]) -> bool:
    """`dcp.gpu` (or `dcp.runtime.gpu`) where `dcp` is a name `import dcp` bound."""
    if not isinstance(node, ast.Attribute):
        return False
    path = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        path.append(value.attr)
        value = value.value
    if not isinstance(value, ast.Name) or value.id not in dcp_names:
        return False
    return _is_gpu_module(".".join(["dcp", *reversed(path)]))


def _js_uses_gpu(source: str) -> bool:
    code = _JS_COMMENT_OR_STRING.sub(" ", source)
    if _JS_GLOBAL_GPU.search(code):
        return True
    return bool(_JS_BARE_GPU.search(code)) and not _JS_OWN_GPU.search(code)
