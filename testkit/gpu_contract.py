"""The GPU contract: kernels that must give the same answers wherever a work function runs.

One slice per case; the datum is the case's name. `PYTHON_WORK` is a Python work function (raw
WGSL through `gpu.run` and kernels through `@gpu.kernel`), `JS_WORK` the same raw WGSL cases as
a JavaScript work function (the `gpu` global). `expected(case)` is the CPU's answer and
`check(case, value)` says whether a GPU's answer matches it: integers exactly, floats within
`FLOAT_TOLERANCE` (relative). Used by the local_exec tests (wgpu-py), the browser sandbox tests
(WebGPU in Chromium) and the end-to-end GPU job.
"""

from __future__ import annotations

import math
from typing import Any

FLOAT_TOLERANCE = 1e-5  # relative; f32 arithmetic against Python's float64
N = 300  # elements per case: more than one workgroup of 64, not a multiple of it

# Raw WGSL shared by the Python and the JavaScript work functions.
DOUBLE_PLUS_ONE = """
@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] * 2u + 1u; }
}
"""
SAXPY_WGSL = """
struct Params { a: f32, n: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.n) { y[id.x] = params.a * x[id.x] + y[id.x]; }
}
"""
BROKEN_WGSL = """
@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    data[id.x] = undefined_name + 1u;
}
"""

PYTHON_CASES = (
    "raw_two_dispatches",
    "raw_saxpy_uniform",
    "kinds_round_trip",
    "kernel_saxpy",
    "kernel_integer_rules",
    "kernel_matmul_tile",
    "device_facts",
    "compile_error_message",
)
JS_CASES = (
    "raw_two_dispatches",
    "raw_saxpy_uniform",
    "kinds_round_trip",
    "device_facts",
    "compile_error_message",
)

PYTHON_WORK = (
    f"""
import array
import struct
from dcp import gpu
from dcp.gpu import Array, f32, i32

N = {N}
DOUBLE_PLUS_ONE = {DOUBLE_PLUS_ONE!r}
SAXPY_WGSL = {SAXPY_WGSL!r}
BROKEN_WGSL = {BROKEN_WGSL!r}
"""
    + """

@gpu.kernel
def saxpy(i, a: f32, x: Array[f32], y: Array[f32]):
    y[i] = a * x[i] + y[i]


@gpu.kernel
def integer_rules(i, a: Array[i32], out: Array[i32]):
    v = a[i]
    total = 0
    for k in range(3):
        total += k * v
    if v % 7 == 0:
        out[i] = v // 4
    elif v < 0:
        out[i] = (v % 5) * 100 + total
    else:
        out[i] = max(v, 10) - min(v, 3)


SIZE = 16


@gpu.kernel
def matmul(i, a: Array[f32], b: Array[f32], c: Array[f32]):
    row = i // SIZE
    col = i % SIZE
    acc = 0.0
    for k in range(SIZE):
        acc += a[row * SIZE + k] * b[k * SIZE + col]
    c[i] = acc


def case_raw_two_dispatches():
    data = gpu.buffer(list(range(N)), "u32")
    groups = (N + 63) // 64
    gpu.run(DOUBLE_PLUS_ONE, [data], groups)
    gpu.run(DOUBLE_PLUS_ONE, [data], groups)  # the data stays on the GPU in between
    return data.read()


def case_raw_saxpy_uniform():
    x = [k * 0.5 for k in range(N)]
    y = [1.0] * N
    params = struct.pack("<fIII", 2.0, N, 0, 0)
    (y_out,) = gpu.run(SAXPY_WGSL, [x, y, params], (N + 63) // 64)
    return y_out


def case_kinds_round_trip():
    values = list(range(N))
    kinds = {
        "list": values,
        "array": array.array("I", values),
        "bytes": array.array("I", values).tobytes(),
        "bytearray": bytearray(array.array("I", values).tobytes()),
        "memoryview": memoryview(array.array("I", values).tobytes()),
    }
    out = {}
    for name, data in kinds.items():
        (result,) = gpu.run(DOUBLE_PLUS_ONE, [gpu.buffer(data, "u32")], (N + 63) // 64)
        read = result.read()
        if isinstance(read, list | array.array):
            as_list = list(read)
        else:
            as_list = array.array("I", bytes(read)).tolist()
        out[name] = [type(read).__name__, as_list[:3], as_list[-1]]
    return out


def case_kernel_saxpy():
    return saxpy(2.0, [k * 0.5 for k in range(N)], [1.0] * N)


def case_kernel_integer_rules():
    return integer_rules(list(range(-N // 2, N // 2)), [0] * N)


def case_kernel_matmul_tile():
    a = [((r * 7 + c * 3) % 11) / 4 for r in range(SIZE) for c in range(SIZE)]
    b = [((r * 5 + c) % 13) / 8 for r in range(SIZE) for c in range(SIZE)]
    return matmul(a, b, [0.0] * (SIZE * SIZE))


def case_device_facts():
    info = gpu.adapter_info()
    limits = gpu.limits()
    return {
        "info_keys": sorted(info),
        "workgroups_per_dimension_at_least_65535": (
            limits["max_compute_workgroups_per_dimension"] >= 65535
        ),
        "available": gpu.available(),
    }


def case_compile_error_message():
    try:
        gpu.run(BROKEN_WGSL, [gpu.buffer([1, 2, 3], "u32")], 1)
    except gpu.GPUError as error:
        named = "undefined_name" in str(error)
        return {"raised": type(error).__name__, "names_the_identifier": named}
    return {"raised": None}


def work(case):
    return globals()["case_" + case]()
"""
)

JS_WORK = (
    f"""
const N = {N};
const DOUBLE_PLUS_ONE = {DOUBLE_PLUS_ONE!r};
const SAXPY_WGSL = {SAXPY_WGSL!r};
const BROKEN_WGSL = {BROKEN_WGSL!r};
"""
    + """
const cases = {
  async raw_two_dispatches() {
    const data = await gpu.buffer(Array.from({ length: N }, (_, k) => k), "u32");
    const groups = Math.ceil(N / 64);
    await gpu.run(DOUBLE_PLUS_ONE, [data], groups);
    await gpu.run(DOUBLE_PLUS_ONE, [data], groups);
    return data.read();
  },
  async raw_saxpy_uniform() {
    const x = new Float32Array(Array.from({ length: N }, (_, k) => k * 0.5));
    const y = new Float32Array(N).fill(1);
    const params = new ArrayBuffer(16);
    new DataView(params).setFloat32(0, 2.0, true);
    new DataView(params).setUint32(4, N, true);
    const [out] = await gpu.run(SAXPY_WGSL, [x, y, params], Math.ceil(N / 64));
    return Array.from(out);
  },
  async kinds_round_trip() {
    const values = Array.from({ length: N }, (_, k) => k);
    const kinds = {
      list: values, array: Uint32Array.from(values), bytes: Uint32Array.from(values).buffer,
    };
    const out = {};
    for (const [name, data] of Object.entries(kinds)) {
      const groups = Math.ceil(N / 64);
      const [result] = await gpu.run(DOUBLE_PLUS_ONE, [await gpu.buffer(data, "u32")], groups);
      const read = await result.read();
      const typed = read instanceof ArrayBuffer ? new Uint32Array(read) : read;
      const asList = Array.isArray(read) ? read : Array.from(typed);
      out[name] = [read.constructor.name, asList.slice(0, 3), asList[asList.length - 1]];
    }
    return out;
  },
  async device_facts() {
    const info = await gpu.adapterInfo();
    const limits = await gpu.limits();
    return {
      info_keys: Object.keys(info).sort(),
      workgroups_per_dimension_at_least_65535: limits.maxComputeWorkgroupsPerDimension >= 65535,
      available: Boolean(await gpu.device()),
    };
  },
  async compile_error_message() {
    try {
      await gpu.run(BROKEN_WGSL, [new Uint32Array([1, 2, 3])], 1);
    } catch (error) {
      const named = String(error.message).includes("undefined_name");
      return { raised: error.name, names_the_identifier: named };
    }
    return { raised: null };
  },
};

async function work(name) {
  return cases[name]();
}
"""
)


def _double_plus_one(values: list[int], times: int) -> list[int]:
    for _ in range(times):
        values = [(2 * v + 1) % 2**32 for v in values]
    return values


def _integer_rule(v: int) -> int:
    total = sum(k * v for k in range(3))
    if v % 7 == 0:
        return v // 4
    if v < 0:
        return (v % 5) * 100 + total
    return max(v, 10) - min(v, 3)


def _matmul(size: int = 16) -> list[float]:
    a = [((r * 7 + c * 3) % 11) / 4 for r in range(size) for c in range(size)]
    b = [((r * 5 + c) % 13) / 8 for r in range(size) for c in range(size)]
    return [
        sum(a[row * size + k] * b[k * size + col] for k in range(size))
        for row in range(size)
        for col in range(size)
    ]


def expected(case: str, language: str = "python") -> Any:
    """The CPU's answer for `case` (as the work function of `language` returns it)."""
    twice = _double_plus_one(list(range(N)), 2)
    once = _double_plus_one(list(range(N)), 1)
    saxpy = [2.0 * (k * 0.5) + 1.0 for k in range(N)]
    kinds_py = {
        "list": ["list", once[:3], once[-1]],
        "array": ["array", once[:3], once[-1]],
        "bytes": ["bytes", once[:3], once[-1]],
        "bytearray": ["bytearray", once[:3], once[-1]],
        "memoryview": ["memoryview", once[:3], once[-1]],
    }
    kinds_js = {
        "list": ["Array", once[:3], once[-1]],
        "array": ["Uint32Array", once[:3], once[-1]],
        "bytes": ["ArrayBuffer", once[:3], once[-1]],
    }
    info_keys = ["architecture", "description", "device", "vendor"]
    answers: dict[str, Any] = {
        "raw_two_dispatches": twice,
        "raw_saxpy_uniform": saxpy,
        "kinds_round_trip": kinds_py if language == "python" else kinds_js,
        "kernel_saxpy": saxpy,
        "kernel_integer_rules": [_integer_rule(v) for v in range(-N // 2, N // 2)],
        "kernel_matmul_tile": _matmul(),
        "device_facts": {
            "info_keys": info_keys,
            "workgroups_per_dimension_at_least_65535": True,
            "available": True,
        },
        "compile_error_message": {"raised": "GPUError", "names_the_identifier": True},
    }
    return answers[case]


def check(case: str, value: Any, language: str = "python") -> bool:
    """Whether a GPU's `value` for `case` matches the CPU's answer."""
    return _close(value, expected(case, language))


def _close(value: Any, answer: Any) -> bool:
    if isinstance(answer, float):
        return isinstance(value, int | float) and math.isclose(
            value, answer, rel_tol=FLOAT_TOLERANCE, abs_tol=1e-6
        )
    if isinstance(answer, list):
        return (
            isinstance(value, list)
            and len(value) == len(answer)
            and all(map(_close, value, answer))
        )
    if isinstance(answer, dict):
        return (
            isinstance(value, dict)
            and value.keys() == answer.keys()
            and all(_close(value[k], answer[k]) for k in answer)
        )
    return bool(value == answer)
