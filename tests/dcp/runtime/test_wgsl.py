"""Python GPU kernels translated to WGSL (dcp/runtime/wgsl.py): the shader layout, Python's
meaning of the typed subset (proved by running kernels on a real WebGPU adapter and on the CPU
side by side), and a KernelError that names the line for everything outside the subset."""

from __future__ import annotations

import ast
import linecache
import math
import struct
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from dcp.runtime.wgsl import (
    KernelError,
    KernelSpec,
    Param,
    check_kernels,
    kernel_functions,
    translate_kernel,
    translate_source,
)

SAXPY = """\
from dcp import gpu
from dcp.gpu import f32, Array

@gpu.kernel
def saxpy(i, a: f32, x: Array[f32], y: Array[f32]):
    y[i] = a * x[i] + y[i]
"""
STRUCT_CODES = {"f32": "f", "i32": "i", "u32": "I"}
# What the kernels' annotations are when their source runs on the CPU.
CPU_NAMES = {"f32": float, "i32": int, "u32": int, "Array": list, "math": math}


def kernel(body: str, signature: str = "i, x: Array[f32], y: Array[f32]") -> str:
    """A kernel's source: the def on line 1, the body from line 2."""
    return f"def k({signature}):\n" + textwrap.indent(textwrap.dedent(body), "    ")


def wgsl_of(body: str, signature: str = "i, x: Array[f32], y: Array[f32]") -> str:
    return translate_source(kernel(body, signature)).wgsl


# ---------------------------------------------------------------------------------- layout


def test_saxpy_binds_its_arrays_in_order_read_or_read_write_then_a_padded_uniform() -> None:
    spec = translate_source(SAXPY)

    assert spec.name == "saxpy" and spec.index == "i"
    assert spec.params == (
        Param("a", "scalar", "f32", written=False, binding=-1),
        Param("x", "array", "f32", written=False, binding=0),
        Param("y", "array", "f32", written=True, binding=1),
    )
    assert spec.uniform_binding == 2 and spec.workgroup_size == 64
    assert spec.uniform_layout == (("a", "f32"), ("n", "u32"), ("_pad", "u32"), ("_pad", "u32"))
    assert "@group(0) @binding(0) var<storage, read> x: array<f32>;" in spec.wgsl
    assert "@group(0) @binding(1) var<storage, read_write> y: array<f32>;" in spec.wgsl
    assert "@group(0) @binding(2) var<uniform> params: Params;" in spec.wgsl
    assert "struct Params {\n  a: f32,\n  n: u32,\n  _pad0: u32,\n  _pad1: u32,\n}" in spec.wgsl
    assert "@compute @workgroup_size(64)" in spec.wgsl
    assert "let i: i32 = i32(gid.x + gid.y * groups.x * 64u);" in spec.wgsl
    assert "if (u32(i) >= params.n) {" in spec.wgsl
    assert "y[i] = ((params.a * x[i]) + y[i]);" in spec.wgsl


def test_the_uniform_holds_the_scalars_in_order_and_n_in_whole_16_byte_rows() -> None:
    four = translate_source(kernel("y[i] = a + b + c", "i, a: f32, b: int, c: u32, y: Array[f32]"))
    seven = "i, a: f32, b: f32, c: f32, d: f32, e: i32, f: i32, g: u32, y: Array[u32]"
    eight = translate_source(kernel("y[i] = g", seven))

    assert four.uniform_layout == (("a", "f32"), ("b", "i32"), ("c", "u32"), ("n", "u32"))
    assert len(eight.uniform_layout) == 8 and eight.uniform_layout[-1] == ("n", "u32")
    assert eight.uniform_binding == 1


def test_annotations_may_be_spelled_through_the_gpu_module_or_as_strings() -> None:
    spec = translate_source(
        kernel("y[i] = x[i] * a", "i: int, a: gpu.f32, x: 'Array[f32]', y: gpu.Array[gpu.f32]")
    )

    assert [(p.kind, p.dtype) for p in spec.params] == [
        ("scalar", "f32"),
        ("array", "f32"),
        ("array", "f32"),
    ]


# ------------------------------------------------------------------------------- typing


@pytest.mark.parametrize(
    ("body", "signature", "expected"),
    [
        ("y[i] = x[i] * 2", "i, x: Array[f32], y: Array[f32]", "y[i] = (x[i] * 2.0f);"),
        ("y[i] = a + 1.5", "i, a: i32, y: Array[f32]", "y[i] = (f32(params.a) + 1.5f);"),
        ("y[i] = a + b", "i, a: i32, b: u32, y: Array[i32]", "y[i] = (params.a + i32(params.b));"),
        ("y[i] = b + 1", "i, b: u32, y: Array[u32]", "y[i] = (params.b + 1u);"),
        ("y[i] = a / 2", "i, a: i32, y: Array[f32]", "y[i] = (f32(params.a) / 2.0f);"),
        ("y[i] = 3", "i, y: Array[f32]", "y[i] = 3.0f;"),
        ("y[i] = a", "i, a: i32, y: Array[f32]", "y[i] = f32(params.a);"),
        ("y[i] = -7 // 2 + 2 ** 10", "i, y: Array[i32]", "y[i] = 1020i;"),
        ("y[i] = a ** 3", "i, a: i32, y: Array[i32]", "y[i] = (params.a * params.a * params.a);"),
        ("y[i] = a ** -1", "i, a: i32, y: Array[f32]", "y[i] = (1.0f / (f32(params.a)));"),
        (
            "y[i] = 1 if a > 0 else 0.5",
            "i, a: i32, y: Array[f32]",
            "select(0.5f, 1.0f, (params.a > 0i))",
        ),
        ("y[i] = x[-1]", "i, x: Array[f32], y: Array[f32]", "y[i] = x[arrayLength(&x) - 1u];"),
        ("y[i] = len(x)", "i, x: Array[f32], y: Array[i32]", "y[i] = i32(arrayLength(&x));"),
        ("y[i] = math.floor(a)", "i, a: f32, y: Array[i32]", "y[i] = i32(floor(params.a));"),
        ("y[i] = math.pi", "i, y: Array[f32]", f"y[i] = {math.pi!r}f;"),
    ],
)
def test_literals_adapt_and_mixed_arithmetic_promotes_like_python(
    body: str, signature: str, expected: str
) -> None:
    assert expected in wgsl_of(body, signature)


def test_a_variable_keeps_the_type_of_its_first_assignment_and_takes_ints_as_floats() -> None:
    wgsl = wgsl_of(
        """
        total = 0.0
        total += 1
        total = i
        y[i] = total
        """
    )

    assert "var total: f32;" in wgsl
    assert "total = (total + 1.0f);" in wgsl and "total = f32(i);" in wgsl


def test_floor_division_and_modulo_floor_like_python_for_every_type() -> None:
    ints = wgsl_of("y[i] = a // b + a % b", "i, a: i32, b: i32, y: Array[i32]")
    floats = wgsl_of("y[i] = x[i] // 2 + x[i] % 2")
    unsigned = wgsl_of("y[i] = c // d + c % d", "i, c: u32, d: u32, y: Array[u32]")

    assert "dcp_floordiv_i32(params.a, params.b)" in ints and "dcp_mod_i32(" in ints
    assert "fn dcp_floordiv_i32(a: i32, b: i32) -> i32 {" in ints
    assert "dcp_floordiv_f32(x[i], 2.0f)" in floats and "dcp_mod_f32(x[i], 2.0f)" in floats
    assert "(params.c / params.d)" in unsigned and "(params.c % params.d)" in unsigned
    assert "dcp_" not in unsigned.split("@compute")[0]  # no helper needed


def test_range_loops_evaluate_their_bounds_once_and_count_down_with_a_negative_step() -> None:
    wgsl = wgsl_of(
        """
        for k in range(10, -1, -2):
            y[k] = x[i]
        """
    )

    assert "let dcp_stop2: i32 = (-1i);" in wgsl
    assert "for (var dcp_k1: i32 = 10i; dcp_k1 > dcp_stop2; dcp_k1 += (-2i)) {" in wgsl
    assert "k = dcp_k1;" in wgsl


def test_names_that_wgsl_reserves_are_renamed() -> None:
    wgsl = wgsl_of(
        """
        var = 1.0
        main = var * 2
        params = main
        _ = params
        y[i] = _
        """
    )

    assert "var var_1: f32;" in wgsl and "var main_1: f32;" in wgsl and "var params_1: f32;" in wgsl
    assert "var v_1: f32;" in wgsl


def test_module_constants_become_literals() -> None:
    source = "import math\nN = 4\nSCALE = N / 8\n" + kernel(
        """
        for k in range(N):
            y[i] += x[k] * SCALE * math.tau
        """
    )
    tree = ast.parse(source)
    func = tree.body[-1]
    assert isinstance(func, ast.FunctionDef)

    from_source = translate_source(source).wgsl
    from_globals = translate_kernel(func, globals_={"N": 4, "SCALE": 0.5, "math": math}).wgsl

    assert from_source == from_globals
    assert "let dcp_stop2: i32 = 4i;" in from_source and "0.5f" in from_source


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("statement", "names"),
    [
        ("while y[i] > 1:\n    y[i] /= 2", "while loops"),
        ("try:\n    y[i] = 1\nexcept Exception:\n    pass", "try statements"),
        ("with open('f') as f:\n    pass", "with statements"),
        ("def helper():\n    pass", "nested def"),
        ("f = lambda v: v", "lambda"),
        ("y[i] = sum([v for v in range(3)])", "calls to sum()"),
        ("t = [v for v in range(3)]", "list comprehensions"),
        ("t = 'text'", "strings"),
        ("t = [1, 2]", "lists"),
        ("t = x.shape", "attribute access"),
        ("global G", "global statements"),
        ("del t", "del"),
        ("assert y[i] > 0", "assert"),
        ("print(y[i])", "print()"),
        ("y[i] = helper(x[i])", "calls to helper()"),
        ("return y[i]", "returns no value"),
        ("a, b = 1, 2", "tuple unpacking"),
        ("if x[i]:\n    y[i] = 0", "x != 0"),
        ("t = 1 if x[i] and y[i] else 2", "x != 0"),
        ("raise ValueError()", "raise"),
        ("import math", "import"),
        ("t = x[i:3]", "slices"),
        ("for v in x:\n    y[i] = v", "range("),
        ("for k in range(0, 4, i):\n    pass", "non-zero int literal"),
        ("y[i] = UNKNOWN", "UNKNOWN is not defined"),
        ("y[i] = t\nt = 1.0", "t is read before it is assigned"),
        ("y[i] = None", "None"),
        ("t: str = 'a'", "annotated assignment"),
        ("x = 1.0", "x is an array parameter: assign to its elements"),
        ("t = x[i] is None", "the is operator"),
        ("y[i] = x[i] @ x[i]", "@ operator"),
        ("break", "break outside a loop"),
    ],
)
def test_python_outside_the_subset_is_a_kernel_error_naming_the_line(
    statement: str, names: str
) -> None:
    source = kernel("y[i] = x[i]\n" + statement)  # the statement starts on line 3

    with pytest.raises(KernelError) as raised:
        translate_source(source, filename="job.py")

    error = raised.value
    assert isinstance(error, SyntaxError)
    assert (error.filename, error.lineno) == ("job.py", 3), error
    assert names in error.msg
    assert str(error) == f"job.py, line 3: {error.msg}"
    assert error.text is not None and statement.splitlines()[0] in error.text


@pytest.mark.parametrize(
    ("body", "signature", "line", "names"),
    [
        ("y[i] = x[i] * 0.5", "i, x: Array[i32], y: Array[i32]", 2, "int(...)"),
        ("t = 0\nt = t + x[i]\ny[i] = t", "i, x: Array[f32], y: Array[f32]", 3, "int(...)"),
        ("y[i] = x[i] > 0", "i, x: Array[i32], y: Array[i32]", 2, "1 if ... else 0"),
        ("t = x[i] > 0\nt = 2", "i, x: Array[i32], y: Array[i32]", 3, "this value is a number"),
        ("y[i] = x[i] << 40", "i, x: Array[i32], y: Array[i32]", 2, "0 to 31"),
        ("y[i] = 2 ** 31", "i, y: Array[i32]", 2, "does not fit in i32"),
        ("y[i] = x[1.0]", "i, x: Array[i32], y: Array[i32]", 2, "an array index is an int"),
        ("y[i] = round(x[i], 2)", "i, x: Array[f32], y: Array[i32]", 2, "round(x, ndigits)"),
        ("y[i] = 1 // 0", "i, y: Array[i32]", 2, "division by zero"),
        ("y[i] = 1\ny[i] = not x[i]", "i, x: Array[i32], y: Array[i32]", 3, "x == 0"),
        ("y[i] = x[i] & 1.5", "i, x: Array[i32], y: Array[i32]", 2, "& takes ints"),
        ("y[i] = x[i] + True", "i, x: Array[i32], y: Array[i32]", 2, "+ on a bool"),
        ("t: i32 = 1\nt: f32 = 2", "i, y: Array[i32]", 3, "t is already an int"),
    ],
)
def test_values_of_the_wrong_type_are_kernel_errors_that_say_what_to_write(
    body: str, signature: str, line: int, names: str
) -> None:
    with pytest.raises(KernelError) as raised:
        translate_source(kernel(body, signature))

    assert raised.value.lineno == line
    assert names in raised.value.msg


@pytest.mark.parametrize(
    ("signature", "names"),
    [
        ("i, x, y: Array[f32]", "parameter x needs a type annotation"),
        ("i, x: str, y: Array[f32]", "parameter x needs a type annotation"),
        ("i, flag: bool, y: Array[f32]", "pass an int"),
        ("i, *rest: f32", "*args"),
        ("i, y: Array[f32], a: f32 = 1.0", "default parameter values"),
        ("i, y: Array[f32], *, a: f32", "keyword-only parameters"),
        ("i, /, y: Array[f32]", "positional-only parameters"),
        ("i, y: Array[f32], **options: f32", "**kwargs"),
        ("i: float, y: Array[f32]", "the index i is an int"),
        ("i, n: i32, y: Array[f32]", "cannot be named n"),
        ("", "first parameter is the element index"),
    ],
)
def test_a_signature_outside_the_subset_is_a_kernel_error_on_the_def_line(
    signature: str, names: str
) -> None:
    with pytest.raises(KernelError) as raised:
        translate_source(kernel("y[i] = 1", signature))

    assert raised.value.lineno == 1
    assert names in raised.value.msg


def test_a_kernel_that_writes_no_array_is_refused() -> None:
    with pytest.raises(KernelError, match="must write at least one array"):
        translate_source(kernel("t = x[i]"))


def test_a_kernel_cannot_be_async() -> None:
    with pytest.raises(KernelError, match="cannot be async"):
        check_kernels(
            "from dcp import gpu\n@gpu.kernel\nasync def k(i, y: Array[f32]):\n    y[i] = 1\n"
        )


# ----------------------------------------------------------------- work function checks

WORK = """\
import math
from dcp import gpu
from dcp.gpu import Array, f32

SCALE = 2 * math.pi

def work(datum):
    width = len(datum)

    @gpu.kernel
    def scale(i, x: Array[f32]):
        x[i] = x[i] * SCALE + width

    @gpu.kernel()
    def halve(i, x: Array[f32]):
        while x[i] > 1:
            x[i] = x[i] / 2

    return scale(datum)
"""


def test_check_kernels_finds_nested_kernels_and_counts_lines_from_first_line() -> None:
    with pytest.raises(KernelError) as raised:
        check_kernels(WORK, filename="job.py", first_line=20)

    error = raised.value
    assert (error.filename, error.lineno) == ("job.py", 16 + 19)
    assert error.text == "        while x[i] > 1:"
    assert str(error).startswith("job.py, line 35: while loops are not supported in GPU kernels")


def test_check_kernels_passes_good_kernels_reading_constants_known_only_at_run_time() -> None:
    good = WORK.replace("while x[i] > 1:", "for k in range(width):")

    assert check_kernels(good) is None


def test_check_kernels_leaves_syntax_errors_to_the_parser_with_the_lines_counted_the_same() -> None:
    with pytest.raises(SyntaxError) as raised:
        check_kernels("def work(:\n", first_line=5)

    assert not isinstance(raised.value, KernelError) and raised.value.lineno == 5


def test_kernel_functions_finds_every_spelling_of_the_decorator() -> None:
    tree = ast.parse(
        textwrap.dedent(
            """
            import dcp
            @kernel
            def a(i): pass
            @gpu.kernel
            def b(i): pass
            @dcp.gpu.kernel
            def c(i): pass
            @gpu.kernel()
            def d(i): pass
            @other
            def e(i): pass
            @gpu.other
            def f(i): pass
            def work(datum):
                @dcp.gpu.kernel(workgroup_size=64)
                def g(i): pass
            def h(i): pass
            """
        )
    )

    assert [func.name for func in kernel_functions(tree)] == ["a", "b", "c", "d", "g"]


def test_translate_kernel_reads_the_error_line_from_linecache_when_given_no_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = "from math import sqrt\n" + kernel("y[i] = sqrt(x[i])\nwhile True:\n    pass")
    func = ast.parse(source).body[-1]
    assert isinstance(func, ast.FunctionDef)
    lines = ["\n"] * 10 + source.splitlines(True)  # the source starts on line 11 of work.py
    monkeypatch.setitem(linecache.cache, "work.py", (len(lines), None, lines, "work.py"))

    with pytest.raises(KernelError) as raised:
        translate_kernel(func, filename="work.py", first_line=11)

    assert raised.value.lineno == 14 and raised.value.text == "    while True:"


def test_a_global_that_is_not_a_number_is_named_in_the_error() -> None:
    func = ast.parse(kernel("y[i] = LABEL")).body[0]
    assert isinstance(func, ast.FunctionDef)

    with pytest.raises(KernelError, match="LABEL is a str; a kernel reads int and float constants"):
        translate_kernel(func, globals_={"LABEL": "x"})


# -------------------------------------------------------------------- the real compiler


@pytest.fixture(scope="module")
def device() -> Any:
    wgpu = pytest.importorskip("wgpu", reason="wgpu-py is not installed: pip install wgpu")
    try:
        adapter = wgpu.gpu.request_adapter_sync()
    except Exception as error:  # no Vulkan/Metal/D3D driver at all
        pytest.skip(f"no WebGPU adapter here (install Mesa's lavapipe): {error}")
    if adapter is None:
        pytest.skip("no WebGPU adapter here (install Mesa's lavapipe)")
    return adapter.request_device_sync()


INT_SEMANTICS = """\
def int_semantics(i, d: i32, x: Array[i32], out: Array[i32]):
    base = i * 8
    out[base] = x[i] // d
    out[base + 1] = x[i] % d
    out[base + 2] = -x[i] // 4 + x[i] % -3 + 7 // x[i] if x[i] != 0 else -1
    out[base + 3] = int(x[i] / 3) + round(x[i] / 2)
    out[base + 4] = x[i] ** 2 - (x[i] >> 1) + (x[i] & 5) ^ 3
    out[base + 5] = abs(x[i]) + max(x[i], d, -2) - min(x[i], 0)
    out[base + 6] = 1 if 0 <= x[i] < d else (2 if x[i] < 0 and not x[i] == -7 else 3)
    out[base + 7] = ~x[i] | (x[i] << 2)
"""
FLOAT_SEMANTICS = """\
def float_semantics(i, s: f32, x: Array[f32], y: Array[f32], out: Array[f32], ints: Array[i32]):
    out[i * 6] = x[i] // y[i]
    out[i * 6 + 1] = x[i] % y[i]
    out[i * 6 + 2] = x[i] * s + 2 ** 3 - x[i] ** 3 / 4
    out[i * 6 + 3] = math.sqrt(abs(x[i])) + math.hypot(x[i], y[i]) + abs(x[i]) ** 0.5
    out[i * 6 + 4] = math.copysign(1.5, x[i]) + math.fmod(x[i], y[i]) + math.pow(x[i], 3.0)
    out[i * 6 + 5] = max(x[i], y[i], 0) + (1.0 if math.isnan(x[i] - x[i]) else 0.25)
    ints[i * 4] = int(x[i])
    ints[i * 4 + 1] = round(x[i])
    ints[i * 4 + 2] = math.floor(x[i])
    ints[i * 4 + 3] = math.ceil(x[i]) + math.trunc(y[i])
"""
LOOPS = """\
def loops(i, x: Array[i32], out: Array[i32], last: Array[i32]):
    total = 0
    for k in range(10, -x[i], -3):
        if k == 4:
            continue
        total += k
        if total > 20:
            break
    for k in range(x[i]):
        total = total * 2 + k
        k = 100
    out[i] = total
    last[i] = k
    if x[i] > 2:
        return
    last[i] = -k
"""
RESERVED_NAMES = """\
def clashing(i, var: i32, fn: Array[i32], params: Array[i32]):
    let = var + fn[i]
    main = let * 2
    gid = main - 1
    _ = gid
    match = _ + i
    dcp_k1 = 0
    for type in range(3):
        dcp_k1 += type
    params[i] = match + dcp_k1
"""
UNUSED_ARRAY = """\
def fill(i, unused: Array[f32], out: Array[u32]):
    out[i] = u32(i) * 3
"""


MORE_KERNELS = [
    ("y[i] = math.inf * x[i] - math.nan + 1e39", "i, x: Array[f32], y: Array[f32]"),
    (
        "y[i] = math.log(x[i], 2) + math.log10(x[i]) + math.atan2(x[i], 1)",
        "i, x: Array[f32], y: Array[f32]",
    ),
    ("t: f32 = 1\nt *= 2 ** 0.5\ny[i] = f32(t) + i32(t) + u32(-1)", "i, y: Array[f32]"),
    ("y[i] = 1 if bool(a) != (a > 1) or math.isinf(b) else 0", "i, a: u32, b: f32, y: Array[i32]"),
    ("y[i] = -2147483648 + 0 * i", "i, y: Array[i32]"),
]


def test_every_translated_kernel_compiles_with_a_real_wgsl_compiler(device: Any) -> None:
    sources = [SAXPY, INT_SEMANTICS, FLOAT_SEMANTICS, LOOPS, RESERVED_NAMES, UNUSED_ARRAY]
    sources += [kernel(body, signature) for body, signature in MORE_KERNELS]

    for source in sources:
        device.create_shader_module(code=translate_source(source).wgsl)  # raises on invalid WGSL


def test_integer_kernels_match_python_on_negative_operands(device: Any) -> None:
    xs = [-9, -7, -6, -1, 0, 1, 5, 7, 100, -100]
    for divisor in (3, -4):
        assert_gpu_matches_cpu(device, INT_SEMANTICS, [divisor, xs, [0] * 80], len(xs))


def test_float_kernels_match_python(device: Any) -> None:
    xs = [-3.5, -2.5, -0.5, 0.5, 1.5, 2.5, 7.25, -7.25]
    ys = [2.0, -2.0, 1.5, -1.5, 0.75, 3.0, -4.0, 4.0]
    assert_gpu_matches_cpu(device, FLOAT_SEMANTICS, [0.5, xs, ys, [0.0] * 48, [0] * 32], len(xs))


def test_loops_match_python_including_the_loop_variable_after_the_loop(device: Any) -> None:
    xs = [0, 1, 2, 3, 5, -4]
    assert_gpu_matches_cpu(device, LOOPS, [xs, [0] * 6, [0] * 6], len(xs))


def test_kernels_whose_names_clash_with_wgsl_run_like_python(device: Any) -> None:
    assert_gpu_matches_cpu(device, RESERVED_NAMES, [5, [1, 2, 3, 4], [0] * 4], 4)


def test_saxpy_and_an_array_the_kernel_never_reads_keep_their_bindings(device: Any) -> None:
    assert_gpu_matches_cpu(device, SAXPY, [2.0, [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], 3)
    assert_gpu_matches_cpu(device, UNUSED_ARRAY, [[0.0] * 4, [0] * 4], 4)


def assert_gpu_matches_cpu(device: Any, source: str, args: list[Any], count: int) -> None:
    spec = translate_source(source)
    on_gpu = run_on_gpu(device, spec, args, count)
    on_cpu = run_on_cpu(source, spec, args, count)
    for param, gpu_values, cpu_values in zip(
        [p for p in spec.params if p.written], on_gpu, on_cpu, strict=True
    ):
        if param.dtype == "f32":
            assert gpu_values == pytest.approx(cpu_values, rel=1e-5, abs=1e-5), param.name
        else:
            assert gpu_values == cpu_values, param.name


def run_on_cpu(source: str, spec: KernelSpec, args: list[Any], count: int) -> list[list[Any]]:
    """The written arrays after calling the kernel's Python function once per index."""
    plain = source.replace("from dcp", "# from dcp").replace("@gpu.kernel", "")
    namespace = dict(CPU_NAMES)
    exec(plain, namespace)
    function: Callable[..., None] = namespace[spec.name]
    arrays = [list(value) if isinstance(value, list) else value for value in args]
    for index in range(count):
        function(index, *arrays)
    return [value for param, value in zip(spec.params, arrays, strict=True) if param.written]


def run_on_gpu(device: Any, spec: KernelSpec, args: list[Any], count: int) -> list[list[Any]]:
    """The written arrays after one dispatch of the translated kernel over `count` elements."""
    import wgpu

    usage = wgpu.BufferUsage
    buffers: dict[str, Any] = {}
    entries = []
    scalars = []
    for param, value in zip(spec.params, args, strict=True):
        if param.kind == "scalar":
            scalars.append(value)
            continue
        data = struct.pack(f"<{len(value)}{STRUCT_CODES[param.dtype]}", *value)
        buffers[param.name] = device.create_buffer_with_data(
            data=data, usage=usage.STORAGE | usage.COPY_SRC
        )
        entries.append({"binding": param.binding, "resource": {"buffer": buffers[param.name]}})
    fields = [*scalars, count] + [0] * (len(spec.uniform_layout) - len(scalars) - 1)
    packed = b"".join(
        struct.pack("<" + STRUCT_CODES[dtype], value)
        for (_, dtype), value in zip(spec.uniform_layout, fields, strict=True)
    )
    uniform = device.create_buffer_with_data(data=packed, usage=usage.UNIFORM)
    entries.append({"binding": spec.uniform_binding, "resource": {"buffer": uniform}})
    shader = device.create_shader_module(code=spec.wgsl)
    pipeline = device.create_compute_pipeline(
        layout="auto", compute={"module": shader, "entry_point": "main"}
    )
    bind_group = device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=entries)
    encoder = device.create_command_encoder()
    compute = encoder.begin_compute_pass()
    compute.set_pipeline(pipeline)
    compute.set_bind_group(0, bind_group)
    compute.dispatch_workgroups(math.ceil(count / spec.workgroup_size), 1, 1)
    compute.end()
    device.queue.submit([encoder.finish()])
    results = []
    for param in spec.params:
        if param.written:
            raw = device.queue.read_buffer(buffers[param.name])
            results.append(list(struct.unpack(f"<{len(raw) // 4}{STRUCT_CODES[param.dtype]}", raw)))
    return results
