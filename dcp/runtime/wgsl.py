"""Python GPU kernels translated to WGSL compute shaders: a small typed element-wise subset.

One standard-library file that CPython and Pyodide both run (loaded as part of the runtime
package under whatever name the host gives it). `gpu.py` turns a `@gpu.kernel` function into a
shader with `translate_kernel`; a client checks every kernel of a work function before deploying
it with `check_kernels`, so that a mistake names the line of the user's own file.

A kernel is a function run once per element, the first parameter being the element's index::

    from dcp import gpu
    from dcp.gpu import f32, Array

    @gpu.kernel
    def saxpy(i, a: f32, x: Array[f32], y: Array[f32]):
        y[i] = a * x[i] + y[i]

The subset, with Python's meaning wherever the GPU allows it:

- **Signature.** The index first (no annotation, or `int`); then every parameter annotated:
  `f32`, `i32`, `u32` (also `float` = f32, `int` = i32) for a number, `Array[f32]`,
  `Array[i32]`, `Array[u32]` for an array (`gpu.f32`, `gpu.Array[...]` work too). No defaults,
  `*args`, `**kwargs`, keyword-only or positional-only parameters, and no number named `n`
  (the uniform's element count). A kernel writes at least one array and returns nothing.
- **Types.** Every value is f32, i32, u32 or bool, fixed where it is first assigned. Number
  literals take the type of what they meet (`x * 2` with x f32 is `x * 2.0`); int and float give
  f32, i32 and u32 give i32, as in Python. `/` is true division (f32); `//` and `%` floor like
  Python, negative numbers included; `**` with a small int literal exponent multiplies (an int
  stays an int), otherwise it is f32 `pow`. Comparisons (chained too), `and`/`or`/`not` on bools
  (write `x != 0` for a number's truth), `a if c else b`, bitwise `& | ^ ~ << >>` on ints.
- **Variables.** The first assignment declares a variable; an int assigned later to a float
  variable is converted, a float assigned to an int variable is an error (write `int(...)`).
  `+=` and the other augmented assignments work on variables and array elements. A scalar
  parameter may be reassigned: that changes a copy, as in Python.
- **Arrays.** `x[k]` reads and `y[k] = v` writes an element (k any int; a negative literal
  counts from the end); an int stored into an Array[f32] is converted, a float stored into an
  Array[i32]/Array[u32] is an error. `len(x)` is the array's length.
- **Control flow.** `if/elif/else`; `for k in range(stop)`, `range(start, stop)`,
  `range(start, stop, step)` (step a non-zero int literal, negative counts down); `break`,
  `continue`, `pass`, bare `return`. A docstring is allowed.
- **Functions.** `math.` `sqrt sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh
  exp exp2 log log2 log10 floor ceil trunc fabs pow hypot isnan isinf isfinite copysign fmod
  degrees radians`, also imported bare (`from math import sqrt`); `math.pi e tau inf nan`;
  `abs min max round pow int float bool len`; the casts `f32() i32() u32()`. `math.floor`,
  `ceil`, `trunc` and `round(x)` give ints as in Python (round ties to even); `int(x)`
  truncates toward zero; `abs`, `min`, `max` keep their operands' type.
- **Constants.** Names the kernel reads but does not assign are module constants: an int or
  float there (`N = 16`, `from math import pi`) becomes a literal.

Everything else (while loops, strings, lists, calls to your own functions, try, with, ...) is a
`KernelError`: a SyntaxError that names the line and says what to write instead.

Where the GPU differs from Python (the price of 32-bit hardware): ints are 32-bit and wrap on
overflow (u32 subtraction below zero too, `~` on u32 is 32-bit); f32 is single precision;
division or modulo by a zero that is not a literal gives inf/NaN or an unspecified int
instead of raising (a literal zero divisor is a KernelError); f32 subnormals may be 0; math
functions outside their domain give NaN instead of raising; an index out of range reads or
writes some element of the array instead of raising IndexError, and a negative index that is
not a literal does not count from the end; mixing a u32 of 2**31 or more with an i32 converts
it to a negative i32; `range()` loops run on an i32 counter; `min`/`max` of an int and a float
give a float.

The shader layout (what gpu.py binds): arrays at `@group(0) @binding(0..k-1)` in parameter
order (`read_write` storage if the kernel writes it, else `read`), then at binding k one
uniform struct holding the scalar parameters in order, then `n: u32` (the number of
invocations), then u32 padding to a multiple of 16 bytes. `KernelSpec.uniform_layout` lists
those fields: the scalar parameters under their Python names, `("n", "u32")`, then
`("_pad", "u32")` for each pad word (pack them by position). Entry point `main`, workgroup size
64, 2-D dispatch for more than 65535 workgroups.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "WORKGROUP_SIZE",
    "KernelError",
    "KernelSpec",
    "Param",
    "check_kernels",
    "kernel_functions",
    "translate_kernel",
    "translate_source",
]

WORKGROUP_SIZE = 64
KERNEL_DECORATORS = ("kernel", "gpu.kernel", "dcp.gpu.kernel")
SCALAR_ANNOTATIONS = {"f32": "f32", "i32": "i32", "u32": "u32", "float": "f32", "int": "i32"}
INT_TYPES = ("i32", "u32")
TYPE_WORDS = {"f32": "a float", "i32": "an int", "u32": "an int", "bool": "a bool"}
PARAMETER_TYPES = (
    "f32, i32, u32 (or float, int) for a number, Array[f32], Array[i32] or Array[u32] for an array"
)
F32_INF = 3.4028235677973366e38  # the smallest double that rounds to infinity in f32
F32_TINY = 1.1754943508222875e-38  # the smallest normal f32; GPUs flush what is below to 0
I32_MIN, I32_MAX, U32_MAX = -(2**31), 2**31 - 1, 2**32 - 1
LARGEST_EXPANDED_POWER = 8  # x ** 8 multiplies; x ** 9 calls pow

# Every name WGSL reserves or predeclares that the generated code may use: a user name among
# them is renamed. (https://www.w3.org/TR/WGSL/#keyword-summary, #reserved-words)
_RESERVED_WORDS = """
    alias break case const const_assert continue continuing default diagnostic discard else
    enable false fn for if let loop override requires return struct switch true var while
    array atomic bool f16 f32 i32 i64 u32 u64 ptr sampler sampler_comparison vec2 vec3 vec4
    mat2x2 mat2x3 mat2x4 mat3x2 mat3x3 mat3x4 mat4x2 mat4x3 mat4x4 texture_1d texture_2d
    texture_2d_array texture_3d texture_cube texture_cube_array texture_multisampled_2d
    texture_storage_1d texture_storage_2d texture_storage_2d_array texture_storage_3d
    texture_depth_2d texture_depth_2d_array texture_depth_cube texture_depth_cube_array
    texture_depth_multisampled_2d texture_external bitcast type static_assert
    CompileShader ComputeShader DomainShader GeometryShader Hullshader NULL Self abstract active
    alignas alignof as asm asm_fragment async attribute auto await become binding_array cast
    catch class co_await co_return co_yield coherent column_major common compile
    compile_fragment concept const_cast consteval constexpr constinit crate debugger decltype
    delete demote demote_to_helper do dynamic_cast enum explicit export extends extern external
    fallthrough filter final finally friend from fxgroup get goto groupshared handle highp impl
    implements import inline inout instanceof interface layout lowp macro macro_rules match
    mediump meta mod module move mut mutable namespace new nil noexcept noinline
    nointerpolation noperspective null nullptr of operator package packoffset partition pass
    patch pixelfragment precise precision premerge priv protected pub public readonly ref
    regardless register reinterpret_cast require resource restrict self set shared signed
    sizeof smooth snorm static static_cast std subroutine super target template this
    thread_local throw trait try typedef typeid typename typeof union unless unorm unsafe
    unsized use using varying virtual volatile wgsl where with writeonly yield
    abs acos acosh asin asinh atan atan2 atanh ceil clamp cos cosh degrees exp exp2 floor fract
    length log log2 max min pow radians round select sign sin sinh sqrt tan tanh trunc
    arrayLength private storage uniform workgroup function read read_write
    main gid groups params Params
"""
WGSL_RESERVED = frozenset(_RESERVED_WORDS.split())

# ------------------------------------------------------------------------------ interface


class KernelError(SyntaxError):
    """Python that a GPU kernel cannot contain: the message names the line and what to write
    instead, e.g. "<work function>, line 12: while loops are not supported in GPU kernels; use
    for k in range(n)". `filename`, `lineno`, `offset` and `text` are SyntaxError's fields."""

    def __str__(self) -> str:
        if self.filename is None or self.lineno is None:
            return str(self.msg)
        return f"{self.filename}, line {self.lineno}: {self.msg}"


@dataclass(frozen=True)
class Param:
    """One kernel parameter after the index."""

    name: str
    kind: str  # "scalar" or "array"
    dtype: str  # "f32", "i32" or "u32"
    written: bool  # arrays only: the kernel assigns to an element (bound read_write; else read)
    binding: int  # arrays: the @binding index; scalars: -1 (they live in the uniform)


@dataclass(frozen=True)
class KernelSpec:
    """A translated kernel: its WGSL module and how its parameters are bound."""

    name: str
    index: str  # the name of the first parameter (the element index)
    params: tuple[Param, ...]  # every parameter after the index, in order
    wgsl: str  # a complete WGSL module, entry point "main"
    workgroup_size: int
    uniform_binding: int  # the binding of the uniform struct holding the scalars and n
    # (field, dtype) in order: the scalars (Python names), ("n", "u32"), ("_pad", "u32")...
    uniform_layout: tuple[tuple[str, str], ...]


def translate_kernel(
    func: ast.FunctionDef,
    *,
    filename: str = "<kernel>",
    globals_: Mapping[str, object] | None = None,
    source: str | None = None,
    first_line: int = 1,
) -> KernelSpec:
    """The WGSL compute shader of one kernel def; KernelError where the Python is not a kernel.

    `globals_` is the namespace the kernel's free names come from (module constants, `math`);
    without it, bare math names and `math.` are taken as the math module's. `source` gives the
    text of error lines (else linecache is asked); `first_line` is the file line of its line 1.
    """
    environment = _Environment(dict(globals_), complete=True) if globals_ is not None else None
    lines = source.splitlines() if source is not None else None
    where = _Where(filename, lines, first_line - 1)
    return _Translator(func, where, environment or _Environment({}, complete=False)).translate()


def translate_source(
    source: str, name: str | None = None, *, filename: str = "<kernel>"
) -> KernelSpec:
    """The shader of the def named `name` (else the first def) of a Python source."""
    tree = ast.parse(source, filename)
    func = _pick_function(tree, name)
    environment = _static_environment(tree, func)
    return _Translator(func, _Where(filename, source.splitlines(), 0), environment).translate()


def kernel_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """Every def in the tree, nested ones too, decorated with kernel, gpu.kernel or
    dcp.gpu.kernel (called or not), in source order."""
    return [node for node in _decorated_kernels(tree) if isinstance(node, ast.FunctionDef)]


def check_kernels(source: str, *, filename: str = "<work function>", first_line: int = 1) -> None:
    """Translate every kernel of a work function's source; KernelError for the first bad one,
    its line counted so that line 1 of `source` is line `first_line` of the user's file.

    A source that is not Python raises the parser's SyntaxError (lines counted the same way).
    Constants the kernels read are taken from the source where it assigns them a number; a
    constant it computes at run time is checked as an int.
    """
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as error:
        if error.lineno is not None:
            error.lineno += first_line - 1
        if error.end_lineno is not None:
            error.end_lineno += first_line - 1
        raise
    where = _Where(filename, source.splitlines(), first_line - 1)
    for func in _decorated_kernels(tree):
        environment = _static_environment(tree, func, placeholders=True)
        _Translator(func, where, environment).translate()


# ---------------------------------------------------------------------- finding kernels


def _decorated_kernels(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_is_kernel_decorator(decorator) for decorator in node.decorator_list)
    ]
    return sorted(found, key=lambda node: (node.lineno, node.col_offset))


def _is_kernel_decorator(node: ast.expr) -> bool:
    if isinstance(node, ast.Call):
        node = node.func
    return _dotted_name(node) in KERNEL_DECORATORS


def _dotted_name(node: ast.expr) -> str | None:
    """The dotted name of an expression such as a.b.c; None for any other expression."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base is not None else None
    return None


def _pick_function(tree: ast.Module, name: str | None) -> ast.FunctionDef:
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    defs += sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node not in defs),
        key=lambda node: node.lineno,
    )
    for func in defs:
        if name is None or func.name == name:
            return func
    raise ValueError(f"the source defines no function named {name}" if name else "no function")


# --------------------------------------------------------------------------- environment

_OPAQUE = object()  # a name the source binds to something other than a known constant


@dataclass
class _Environment:
    """Where a kernel's free names come from.

    `complete`: the values are the real namespace, so a name missing there is undefined.
    `placeholders`: a name bound to an unknown value is checked as if it were an i32 (the
    static check of a source, which cannot run it).
    """

    values: dict[str, object]
    complete: bool
    placeholders: bool = False


def _static_environment(
    tree: ast.Module, func: ast.FunctionDef | ast.AsyncFunctionDef, *, placeholders: bool = False
) -> _Environment:
    """The names a kernel can see, read from the source: the module's, then each enclosing
    function's, with the numbers they are assigned where that can be worked out."""
    values: dict[str, object] = {}
    for statement in tree.body:
        _bind_statement(statement, values)
    for enclosing in _enclosing_functions(tree, func):
        values.update(dict.fromkeys((arg.arg for arg in _all_arguments(enclosing.args)), _OPAQUE))
        for statement in enclosing.body:
            _bind_statement(statement, values)
    return _Environment(values, complete=False, placeholders=placeholders)


def _enclosing_functions(
    tree: ast.Module, func: ast.AST
) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The defs around `func`, outermost first (class bodies are no scope for it)."""

    def trail_to(node: ast.AST, trail: list[ast.AST]) -> list[ast.AST] | None:
        if node is func:
            return trail
        for child in ast.iter_child_nodes(node):
            found = trail_to(child, [*trail, node])
            if found is not None:
                return found
        return None

    trail = trail_to(tree, []) or []
    return [node for node in trail if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def _all_arguments(args: ast.arguments) -> list[ast.arg]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return every + [arg for arg in (args.vararg, args.kwarg) if arg is not None]


def _bind_statement(statement: ast.stmt, values: dict[str, object]) -> None:
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            module = math if alias.name == "math" else _OPAQUE
            values[alias.asname or alias.name.split(".")[0]] = module
    elif isinstance(statement, ast.ImportFrom):
        for alias in statement.names:
            found = getattr(math, alias.name, _OPAQUE) if statement.module == "math" else _OPAQUE
            values[alias.asname or alias.name] = found
    elif isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        value = _fold_constant(statement.value, values)
        for target in targets:
            for name in _bound_names(target):
                values[name] = value if isinstance(target, ast.Name) else _OPAQUE
    elif isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        combined = ast.BinOp(statement.target, statement.op, statement.value)
        values[statement.target.id] = _fold_constant(combined, values)
    elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        values[statement.name] = _OPAQUE
    else:
        for node in ast.walk(statement):
            for name in _bound_names(node):
                values[name] = _OPAQUE


def _bound_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id] if isinstance(node.ctx, ast.Store) else []
    if isinstance(node, ast.Tuple | ast.List):
        return [name for element in node.elts for name in _bound_names(element)]
    if isinstance(node, ast.Starred):
        return _bound_names(node.value)
    return []


def _fold_constant(node: ast.expr, values: Mapping[str, object]) -> object:
    """The number an expression of literals and known constants comes to, else _OPAQUE."""
    try:
        return _fold(node, values)
    except (ArithmeticError, ValueError, TypeError, _NotConstantError):
        return _OPAQUE


class _NotConstantError(Exception):
    pass


_FOLD_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: lambda a, b: _checked_power(a, b),
    ast.LShift: lambda a, b: _checked_shift(a, b),
    ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_FOLD_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
    ast.Not: operator.not_,
}


def _fold(node: ast.expr, values: Mapping[str, object]) -> int | float | bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name):
        value = values.get(node.id, _OPAQUE)
        if isinstance(value, int | float):
            return value
    if isinstance(node, ast.UnaryOp):
        return _FOLD_UNARY[type(node.op)](_fold(node.operand, values))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD_BINARY:
        left, right = _fold(node.left, values), _fold(node.right, values)
        return _FOLD_BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        module = values.get(node.value.id, math if node.value.id == "math" else None)
        constant = getattr(math, node.attr, None) if module is math else None
        if isinstance(constant, float):
            return constant
    raise _NotConstantError


def _checked_power(base: int | float, exponent: int | float) -> int | float:
    if isinstance(exponent, int) and abs(exponent) > 64 and abs(base) > 1:
        raise OverflowError("too large for a 32-bit number")
    return base**exponent  # type: ignore[no-any-return]


def _checked_shift(value: int, count: int) -> int:
    if count > 64:
        raise OverflowError("too large for a 32-bit number")
    return value << count


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class _Value:
    """A typed WGSL expression. `const` is the Python value of a literal (or an expression of
    literals): it takes the type of what it meets, and its code is written when that is known."""

    code: str
    type: str  # "f32", "i32", "u32" or "bool"
    const: int | float | bool | None = None


def _literal(value: int | float | bool) -> _Value:
    kind = "bool" if isinstance(value, bool) else "i32" if isinstance(value, int) else "f32"
    return _Value("", kind, value)


@dataclass(frozen=True)
class _Where:
    """Where the kernel's source lies: the file's name, its lines, and its first line's number."""

    filename: str
    lines: list[str] | None
    line_offset: int

    def error(self, node: ast.AST | None, message: str) -> KernelError:
        lineno = getattr(node, "lineno", None)
        if lineno is None:
            return KernelError(message, (self.filename, None, None, None))
        text = self._text(lineno)
        offset = getattr(node, "col_offset", -1) + 1
        return KernelError(message, (self.filename, lineno + self.line_offset, offset, text))

    def _text(self, lineno: int) -> str | None:
        if self.lines is not None:
            return self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else None
        line = linecache.getline(self.filename, lineno + self.line_offset)
        return line.rstrip("\n") or None


@dataclass
class _Local:
    """A variable of the kernel: its WGSL name, its type once assigned."""

    wgsl: str
    type: str | None = None
    assigned: bool = False
    hoisted: bool = True  # declared at the top of main (Python variables live function-wide)


@dataclass
class _Namer:
    """WGSL names for Python names: kept where WGSL allows them, suffixed where they clash."""

    user_names: set[str]
    taken: set[str] = field(default_factory=set)
    mapping: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def user(self, name: str) -> str:
        if name not in self.mapping:
            self.mapping[name] = self._free(name)
        return self.mapping[name]

    def fresh(self, stem: str) -> str:
        """A name for the translation's own temporaries (no user name starts with dcp_)."""
        self.counter += 1
        return f"dcp_{stem}{self.counter}"

    def _free(self, name: str) -> str:
        if _wgsl_allows(name) and name not in self.taken:
            self.taken.add(name)
            return name
        stem = name.strip("_") or "v"
        stem = f"v{stem}" if stem.startswith("dcp_") else stem
        for number in range(1, 10_000):
            candidate = f"{stem}_{number}"
            if _wgsl_allows(candidate) and candidate not in self.taken | self.user_names:
                self.taken.add(candidate)
                return candidate
        raise AssertionError("unreachable")


def _wgsl_allows(name: str) -> bool:
    return (
        name not in WGSL_RESERVED
        and name != "_"
        and not name.startswith("__")
        and not name.startswith("dcp_")
        and name.isidentifier()
    )


# ---------------------------------------------------------------------- WGSL helpers

_INF = "bitcast<f32>(dcp_inf_bits)"
_NAN = "bitcast<f32>(dcp_nan_bits)"

# Helper functions a translation may use; each is written out once, only where used. Infinity
# and NaN come from private variables: WGSL rejects them as constant expressions.
_HELPERS: dict[str, tuple[tuple[str, ...], str]] = {
    "dcp_inf_bits": ((), "var<private> dcp_inf_bits: u32 = 0x7f800000u;"),
    "dcp_nan_bits": ((), "var<private> dcp_nan_bits: u32 = 0x7fc00000u;"),
    "dcp_floordiv_i32": (
        (),
        "fn dcp_floordiv_i32(a: i32, b: i32) -> i32 {\n"
        "  let q = a / b;\n"
        "  if ((a % b != 0i) && ((a < 0i) != (b < 0i))) {\n"
        "    return q - 1i;\n"
        "  }\n"
        "  return q;\n"
        "}",
    ),
    "dcp_mod_i32": (
        (),
        "fn dcp_mod_i32(a: i32, b: i32) -> i32 {\n"
        "  let r = a % b;\n"
        "  if ((r != 0i) && ((r < 0i) != (b < 0i))) {\n"
        "    return r + b;\n"
        "  }\n"
        "  return r;\n"
        "}",
    ),
    "dcp_floordiv_f32": (
        (),
        "fn dcp_floordiv_f32(a: f32, b: f32) -> f32 {\n  return floor(a / b);\n}",
    ),
    "dcp_mod_f32": (
        (),
        "fn dcp_mod_f32(a: f32, b: f32) -> f32 {\n  return a - b * floor(a / b);\n}",
    ),
    "dcp_fmod_f32": (
        (),
        "fn dcp_fmod_f32(a: f32, b: f32) -> f32 {\n  return a - b * trunc(a / b);\n}",
    ),
    "dcp_pow_f32": (
        ("dcp_inf_bits", "dcp_nan_bits"),
        # Python's a ** b: 0 ** 0 is 1, a negative base takes an integral exponent.
        "fn dcp_pow_f32(a: f32, b: f32) -> f32 {\n"
        "  if (b == 0.0f) {\n"
        "    return 1.0f;\n"
        "  }\n"
        "  if (a == 0.0f) {\n"
        f"    return select({_INF}, 0.0f, b > 0.0f);\n"
        "  }\n"
        "  let m = pow(abs(a), b);\n"
        "  if (a > 0.0f) {\n"
        "    return m;\n"
        "  }\n"
        "  if (b != trunc(b)) {\n"
        f"    return {_NAN};\n"
        "  }\n"
        "  return select(m, -m, fract(b * 0.5f) != 0.0f);\n"
        "}",
    ),
}

# math functions of one float argument that WGSL has under the same name (or the given one)
_MATH_FLOAT_FUNCTIONS = {
    "sqrt": "sqrt",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "asinh": "asinh",
    "acosh": "acosh",
    "atanh": "atanh",
    "exp": "exp",
    "exp2": "exp2",
    "log2": "log2",
    "fabs": "abs",
    "degrees": "degrees",
    "radians": "radians",
}
_MATH_INT_RESULTS = ("floor", "ceil", "trunc")
_MATH_OTHER = (
    *("log", "log10", "atan2", "pow", "hypot", "isnan", "isinf", "isfinite", "copysign", "fmod"),
)
MATH_FUNCTIONS = frozenset((*_MATH_FLOAT_FUNCTIONS, *_MATH_INT_RESULTS, *_MATH_OTHER))
MATH_CONSTANTS = ("pi", "e", "tau", "inf", "nan")
BUILTIN_FUNCTIONS = ("abs", "min", "max", "round", "pow", "int", "float", "bool", "len")
CASTS = ("f32", "i32", "u32")
GPU_MODULES = ("gpu", "dcp.gpu")

_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.MatMult: "@",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}

_NOT_IN_KERNELS = "not supported in GPU kernels"
_UNSUPPORTED_STATEMENTS: dict[str, str] = {
    "While": f"while loops are {_NOT_IN_KERNELS}; use for k in range(n), with break to stop early",
    "Try": f"try statements are {_NOT_IN_KERNELS}: a kernel cannot raise or catch exceptions; "
    "test values with if",
    "TryStar": f"try statements are {_NOT_IN_KERNELS}: a kernel cannot raise or catch exceptions",
    "With": f"with statements are {_NOT_IN_KERNELS}; use them outside the kernel",
    "AsyncWith": f"async with is {_NOT_IN_KERNELS}; use it outside the kernel",
    "AsyncFor": f"async for is {_NOT_IN_KERNELS}; use for k in range(n)",
    "FunctionDef": f"nested def is {_NOT_IN_KERNELS}; write the computation inline in the kernel",
    "AsyncFunctionDef": f"nested def is {_NOT_IN_KERNELS}; write the computation inline",
    "ClassDef": f"class definitions are {_NOT_IN_KERNELS}; define classes outside the kernel",
    "Global": f"global statements are {_NOT_IN_KERNELS}; pass values in as scalar parameters "
    "and results out through an array",
    "Nonlocal": f"nonlocal statements are {_NOT_IN_KERNELS}; pass values in as scalar "
    "parameters and results out through an array",
    "Delete": f"del is {_NOT_IN_KERNELS}; a variable lives until the kernel ends",
    "Assert": f"assert is {_NOT_IN_KERNELS}: a kernel cannot raise; test the condition with if "
    "and write a flag into an array",
    "Raise": f"raise is {_NOT_IN_KERNELS}: a kernel cannot raise; write a flag into an array",
    "Import": f"import inside a kernel is {_NOT_IN_KERNELS}; import math at module level",
    "ImportFrom": f"import inside a kernel is {_NOT_IN_KERNELS}; import at module level",
    "Match": f"match statements are {_NOT_IN_KERNELS}; use if/elif/else",
    "TypeAlias": f"type aliases are {_NOT_IN_KERNELS}; define them outside the kernel",
}
_UNSUPPORTED_EXPRESSIONS: dict[str, str] = {
    "Lambda": f"lambda is {_NOT_IN_KERNELS}; write the computation inline",
    "ListComp": f"list comprehensions are {_NOT_IN_KERNELS}; use a for loop over range(...) "
    "and write into an array",
    "SetComp": f"set comprehensions are {_NOT_IN_KERNELS}; use a for loop over range(...)",
    "DictComp": f"dict comprehensions are {_NOT_IN_KERNELS}; use a for loop over range(...)",
    "GeneratorExp": f"generator expressions are {_NOT_IN_KERNELS}; use a for loop over range(...)",
    "List": f"lists are {_NOT_IN_KERNELS}; pass data in an Array parameter",
    "Tuple": f"tuples are {_NOT_IN_KERNELS}; use one variable per value",
    "Set": f"sets are {_NOT_IN_KERNELS}; pass data in an Array parameter",
    "Dict": f"dicts are {_NOT_IN_KERNELS}; pass data in an Array parameter",
    "JoinedStr": f"strings are {_NOT_IN_KERNELS}: kernels compute numbers only",
    "TemplateStr": f"strings are {_NOT_IN_KERNELS}: kernels compute numbers only",
    "Await": f"await is {_NOT_IN_KERNELS}; a kernel is a plain def",
    "Yield": f"yield is {_NOT_IN_KERNELS}; write results into an array",
    "YieldFrom": f"yield is {_NOT_IN_KERNELS}; write results into an array",
    "NamedExpr": f"the := operator is {_NOT_IN_KERNELS}; assign on a line of its own",
    "Starred": f"* unpacking is {_NOT_IN_KERNELS}; pass each value separately",
    "Slice": f"slices are {_NOT_IN_KERNELS}; index one element at a time: x[k]",
}


# ---------------------------------------------------------------------------- translator


class _Translator:
    """Translates one kernel def; `translate()` gives its KernelSpec or raises KernelError."""

    def __init__(
        self, func: ast.FunctionDef | ast.AsyncFunctionDef, where: _Where, env: _Environment
    ) -> None:
        self.func = func
        self.where = where
        self.env = env
        self.namer = _Namer(_identifiers(func))
        self.lines: list[str] = []
        self.depth = 1
        self.loops = 0
        self.helpers: set[str] = set()
        self.arrays: dict[str, Param] = {}
        self.array_names: dict[str, str] = {}
        self.scalars: dict[str, Param] = {}
        self.members: dict[str, str] = {}
        self.locals: dict[str, _Local] = {}
        self.used_arrays: set[str] = set()
        self.index = ""

    # ---- the whole kernel

    def translate(self) -> KernelSpec:
        if isinstance(self.func, ast.AsyncFunctionDef):
            raise self.error(self.func, f"a kernel cannot be async; write def {self.func.name}")
        params = self._signature()
        self._declare_locals()
        self._block(self._body_without_docstring())
        if not any(param.written for param in params):
            raise self.error(
                self.func,
                "a kernel must write at least one array: assign to an element of an Array "
                "parameter, e.g. y[i] = ...",
            )
        layout = self._uniform_layout()
        wgsl = self._module(params, layout)
        return KernelSpec(
            name=self.func.name,
            index=self.func.args.args[0].arg,
            params=params,
            wgsl=wgsl,
            workgroup_size=WORKGROUP_SIZE,
            uniform_binding=len(self.arrays),
            uniform_layout=tuple((name, dtype) for name, dtype, _ in layout),
        )

    def error(self, node: ast.AST | None, message: str) -> KernelError:
        return self.where.error(node, message)

    def _body_without_docstring(self) -> list[ast.stmt]:
        body = self.func.body
        first = body[0]
        docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        if docstring and isinstance(first.value.value, str):  # type: ignore[attr-defined]
            return body[1:]
        return body

    # ---- signature

    def _signature(self) -> tuple[Param, ...]:
        func = self.func
        args = func.args
        self._refuse_parameter_forms(args)
        if getattr(func, "type_params", None):
            raise self.error(func, f"type parameters are {_NOT_IN_KERNELS}; write def {func.name}(")
        if func.returns is not None and not _is_none(func.returns):
            raise self.error(
                func.returns, "a kernel returns nothing; write results into an Array parameter"
            )
        if not args.args:
            raise self.error(func, "a kernel's first parameter is the element index: def k(i, ...)")
        index = args.args[0]
        if index.annotation is not None and _annotation_word(index.annotation) not in (
            "int",
            "i32",
        ):
            raise self.error(index, f"the index {index.arg} is an int: leave it unannotated")
        self.index = index.arg
        params = [self._param(arg, position) for position, arg in enumerate(args.args[1:])]
        names = [index.arg] + [param.name for param in params]
        for position, name in enumerate(names):
            if name in names[:position]:
                raise self.error(args.args[position], f"duplicate parameter {name}")
        self._bind_params(params)
        return tuple(params)

    def _refuse_parameter_forms(self, args: ast.arguments) -> None:
        refusals: list[tuple[ast.AST | None, str]] = [
            (args.posonlyargs[0] if args.posonlyargs else None, "positional-only parameters (/)"),
            (args.vararg, "*args"),
            (args.kwonlyargs[0] if args.kwonlyargs else None, "keyword-only parameters"),
            (args.kwarg, "**kwargs"),
            (args.defaults[0] if args.defaults else None, "default parameter values"),
        ]
        for node, what in refusals:
            if node is not None:
                raise self.error(
                    node,
                    f"{what} are {_NOT_IN_KERNELS}; declare each parameter with its type: "
                    "def k(i, a: f32, x: Array[f32])",
                )

    def _param(self, arg: ast.arg, position: int) -> Param:
        kind_dtype = _parse_annotation(arg.annotation)
        if kind_dtype is None:
            word = _annotation_word(arg.annotation) if arg.annotation is not None else None
            if word == "bool":
                message = f"parameter {arg.arg} is a bool; pass an int (0 or 1) as i32"
            else:
                message = f"parameter {arg.arg} needs a type annotation: {PARAMETER_TYPES}"
            raise self.error(arg, message)
        kind, dtype = kind_dtype
        if kind == "scalar" and arg.arg == "n":
            raise self.error(
                arg,
                "a scalar parameter cannot be named n: the shader's uniform holds the element "
                "count under that name; call it count, size, ...",
            )
        return Param(arg.arg, kind, dtype, written=False, binding=-1)

    def _bind_params(self, params: list[Param]) -> None:
        written = _written_arrays(self.func)
        for position, param in enumerate(params):
            if param.kind == "array":
                binding = len(self.arrays)
                params[position] = Param(
                    param.name, "array", param.dtype, param.name in written, binding
                )
                self.arrays[param.name] = params[position]
                self.array_names[param.name] = self.namer.user(param.name)
            else:
                self.scalars[param.name] = param
        taken = {"n"}  # the element count
        for name in self.scalars:
            member = self.namer.user(name)
            while member in taken or member.startswith("_pad"):
                member = self.namer.fresh(name.strip("_") or "v")
            self.members[name] = member
            taken.add(member)

    def _uniform_layout(self) -> list[tuple[str, str, str]]:
        """(layout name, dtype, WGSL member) of each 4-byte field of the uniform struct."""
        fields = [(name, p.dtype, self.members[name]) for name, p in self.scalars.items()]
        fields.append(("n", "u32", "n"))
        pads = -len(fields) % 4
        return fields + [("_pad", "u32", f"_pad{number}") for number in range(pads)]

    def _declare_locals(self) -> None:
        """Every name the body assigns is a local (Python's rule); parameters it assigns get
        a local copy."""
        assigned = _assigned_names(self.func.body)
        for name in assigned:
            if name in self.arrays:
                continue  # refused where it is assigned
            local = _Local(self.namer.user(name))
            if name == self.index:
                local.type, local.assigned, local.hoisted = "i32", True, False
            elif name in self.scalars:
                local.type, local.assigned = self.scalars[name].dtype, True
            self.locals[name] = local

    # ---- the WGSL module

    def _module(self, params: tuple[Param, ...], layout: list[tuple[str, str, str]]) -> str:
        out = [f"// GPU kernel {self.func.name}, translated from Python by dcp.runtime.wgsl", ""]
        out.append("struct Params {")
        out += [f"  {member}: {dtype}," for _, dtype, member in layout]
        out += ["}", ""]
        for param in params:
            if param.kind == "array":
                access = "read_write" if param.written else "read"
                out.append(
                    f"@group(0) @binding({param.binding}) var<storage, {access}> "
                    f"{self.array_names[param.name]}: array<{param.dtype}>;"
                )
        out.append(f"@group(0) @binding({len(self.arrays)}) var<uniform> params: Params;")
        out.append("")
        for helper in self._helpers_in_order():
            out += [_HELPERS[helper][1], ""]
        out += self._entry_point()
        return "\n".join(out) + "\n"

    def _helpers_in_order(self) -> list[str]:
        needed = set(self.helpers)
        for helper in list(needed):
            needed.update(_HELPERS[helper][0])
        return [helper for helper in _HELPERS if helper in needed]

    def _entry_point(self) -> list[str]:
        index = self.locals.get(self.index)
        index_name = index.wgsl if index is not None else self.namer.user(self.index)
        keyword = "var" if index is not None else "let"
        out = [
            f"@compute @workgroup_size({WORKGROUP_SIZE})",
            "fn main(@builtin(global_invocation_id) gid: vec3<u32>, "
            "@builtin(num_workgroups) groups: vec3<u32>) {",
            f"  {keyword} {index_name}: i32 = i32(gid.x + gid.y * groups.x * {WORKGROUP_SIZE}u);",
            f"  if (u32({index_name}) >= params.n) {{",
            "    return;",
            "  }",
        ]
        for name, local in self.locals.items():
            if name in self.scalars:
                out.append(f"  var {local.wgsl}: {local.type} = params.{self.members[name]};")
            elif local.hoisted and local.type is not None:
                out.append(f"  var {local.wgsl}: {local.type};")
        for name in self.arrays:
            if name not in self.used_arrays:  # keeps its binding in a layout made from the shader
                out.append(f"  _ = &{self.array_names[name]};")
        return out + self.lines + ["}"]

    # ---- statements

    def _line(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def _block(self, statements: Iterable[ast.stmt]) -> None:
        for statement in statements:
            self._statement(statement)

    def _indented(self, statements: Iterable[ast.stmt]) -> None:
        self.depth += 1
        self._block(statements)
        self.depth -= 1

    def _statement(self, node: ast.stmt) -> None:
        handler = _STATEMENTS.get(type(node))
        if handler is not None:
            handler(self, node)
            return
        kind = type(node).__name__
        message = _UNSUPPORTED_STATEMENTS.get(kind, f"this statement ({kind}) is {_NOT_IN_KERNELS}")
        raise self.error(node, message)

    def _assign(self, node: ast.Assign) -> None:
        if len(node.targets) > 1:
            raise self.error(
                node,
                f"chained assignment (a = b = ...) is {_NOT_IN_KERNELS}; "
                "write one assignment per line",
            )
        target = node.targets[0]
        if isinstance(target, ast.Tuple | ast.List):
            raise self.error(
                node,
                f"tuple unpacking (a, b = ...) is {_NOT_IN_KERNELS}; assign each variable on a "
                "line of its own",
            )
        self._store(target, self.expr(node.value), node)

    def _ann_assign(self, node: ast.AnnAssign) -> None:
        target = node.target
        dtype = SCALAR_ANNOTATIONS.get(_annotation_word(node.annotation) or "")
        if not isinstance(target, ast.Name) or dtype is None:
            raise self.error(
                node, "an annotated assignment in a kernel is name: f32 / i32 / u32 = value"
            )
        local = self._local_for_store(target.id, node)
        if local.type is not None and local.type != dtype:
            raise self.error(
                node, f"{target.id} is already {TYPE_WORDS[local.type]} ({local.type})"
            )
        local.type = dtype
        if node.value is not None:
            self._store(target, self.expr(node.value), node)

    def _aug_assign(self, node: ast.AugAssign) -> None:
        target = node.target
        if not isinstance(target, ast.Name | ast.Subscript):
            raise self.error(node, f"augmented assignment to this target is {_NOT_IN_KERNELS}")
        load = ast.copy_location(
            type(target)(**{**vars(target), "ctx": ast.Load()}),
            target,
        )
        current = self.expr(load)
        self._store(target, self.binary(node.op, current, self.expr(node.value), node), node)

    def _store(self, target: ast.expr, value: _Value, node: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            self._store_name(target.id, value, node)
        elif isinstance(target, ast.Subscript):
            self._store_element(target, value, node)
        elif isinstance(target, ast.Attribute):
            raise self.error(node, f"assigning to an attribute is {_NOT_IN_KERNELS}")
        else:
            raise self.error(node, f"this assignment target is {_NOT_IN_KERNELS}")

    def _local_for_store(self, name: str, node: ast.AST) -> _Local:
        if name in self.arrays:
            raise self.error(
                node,
                f"{name} is an array parameter: assign to its elements ({name}[k] = ...), "
                "not to the name",
            )
        return self.locals[name]

    def _store_name(self, name: str, value: _Value, node: ast.stmt) -> None:
        local = self._local_for_store(name, node)
        if local.type is None:
            local.type = value.type
        else:
            value = self._assignable(
                value, local.type, node, f"{name} holds {TYPE_WORDS[local.type]}"
            )
        local.assigned = True
        self._line(f"{local.wgsl} = {self.code(value, node)};")

    def _store_element(self, target: ast.Subscript, value: _Value, node: ast.stmt) -> None:
        name, index = self._element(target)
        dtype = self.arrays[name].dtype
        value = self._assignable(value, dtype, node, f"{name} is Array[{dtype}]")
        self._line(f"{self.array_names[name]}[{index}] = {self.code(value, node)};")

    def _assignable(self, value: _Value, dtype: str, node: ast.AST, holder: str) -> _Value:
        """`value` as a `dtype` where Python would store the same number; KernelError else."""
        if value.type == dtype:
            return value
        if value.type == "bool":
            raise self.error(node, f"{holder} but this value is a bool; write 1 if ... else 0")
        if dtype == "bool":
            raise self.error(node, f"{holder} but this value is a number; write value != 0")
        if dtype in INT_TYPES and value.type == "f32":
            raise self.error(
                node,
                f"{holder} but this value is a float; write int(...) to truncate it "
                "(or round(...)), or start from a float (e.g. 0.0) where it is first assigned",
            )
        return self.convert(value, dtype, node)

    def _if(self, node: ast.If) -> None:
        self._line(f"if {_parenthesised(self.condition(node.test, 'if'))} {{")
        self._indented(node.body)
        orelse = node.orelse
        while len(orelse) == 1 and isinstance(orelse[0], ast.If):
            elif_ = orelse[0]
            self._line(f"}} else if {_parenthesised(self.condition(elif_.test, 'elif'))} {{")
            self._indented(elif_.body)
            orelse = elif_.orelse
        if orelse:
            self._line("} else {")
            self._indented(orelse)
        self._line("}")

    def _for(self, node: ast.For) -> None:
        if node.orelse:
            raise self.error(node, f"for ... else is {_NOT_IN_KERNELS}; use a flag variable")
        if not isinstance(node.target, ast.Name):
            raise self.error(
                node, "a for loop in a kernel has one loop variable: for k in range(n)"
            )
        start, stop, step = self._range(node.iter)
        counter, limit = self.namer.fresh("k"), self.namer.fresh("stop")
        # Python evaluates range() once and hands out values: the loop variable is a copy, so
        # the body may change it without changing the iteration.
        self._line(f"let {limit}: i32 = {stop};")
        test = "<" if step > 0 else ">"
        step_code = self.code(_literal(step), node)
        self._line(
            f"for (var {counter}: i32 = {start}; {counter} {test} {limit}; "
            f"{counter} += {step_code}) {{"
        )
        self.depth += 1
        self._store_name(node.target.id, _Value(counter, "i32"), node)
        self.loops += 1
        self._block(node.body)
        self.loops -= 1
        self.depth -= 1
        self._line("}")

    def _range(self, node: ast.expr) -> tuple[str, str, int]:
        """(start code, stop code, step) of `range(...)`; KernelError for any other iterable."""
        if not (isinstance(node, ast.Call) and self._callee(node) == "range"):
            raise self.error(
                node, "a for loop in a kernel iterates over range(...): for k in range(len(x))"
            )
        self._plain_arguments(node, "range", 1, 3)
        args = [self._range_bound(arg) for arg in node.args]
        if len(args) == 1:
            return self.code(_literal(0), node), args[0], 1
        step = 1
        if len(node.args) == 3:
            value = self.expr(node.args[2])
            if not (isinstance(value.const, int) and value.type == "i32") or value.const == 0:
                raise self.error(
                    node.args[2],
                    "the step of range() in a kernel is a non-zero int literal, e.g. 2 or -1",
                )
            step = int(value.const)
        return args[0], args[1], step

    def _range_bound(self, node: ast.expr) -> str:
        value = self.expr(node)
        if value.type not in INT_TYPES:
            raise self.error(
                node, f"range() takes ints; this is {TYPE_WORDS[value.type]}: write int(...)"
            )
        return self.code(self.convert(value, "i32", node), node)

    def _break(self, node: ast.Break) -> None:
        if not self.loops:
            raise self.error(node, "break outside a loop")
        self._line("break;")

    def _continue(self, node: ast.Continue) -> None:
        if not self.loops:
            raise self.error(node, "continue outside a loop")
        self._line("continue;")

    def _return(self, node: ast.Return) -> None:
        if node.value is not None and not _is_none(node.value):
            raise self.error(
                node,
                "a kernel returns no value; write the result into an array parameter "
                "(y[i] = ...) and use a bare return to stop early",
            )
        self._line("return;")

    def _pass(self, node: ast.Pass) -> None:
        pass

    def _expression_statement(self, node: ast.Expr) -> None:
        value = node.value
        if isinstance(value, ast.Constant) and value.value is Ellipsis:
            return
        if isinstance(value, ast.Constant) and isinstance(value.value, str | bytes):
            raise self.error(node, f"strings are {_NOT_IN_KERNELS}: kernels compute numbers only")
        if isinstance(value, ast.Call) and _dotted_name(value.func) == "print":
            self._callee(value)  # its own message
        self.expr(value)
        raise self.error(
            node,
            "this expression does nothing in a kernel; assign its value (v = ...) or store it "
            "into an array",
        )

    # ---- expressions

    def expr(self, node: ast.expr) -> _Value:
        handler = _EXPRESSIONS.get(type(node))
        if handler is not None:
            return handler(self, node)
        kind = type(node).__name__
        message = _UNSUPPORTED_EXPRESSIONS.get(
            kind, f"this expression ({kind}) is {_NOT_IN_KERNELS}"
        )
        raise self.error(node, message)

    def code(self, value: _Value, node: ast.AST) -> str:
        """The WGSL text of a value; literals are written in their final type here."""
        if value.const is None:
            return value.code
        return self._literal_code(value.const, value.type, node)

    def _literal_code(self, value: int | float | bool, dtype: str, node: ast.AST) -> str:
        if dtype == "bool":
            return "true" if value else "false"
        if dtype == "f32":
            return self._float_code(float(value))
        number = int(value)
        low, high = (I32_MIN, I32_MAX) if dtype == "i32" else (0, U32_MAX)
        if not low <= number <= high:
            raise self.error(node, f"{number} does not fit in {dtype} (a 32-bit int)")
        suffix = "i" if dtype == "i32" else "u"
        if number == I32_MIN:
            return "(-2147483647i - 1i)"
        return f"(-{-number}{suffix})" if number < 0 else f"{number}{suffix}"

    def _float_code(self, number: float) -> str:
        if math.isnan(number):
            self.helpers.add("dcp_nan_bits")
            return _NAN
        if abs(number) < F32_TINY:
            number = math.copysign(0.0, number)
        if abs(number) >= F32_INF:
            self.helpers.add("dcp_inf_bits")
            return _INF if number > 0 else f"(-{_INF})"
        text = repr(number)
        return f"({text}f)" if text.startswith("-") else f"{text}f"

    def convert(self, value: _Value, dtype: str, node: ast.AST) -> _Value:
        """`value` as a `dtype` (numbers only); a literal is rewritten, anything else cast."""
        if value.type == dtype:
            return value
        if value.const is not None:
            if dtype == "f32":
                return _literal(float(value.const))
            return _Value("", dtype, value.const)  # an int literal: its code is written later
        return _Value(f"{dtype}({value.code})", dtype)

    def condition(self, node: ast.expr, where: str) -> str:
        value = self.expr(node)
        if value.type != "bool":
            raise self.error(
                node,
                f"the condition of {where} is {TYPE_WORDS[value.type]}, not a bool: a number's "
                "truth is not tested in kernels; write x != 0",
            )
        return self.code(value, node)

    def _constant(self, node: ast.Constant) -> _Value:
        value = node.value
        if isinstance(value, bool | int | float):
            return _literal(value)
        if isinstance(value, str | bytes):
            raise self.error(node, f"strings are {_NOT_IN_KERNELS}: kernels compute numbers only")
        if value is None:
            raise self.error(node, f"None is {_NOT_IN_KERNELS}; use a number")
        if isinstance(value, complex):
            raise self.error(node, f"complex numbers are {_NOT_IN_KERNELS}")
        raise self.error(node, f"{value!r} is {_NOT_IN_KERNELS}")

    def _name(self, node: ast.Name) -> _Value:
        name = node.id
        if name in self.locals:
            local = self.locals[name]
            if not local.assigned or local.type is None:
                raise self.error(
                    node,
                    f"{name} is read before it is assigned; give it a value first "
                    "(e.g. before the loop)",
                )
            return _Value(local.wgsl, local.type)
        if name == self.index:
            return _Value(self.namer.user(name), "i32")
        if name in self.scalars:
            return _Value(f"params.{self.members[name]}", self.scalars[name].dtype)
        if name in self.arrays:
            raise self.error(
                node, f"{name} is an array: index it ({name}[k]) or take its length (len({name}))"
            )
        return self._global(node)

    def _global(self, node: ast.Name) -> _Value:
        name = node.id
        value = self.env.values.get(name, _OPAQUE if not self.env.complete else None)
        if isinstance(value, bool):
            return _literal(value)
        if isinstance(value, numbers.Integral):
            return _literal(int(value))
        if isinstance(value, numbers.Real):
            return _literal(float(value))
        if value is _OPAQUE and self.env.placeholders and name in self.env.values:
            return _Value(self.namer.user(name), "i32")  # a run-time constant: checked as an int
        if value is _OPAQUE and name in self.env.values:
            raise self.error(
                node,
                f"{name} is not a constant the kernel can read: give it an int or float literal "
                "value at module level, or pass it as a scalar parameter",
            )
        if name in self.env.values:
            kind = type(value).__name__
            raise self.error(
                node, f"{name} is a {kind}; a kernel reads int and float constants only"
            )
        if name in MATH_FUNCTIONS or name in BUILTIN_FUNCTIONS or name in CASTS:
            raise self.error(node, f"{name} is a function: call it, {name}(...)")
        raise self.error(
            node,
            f"{name} is not defined in the kernel: a kernel reads its parameters, its own "
            "variables, and int or float constants assigned at module level",
        )

    def _attribute(self, node: ast.Attribute) -> _Value:
        if self._is_math(node.value):
            if node.attr in MATH_CONSTANTS:
                return _literal(getattr(math, node.attr))
            if node.attr in MATH_FUNCTIONS:
                raise self.error(node, f"math.{node.attr} is a function: call it")
            raise self.error(node, f"math.{node.attr} is {_NOT_IN_KERNELS}")
        self._refuse_missing_math(node.value)
        raise self.error(
            node,
            f"attribute access ({ast.unparse(node)}) is {_NOT_IN_KERNELS}; only math constants "
            "and functions (math.pi, math.sqrt(...)) are available",
        )

    def _is_math(self, node: ast.expr) -> bool:
        if not isinstance(node, ast.Name) or node.id in self.locals or node.id in self.arrays:
            return False
        if node.id in self.scalars or node.id == self.index:
            return False
        found = self.env.values.get(node.id)
        return found is math or (found is None and node.id == "math" and not self.env.complete)

    def _refuse_missing_math(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name) and node.id == "math" and "math" not in self.env.values:
            raise self.error(node, "math is not defined; write import math at module level")

    def _subscript(self, node: ast.Subscript) -> _Value:
        name, index = self._element(node)
        return _Value(f"{self.array_names[name]}[{index}]", self.arrays[name].dtype)

    def _element(self, node: ast.Subscript) -> tuple[str, str]:
        """(array name, WGSL index) of x[k]."""
        if not isinstance(node.value, ast.Name) or node.value.id not in self.arrays:
            raise self.error(node, "only Array parameters can be indexed in a kernel")
        name = node.value.id
        self.used_arrays.add(name)
        if isinstance(node.slice, ast.Slice):
            raise self.error(node, _UNSUPPORTED_EXPRESSIONS["Slice"])
        if isinstance(node.slice, ast.Tuple):
            raise self.error(
                node, "arrays in kernels have one dimension: index x[row * width + col]"
            )
        index = self.expr(node.slice)
        if index.type not in INT_TYPES:
            raise self.error(
                node.slice,
                f"an array index is an int; this is {TYPE_WORDS[index.type]}: write int(...)",
            )
        if index.const is not None and index.const < 0:  # counts from the end, as in Python
            return name, f"arrayLength(&{self.array_names[name]}) - {-int(index.const)}u"
        if index.const is not None and index.const > I32_MAX:
            return name, self.code(self.convert(index, "u32", node), node)
        return name, self.code(index, node)

    def _unary(self, node: ast.UnaryOp) -> _Value:
        value = self.expr(node.operand)
        op = type(node.op)
        if op is ast.Not:
            if value.type != "bool":
                raise self.error(
                    node, f"not on a number is {_NOT_IN_KERNELS}; write x == 0 for a number"
                )
            if value.const is not None:
                return _literal(not value.const)
            return _Value(f"(!{value.code})", "bool")
        if value.type == "bool":
            raise self.error(node, "arithmetic on a bool; write 1 if ... else 0 for a number")
        if value.const is not None:
            return self._fold(node, lambda: _FOLD_UNARY[op](value.const))
        if op is ast.UAdd:
            return value
        if op is ast.Invert:
            if value.type == "f32":
                raise self.error(node, "~ takes an int; write int(...)")
            return _Value(f"(~{value.code})", value.type)
        if value.type == "u32":  # Python's -x of a non-negative int is negative
            return _Value(f"(-i32({value.code}))", "i32")
        return _Value(f"(-{value.code})", value.type)

    def _fold(self, node: ast.AST, compute: Callable[[], Any]) -> _Value:
        """A literal computed in Python, so that it means exactly what Python means."""
        try:
            result = compute()
        except ZeroDivisionError:
            raise self.error(node, "division by zero") from None
        except (ArithmeticError, ValueError) as error:
            raise self.error(node, f"this constant has no value: {error}") from None
        except TypeError as error:
            raise self.error(node, f"this operation does not apply here: {error}") from None
        if isinstance(result, complex):
            raise self.error(node, f"this constant is a complex number; {_NOT_IN_KERNELS}")
        return _literal(result)

    def _binop(self, node: ast.BinOp) -> _Value:
        return self.binary(node.op, self.expr(node.left), self.expr(node.right), node)

    def binary(self, op: ast.operator, left: _Value, right: _Value, node: ast.AST) -> _Value:
        kind = type(op)
        symbol = _SYMBOLS[kind]
        if kind is ast.MatMult:
            raise self.error(node, f"the @ operator is {_NOT_IN_KERNELS}")
        bools = left.type == "bool" or right.type == "bool"
        if bools and not (kind in (ast.BitAnd, ast.BitOr, ast.BitXor) and left.type == right.type):
            raise self.error(
                node, f"{symbol} on a bool is {_NOT_IN_KERNELS}; write 1 if ... else 0 for a number"
            )
        if left.const is not None and right.const is not None:
            l_const, r_const = left.const, right.const
            return self._fold(node, lambda: _FOLD_BINARY[kind](l_const, r_const))
        if kind in (ast.Div, ast.FloorDiv, ast.Mod) and right.const == 0:
            raise self.error(node, "division by zero")  # Python raises; WGSL refuses the shader
        return _BINARY[kind](self, kind, left, right, node)

    def unify(self, left: _Value, right: _Value, node: ast.AST) -> tuple[_Value, _Value, str]:
        """Both operands in their common type: a literal takes its neighbour's type; int and
        float give f32; i32 and u32 give i32."""
        if left.const is not None and right.const is None:
            dtype = "f32" if left.type == "f32" else right.type
        elif right.const is not None and left.const is None:
            dtype = "f32" if right.type == "f32" else left.type
        elif "f32" in (left.type, right.type):
            dtype = "f32"
        else:
            dtype = left.type if left.type == right.type else "i32"
        return self.convert(left, dtype, node), self.convert(right, dtype, node), dtype

    def _arithmetic(self, kind: type, left: _Value, right: _Value, node: ast.AST) -> _Value:
        left, right, dtype = self.unify(left, right, node)
        symbol = _SYMBOLS[kind]
        return _Value(f"({self.code(left, node)} {symbol} {self.code(right, node)})", dtype)

    def _true_division(self, kind: type, left: _Value, right: _Value, node: ast.AST) -> _Value:
        left, right = self.convert(left, "f32", node), self.convert(right, "f32", node)
        return _Value(f"({self.code(left, node)} / {self.code(right, node)})", "f32")

    def _floor_division(self, kind: type, left: _Value, right: _Value, node: ast.AST) -> _Value:
        left, right, dtype = self.unify(left, right, node)
        if dtype == "u32":  # both non-negative: WGSL's truncation is Python's floor
            return _Value(
                f"({self.code(left, node)} {'/' if kind is ast.FloorDiv else '%'} "
                f"{self.code(right, node)})",
                dtype,
            )
        helper = f"dcp_{'floordiv' if kind is ast.FloorDiv else 'mod'}_{dtype}"
        self.helpers.add(helper)
        return _Value(f"{helper}({self.code(left, node)}, {self.code(right, node)})", dtype)

    def _bitwise(self, kind: type, left: _Value, right: _Value, node: ast.AST) -> _Value:
        if "f32" in (left.type, right.type):
            raise self.error(node, f"{_SYMBOLS[kind]} takes ints; write int(...)")
        left, right, dtype = self.unify(left, right, node)
        symbol = "!=" if kind is ast.BitXor and dtype == "bool" else _SYMBOLS[kind]
        return _Value(f"({self.code(left, node)} {symbol} {self.code(right, node)})", dtype)

    def _shift(self, kind: type, left: _Value, right: _Value, node: ast.AST) -> _Value:
        if "f32" in (left.type, right.type):
            raise self.error(node, f"{_SYMBOLS[kind]} takes ints; write int(...)")
        if right.const is not None and not 0 <= right.const < 32:
            raise self.error(
                node, f"a shift count is from 0 to 31 on 32-bit ints; got {right.const}"
            )
        count = self.code(self.convert(right, "u32", node), node)
        dtype = "i32" if left.const is not None else left.type
        value = self.code(self.convert(left, dtype, node), node)
        return _Value(f"({value} {_SYMBOLS[kind]} {count})", dtype)

    def _power(self, kind: type, base: _Value, exponent: _Value, node: ast.AST) -> _Value:
        small = isinstance(exponent.const, int) and exponent.type == "i32"
        if small and abs(int(exponent.const or 0)) <= LARGEST_EXPANDED_POWER:
            power = int(exponent.const or 0)
            dtype = base.type if base.const is None else ("f32" if base.type == "f32" else "i32")
            if power < 0:
                dtype = "f32"  # 2 ** -1 is 0.5
            base = self.convert(base, dtype, node)
            if power == 0:
                return _literal(1.0 if dtype == "f32" else 1)
            product = " * ".join([self.code(base, node)] * abs(power))
            if power < 0:
                return _Value(f"(1.0f / ({product}))", "f32")
            return _Value(f"({product})", dtype)
        return self._pow_call(base, exponent, node)

    def _pow_call(self, base: _Value, exponent: _Value, node: ast.AST) -> _Value:
        self.helpers.add("dcp_pow_f32")
        a = self.code(self.convert(base, "f32", node), node)
        b = self.code(self.convert(exponent, "f32", node), node)
        return _Value(f"dcp_pow_f32({a}, {b})", "f32")

    def _bool_op(self, node: ast.BoolOp) -> _Value:
        values = [self.expr(operand) for operand in node.values]
        word = "and" if isinstance(node.op, ast.And) else "or"
        for operand, value in zip(node.values, values, strict=True):
            if value.type != "bool":
                raise self.error(
                    operand,
                    f"{word} takes bools in a kernel; this is {TYPE_WORDS[value.type]}: "
                    "write x != 0 for a number's truth",
                )
        if all(value.const is not None for value in values):
            folded = all if word == "and" else any
            return _literal(folded(bool(value.const) for value in values))
        symbol = " && " if word == "and" else " || "
        return _Value("(" + symbol.join(self.code(value, node) for value in values) + ")", "bool")

    def _compare(self, node: ast.Compare) -> _Value:
        for op in node.ops:
            if type(op) not in _COMPARE:
                word = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
                raise self.error(
                    node, f"the {word[type(op)]} operator is {_NOT_IN_KERNELS}; compare with =="
                )
        operands = [self.expr(node.left)] + [self.expr(item) for item in node.comparators]
        parts: list[_Value] = []
        for position, op in enumerate(node.ops):
            left, right = operands[position], operands[position + 1]
            parts.append(self._comparison(op, left, right, node))
        if all(part.const is not None for part in parts):
            return _literal(all(bool(part.const) for part in parts))
        codes = [self.code(part, node) for part in parts]
        return _Value(codes[0] if len(codes) == 1 else "(" + " && ".join(codes) + ")", "bool")

    def _comparison(self, op: ast.cmpop, left: _Value, right: _Value, node: ast.AST) -> _Value:
        kind = type(op)
        if (left.type == "bool") != (right.type == "bool"):
            raise self.error(node, "comparing a bool with a number; write 1 if ... else 0")
        if left.type == "bool" and kind not in (ast.Eq, ast.NotEq):
            raise self.error(node, "bools compare with == and != only in kernels")
        if left.const is not None and right.const is not None:
            l_const, r_const = left.const, right.const
            return _literal(_COMPARE[kind](l_const, r_const))
        left, right, _ = self.unify(left, right, node)
        code = f"({self.code(left, node)} {_SYMBOLS[kind]} {self.code(right, node)})"
        return _Value(code, "bool")

    def _if_expression(self, node: ast.IfExp) -> _Value:
        test = self.condition(node.test, "a conditional expression")
        chosen, other = self.expr(node.body), self.expr(node.orelse)
        if (chosen.type == "bool") != (other.type == "bool"):
            raise self.error(
                node, "both branches of a conditional expression are numbers, or bools"
            )
        chosen, other, dtype = self.unify(chosen, other, node)
        code = f"select({self.code(other, node)}, {self.code(chosen, node)}, {test})"
        return _Value(code, dtype)

    # ---- calls

    def _call(self, node: ast.Call) -> _Value:
        callee = self._callee(node)
        if callee == "len":
            return self._len(node)
        if callee == "range":
            raise self.error(node, "range() is used in for loops only: for k in range(n)")
        if callee == "round":
            self._plain_arguments(node, callee, 1, 1, hint="round(x, ndigits) is not supported")
        elif callee in ("min", "max"):
            self._plain_arguments(node, callee, 2, None, hint=f"{callee}(a, b, ...) of numbers")
        elif callee in ("pow", "math.log"):
            self._plain_arguments(node, callee, 2 if callee == "pow" else 1, 2)
        elif callee in ("math.atan2", "math.pow", "math.hypot", "math.copysign", "math.fmod"):
            self._plain_arguments(node, callee, 2, 2)
        else:
            self._plain_arguments(node, callee, 1, 1)
        args = [self.expr(arg) for arg in node.args]
        for arg, value in zip(node.args, args, strict=True):
            if value.type == "bool" and callee not in ("int", "float", "bool", *CASTS):
                raise self.error(arg, f"{callee}() takes numbers; this is a bool")
        handler = _CALLS.get(callee)
        if handler is not None:
            return handler(self, args, node)
        return self._math_call(callee.removeprefix("math."), args, node)

    def _callee(self, node: ast.Call) -> str:
        """What a call calls: "abs", "f32", "math.sqrt", ...; KernelError for anything else."""
        func = node.func
        if isinstance(func, ast.Attribute):
            if self._is_math(func.value):
                if func.attr in MATH_FUNCTIONS:
                    return f"math.{func.attr}"
                raise self.error(node, f"math.{func.attr}() is {_NOT_IN_KERNELS}")
            if _dotted_name(func.value) in GPU_MODULES and func.attr in CASTS:
                return func.attr
            self._refuse_missing_math(func.value)
            raise self.error(
                node,
                f"calling {ast.unparse(func)}() is {_NOT_IN_KERNELS}; kernels call math "
                "functions and abs, min, max, round, int, float, bool, len, f32, i32, u32",
            )
        if not isinstance(func, ast.Name):
            self.expr(func)  # names what the callee is (a lambda, a subscript, ...)
            raise self.error(node, f"this call is {_NOT_IN_KERNELS}")
        return self._named_callee(func.id, node)

    def _named_callee(self, name: str, node: ast.Call) -> str:
        if name in self.locals or name in self.scalars or name in self.arrays or name == self.index:
            raise self.error(node, f"{name} is a variable, not a function")
        if name in CASTS:
            return name
        found = self.env.values.get(name)
        if name in BUILTIN_FUNCTIONS or name == "range":
            if found is None or found is getattr(builtins, name):
                return name
        elif name in MATH_FUNCTIONS:
            if found is getattr(math, name):
                return f"math.{name}"
            if found is None and not self.env.complete:
                return f"math.{name}"
            if found is None:
                raise self.error(
                    node, f"{name} is not defined; write from math import {name}, or math.{name}"
                )
            raise self.error(node, f"{name} here is not math.{name}; kernels call math functions")
        if name == "print":
            raise self.error(
                node,
                f"print() is {_NOT_IN_KERNELS}; write the values into an array to look at them",
            )
        raise self.error(
            node,
            f"calls to {name}() are {_NOT_IN_KERNELS}: a kernel cannot call your own functions or "
            "most builtins; write the computation inline (available: math functions, abs, min, "
            "max, round, int, float, bool, len, f32, i32, u32)",
        )

    def _plain_arguments(
        self, node: ast.Call, name: str, least: int, most: int | None, hint: str = ""
    ) -> None:
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.error(node, f"{name}() in a kernel takes plain positional arguments")
        count = len(node.args)
        if count < least or (most is not None and count > most):
            wanted = f"{least}" if least == most else f"{least} to {most}" if most else f"{least}+"
            extra = f" ({hint})" if hint else ""
            raise self.error(
                node, f"{name}() takes {wanted} arguments in a kernel, got {count}{extra}"
            )

    def _len(self, node: ast.Call) -> _Value:
        self._plain_arguments(node, "len", 1, 1)
        arg = node.args[0]
        if not isinstance(arg, ast.Name) or arg.id not in self.arrays:
            raise self.error(node, "len() in a kernel takes an Array parameter: len(x)")
        self.used_arrays.add(arg.id)
        return _Value(f"i32(arrayLength(&{self.array_names[arg.id]}))", "i32")

    def _abs(self, args: list[_Value], node: ast.AST) -> _Value:
        (value,) = args
        if value.const is not None:
            return _literal(abs(value.const))
        if value.type == "u32":
            return value
        return _Value(f"abs({value.code})", value.type)

    def _min_max(self, name: str, args: list[_Value], node: ast.AST) -> _Value:
        result = args[0]
        for value in args[1:]:
            if result.const is not None and value.const is not None:
                result = _literal(
                    min(result.const, value.const)
                    if name == "min"
                    else max(result.const, value.const)
                )
                continue
            left, right, dtype = self.unify(result, value, node)
            result = _Value(f"{name}({self.code(left, node)}, {self.code(right, node)})", dtype)
        return result

    def _round(self, args: list[_Value], node: ast.AST) -> _Value:
        (value,) = args
        if value.const is not None:
            return self._fold(node, lambda: round(value.const))  # type: ignore[arg-type]
        if value.type in INT_TYPES:
            return value
        return _Value(f"i32(round({value.code}))", "i32")  # ties to even, as Python's round

    def _int(self, args: list[_Value], node: ast.AST) -> _Value:
        (value,) = args
        if value.const is not None:
            return self._fold(node, lambda: int(value.const))  # type: ignore[arg-type]
        if value.type in INT_TYPES:
            return value
        if value.type == "bool":
            return _Value(f"select(0i, 1i, {value.code})", "i32")
        return _Value(f"i32({value.code})", "i32")  # truncates toward zero, as int() does

    def _float(self, args: list[_Value], node: ast.AST) -> _Value:
        (value,) = args
        if value.const is not None:
            return _literal(float(value.const))
        if value.type == "bool":
            return _Value(f"select(0.0f, 1.0f, {value.code})", "f32")
        return self.convert(value, "f32", node)

    def _bool(self, args: list[_Value], node: ast.AST) -> _Value:
        (value,) = args
        if value.const is not None:
            return _literal(bool(value.const))
        if value.type == "bool":
            return value
        zero = self.code(self.convert(_literal(0), value.type, node), node)
        return _Value(f"({value.code} != {zero})", "bool")

    def _cast(self, dtype: str, args: list[_Value], node: ast.AST) -> _Value:
        """f32(x), i32(x), u32(x): WGSL's conversions (an int wraps into u32, a float is
        truncated and clamped)."""
        (value,) = args
        if value.const is not None:
            return _Value(self._literal_code(_wgsl_convert(value.const, dtype), dtype, node), dtype)
        if value.type == dtype:
            return _Value(value.code, dtype)
        return _Value(f"{dtype}({value.code})", dtype)

    def _pow_builtin(self, args: list[_Value], node: ast.AST) -> _Value:
        return self.binary(ast.Pow(), args[0], args[1], node)

    def _math_call(self, name: str, args: list[_Value], node: ast.AST) -> _Value:
        if all(value.const is not None for value in args):
            function = getattr(math, name)
            return self._fold(node, lambda: function(*(value.const for value in args)))
        if name in _MATH_INT_RESULTS:
            (value,) = args
            if value.type in INT_TYPES:
                return value
            return _Value(f"i32({name}({value.code}))", "i32")
        floats = [self.code(self.convert(value, "f32", node), node) for value in args]
        if name in ("isnan", "isinf", "isfinite"):
            return self._float_test(name, args[0], floats[0])
        return _Value(self._math_code(name, floats), "f32")

    def _float_test(self, name: str, value: _Value, code: str) -> _Value:
        if value.type in INT_TYPES:
            return _literal(name == "isfinite")
        # on the bits: a compiler may assume that x != x never holds
        test = {"isnan": ">", "isinf": "==", "isfinite": "<"}[name]
        return _Value(f"((bitcast<u32>({code}) & 0x7fffffffu) {test} 0x7f800000u)", "bool")

    def _math_code(self, name: str, args: list[str]) -> str:
        if name in _MATH_FLOAT_FUNCTIONS:
            return f"{_MATH_FLOAT_FUNCTIONS[name]}({args[0]})"
        if name == "log":
            return f"log({args[0]})" if len(args) == 1 else f"(log({args[0]}) / log({args[1]}))"
        if name == "log10":
            return f"(log({args[0]}) * {self._float_code(1 / math.log(10))})"
        if name == "atan2":
            return f"atan2({args[0]}, {args[1]})"
        if name == "hypot":
            return f"length(vec2<f32>({args[0]}, {args[1]}))"
        if name == "copysign":
            return (
                f"bitcast<f32>((bitcast<u32>({args[0]}) & 0x7fffffffu) | "
                f"(bitcast<u32>({args[1]}) & 0x80000000u))"
            )
        helper = {"pow": "dcp_pow_f32", "fmod": "dcp_fmod_f32"}[name]
        self.helpers.add(helper)
        return f"{helper}({args[0]}, {args[1]})"


def _wgsl_convert(value: int | float | bool, dtype: str) -> int | float:
    """A literal converted as WGSL converts at run time."""
    if dtype == "f32":
        return float(value)
    low, high = (I32_MIN, I32_MAX) if dtype == "i32" else (0, U32_MAX)
    if isinstance(value, float):
        if math.isnan(value):
            return 0
        return min(max(math.trunc(value) if math.isfinite(value) else value, low), high)  # type: ignore[return-value]
    number = int(value) & U32_MAX
    return number - 2**32 if dtype == "i32" and number > I32_MAX else number


_STATEMENTS: dict[type[ast.stmt], Callable[[_Translator, Any], None]] = {
    ast.Assign: _Translator._assign,
    ast.AnnAssign: _Translator._ann_assign,
    ast.AugAssign: _Translator._aug_assign,
    ast.If: _Translator._if,
    ast.For: _Translator._for,
    ast.Break: _Translator._break,
    ast.Continue: _Translator._continue,
    ast.Return: _Translator._return,
    ast.Pass: _Translator._pass,
    ast.Expr: _Translator._expression_statement,
}
_EXPRESSIONS: dict[type[ast.expr], Callable[[_Translator, Any], _Value]] = {
    ast.Constant: _Translator._constant,
    ast.Name: _Translator._name,
    ast.Attribute: _Translator._attribute,
    ast.Subscript: _Translator._subscript,
    ast.UnaryOp: _Translator._unary,
    ast.BinOp: _Translator._binop,
    ast.BoolOp: _Translator._bool_op,
    ast.Compare: _Translator._compare,
    ast.IfExp: _Translator._if_expression,
    ast.Call: _Translator._call,
}
_BINARY: dict[type, Callable[[_Translator, type, _Value, _Value, ast.AST], _Value]] = {
    ast.Add: _Translator._arithmetic,
    ast.Sub: _Translator._arithmetic,
    ast.Mult: _Translator._arithmetic,
    ast.Div: _Translator._true_division,
    ast.FloorDiv: _Translator._floor_division,
    ast.Mod: _Translator._floor_division,
    ast.Pow: _Translator._power,
    ast.BitAnd: _Translator._bitwise,
    ast.BitOr: _Translator._bitwise,
    ast.BitXor: _Translator._bitwise,
    ast.LShift: _Translator._shift,
    ast.RShift: _Translator._shift,
}
_CALLS: dict[str, Callable[[_Translator, list[_Value], ast.AST], _Value]] = {
    "abs": _Translator._abs,
    "min": lambda self, args, node: self._min_max("min", args, node),
    "max": lambda self, args, node: self._min_max("max", args, node),
    "round": _Translator._round,
    "int": _Translator._int,
    "float": _Translator._float,
    "bool": _Translator._bool,
    "pow": _Translator._pow_builtin,
    **{
        cast: (lambda dtype: lambda self, args, node: self._cast(dtype, args, node))(cast)
        for cast in CASTS
    },
}


# ------------------------------------------------------------------------- AST helpers


def _parenthesised(code: str) -> str:
    """`code` in one pair of parentheses (WGSL's if takes any expression; this reads better)."""
    depth = 0
    for position, char in enumerate(code):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and position < len(code) - 1:
            return f"({code})"
    return code if code.startswith("(") else f"({code})"


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _annotation_word(node: ast.expr) -> str | None:
    """The type word of an annotation such as f32, gpu.f32 or 'f32'; None for others."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _parse_annotation(node: ast.expr | None) -> tuple[str, str] | None:
    """("scalar" or "array", dtype) of a parameter annotation; None where it is not one."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(node, ast.Subscript) and _annotation_word(node.value) == "Array":
        element = SCALAR_ANNOTATIONS.get(_annotation_word(node.slice) or "")
        return ("array", element) if element is not None else None
    dtype = SCALAR_ANNOTATIONS.get(_annotation_word(node) or "")
    return ("scalar", dtype) if dtype is not None else None


def _identifiers(func: ast.AST) -> set[str]:
    names = {node.id for node in ast.walk(func) if isinstance(node, ast.Name)}
    return names | {node.arg for node in ast.walk(func) if isinstance(node, ast.arg)}


def _assigned_names(body: list[ast.stmt]) -> list[str]:
    """The names a body binds, in order of first appearance (Python makes them locals)."""
    found: dict[str, None] = {}
    for statement in body:
        for node in ast.walk(statement):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = None
    return list(found)


def _written_arrays(func: ast.AST) -> set[str]:
    written: set[str] = set()
    for node in ast.walk(func):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                written.add(target.value.id)
    return written
