"""GPU compute for Python work functions: `from dcp import gpu`. Run by CPython and Pyodide.

The same calls run everywhere a Python slice runs: in a volunteer's browser sandbox (WebGPU, the
sandbox's `navigator.gpu`, its promises waited on synchronously through Pyodide's JavaScript
Promise Integration) and in `local_exec()` (wgpu-py's native backend: Vulkan, Metal or D3D12;
on a machine without a GPU, Mesa's lavapipe). Work functions stay synchronous:

    from dcp import gpu

    SHADER = '''
    @group(0) @binding(0) var<storage, read> x: array<f32>;
    @group(0) @binding(1) var<storage, read_write> y: array<f32>;
    @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
        if (id.x < arrayLength(&y)) { y[id.x] = 2.0 * x[id.x] + y[id.x]; }
    }
    '''

    def work(n):
        x = gpu.buffer([1.0] * n)          # uploaded once; stays on the GPU
        y = gpu.buffer(length=n)           # zeros, f32
        gpu.run(SHADER, [x, y], workgroups=(n + 63) // 64)
        gpu.run(SHADER, [x, y], workgroups=(n + 63) // 64)   # no copy in between
        return y.read()                    # a list, as it was given

or with a kernel written in Python (translated to WGSL, see wgsl.py for the subset):

    @gpu.kernel
    def saxpy(i, a: gpu.f32, x: gpu.Array[gpu.f32], y: gpu.Array[gpu.f32]):
        y[i] = a * x[i] + y[i]

    y = saxpy(2.0, x, y)   # one invocation per element of y, the array it writes; y comes
                           # back as it was given (n=... sets the count instead)

Buffers take `bytes`, `bytearray`, `memoryview`, `array.array` or lists of numbers and read back
as the same kind. Bindings are group 0, `@binding(k)` taking the k-th buffer. A shader that does
not compile, a dispatch the device refuses, or a lost device raises `GPUError` with the
compiler's or the device's own message. The GPU time of a slice (from each submit to the GPU
saying the work is done) is reported with its result.
"""

from __future__ import annotations

import array
import math
import os
import re
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .wgsl import KernelError, KernelSpec, translate_kernel

__all__ = [
    "Array",
    "Buffer",
    "GPUError",
    "Kernel",
    "KernelError",
    "adapter_info",
    "available",
    "buffer",
    "device",
    "f32",
    "i32",
    "kernel",
    "limits",
    "run",
    "u32",
]

WORKGROUP_LIMIT = 65_535  # WebGPU's guaranteed maxComputeWorkgroupsPerDimension
DTYPES = {"f32": "f", "i32": "i", "u32": "I"}  # array.array typecodes, 4 bytes each
TYPECODE_DTYPES = {
    "f": "f32",
    "d": "f32",
    "i": "i32",
    "l": "i32",
    "q": "i32",
    "I": "u32",
    "L": "u32",
}
LIMIT_NAMES = (
    "max_buffer_size",
    "max_storage_buffer_binding_size",
    "max_uniform_buffer_binding_size",
    "max_storage_buffers_per_shader_stage",
    "max_bindings_per_bind_group",
    "max_compute_workgroup_size_x",
    "max_compute_workgroup_size_y",
    "max_compute_workgroup_size_z",
    "max_compute_invocations_per_workgroup",
    "max_compute_workgroups_per_dimension",
    "max_compute_workgroup_storage_size",
)
_BINDING_RE = re.compile(
    r"@group\s*\(\s*(\d+)\s*\)\s*@binding\s*\(\s*(\d+)\s*\)\s*var\s*<\s*(\w+)\s*(?:,\s*(\w+)\s*)?>"
)


class GPUError(RuntimeError):
    """The GPU refused: a shader that does not compile, a bad dispatch, no adapter, a lost
    device."""


class f32:
    """32-bit float, for kernel annotations."""


class i32:
    """32-bit signed integer, for kernel annotations."""


class u32:
    """32-bit unsigned integer, for kernel annotations."""


class Array:
    """`Array[f32]` in a kernel's annotations: a buffer of that element type."""

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


# --------------------------------------------------------------------------------- backends


class _Native:
    """wgpu-py: the machine's own GPU (or Mesa's lavapipe). For local_exec."""

    name = "native"

    def __init__(self) -> None:
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())  # the Vulkan loader asks
        try:
            import wgpu
        except ImportError:
            raise GPUError(
                "local_exec of a GPU work function needs wgpu-py: pip install wgpu "
                "(and a Vulkan, Metal or D3D12 driver; on Linux without a GPU, Mesa's lavapipe)"
            ) from None
        self.wgpu = wgpu
        adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
        if adapter is None:
            raise GPUError("no GPU adapter found (wgpu found no Vulkan, Metal or D3D12 device)")
        self.info = {key: str(adapter.info.get(key, "")) for key in _INFO_KEYS}
        self.device = adapter.request_device_sync(
            required_limits={
                "max-storage-buffer-binding-size": adapter.limits[
                    "max-storage-buffer-binding-size"
                ],
                "max-buffer-size": adapter.limits["max-buffer-size"],
            }
        )
        self.limits = {
            name: int(self.device.limits[name.replace("_", "-")]) for name in LIMIT_NAMES
        }
        self._marker: Any = None
        self.pipelines: dict[tuple[str, str], Any] = {}  # compiled for this device

    def create_buffer(self, size: int, uniform: bool) -> Any:
        usage = self.wgpu.BufferUsage
        kind = usage.UNIFORM if uniform else usage.STORAGE
        return self.device.create_buffer(size=size, usage=kind | usage.COPY_SRC | usage.COPY_DST)

    def write(self, handle: Any, data: bytes) -> None:
        self.device.queue.write_buffer(handle, 0, data)

    def read(self, handle: Any) -> bytes:
        return bytes(self.device.queue.read_buffer(handle))

    def free(self, handle: Any) -> None:
        handle.destroy()

    def pipeline(self, code: str, entry: str, layout: Sequence[tuple[int, str]]) -> Any:
        types = self.wgpu.BufferBindingType
        kinds = {
            "read": types.read_only_storage,
            "read_write": types.storage,
            "uniform": types.uniform,
        }
        entries = [
            {
                "binding": binding,
                "visibility": self.wgpu.ShaderStage.COMPUTE,
                "buffer": {"type": kinds[kind]},
            }
            for binding, kind in layout
        ]
        group_layout = self.device.create_bind_group_layout(entries=entries)
        shader = self.device.create_shader_module(code=code)
        return self.device.create_compute_pipeline(
            layout=self.device.create_pipeline_layout(bind_group_layouts=[group_layout]),
            compute={"module": shader, "entry_point": entry},
        ), group_layout

    def dispatch(
        self, compiled: Any, bindings: Sequence[tuple[int, Any]], groups: tuple[int, int, int]
    ) -> float:
        pipeline, group_layout = compiled
        group = self.device.create_bind_group(
            layout=group_layout,
            entries=[
                {"binding": b, "resource": {"buffer": h, "offset": 0, "size": h.size}}
                for b, h in bindings
            ],
        )
        encoder = self.device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        compute.set_pipeline(pipeline)
        compute.set_bind_group(0, group)
        compute.dispatch_workgroups(*groups)
        compute.end()
        started = time.perf_counter()
        self.device.queue.submit([encoder.finish()])
        self._wait_for_queue()
        return time.perf_counter() - started

    def _wait_for_queue(self) -> None:
        """Until the GPU has done what was submitted. Mapping a 4-byte buffer waits for it:
        wgpu-py's on_submitted_work_done_sync() fails against some wgpu-native builds."""
        if self._marker is None:
            self._marker = self.create_buffer(4, uniform=False)
        self.device.queue.read_buffer(self._marker)


class _Browser:
    """The sandbox's WebGPU (`navigator.gpu`), its promises awaited with JSPI's run_sync."""

    name = "webgpu"

    def __init__(self) -> None:
        # The sandbox's WebGPU objects (registered by sandbox.js; see webgpuModule there).
        import dcp_webgpu as js  # type: ignore[import-not-found]
        from pyodide.ffi import run_sync, to_js  # type: ignore[import-not-found]

        self.js, self.run_sync = js, run_sync
        self.obj = lambda value: to_js(value, dict_converter=js.Object.fromEntries)
        self.to_js = to_js
        navigator_gpu = js.gpu
        if _is_null(navigator_gpu):
            raise GPUError("this worker has no WebGPU (navigator.gpu is missing or turned off)")
        adapter = self.wait(
            navigator_gpu.requestAdapter(self.obj({"powerPreference": "high-performance"}))
        )
        if _is_null(adapter):
            raise GPUError("this worker's browser found no WebGPU adapter")
        info = adapter.info
        self.info = {key: str(getattr(info, key, "") or "") for key in _INFO_KEYS}
        wanted = {
            "maxStorageBufferBindingSize": adapter.limits.maxStorageBufferBindingSize,
            "maxBufferSize": adapter.limits.maxBufferSize,
        }
        self.device = self.wait(adapter.requestDevice(self.obj({"requiredLimits": wanted})))
        self.lost: str | None = None
        self.pipelines: dict[tuple[str, str], Any] = {}  # compiled for this device
        self.device.lost.then(self._on_lost)
        self.limits = {name: int(getattr(self.device.limits, _camel(name))) for name in LIMIT_NAMES}

    def _on_lost(self, info: Any) -> None:
        self.lost = str(getattr(info, "message", "") or "the GPU device was lost")

    def wait(self, promise: Any) -> Any:
        """The promise's value, Python waiting synchronously; a rejection is a GPUError."""
        try:
            return self.run_sync(promise)
        except GPUError:
            raise
        except Exception as error:
            text = str(error)
            if "run_sync" in text or "stack switching" in text.lower():
                raise GPUError(
                    "waiting for the GPU needs JavaScript Promise Integration, which this "
                    f"browser or call path lacks: {error}"
                ) from None
            self.check_lost()
            raise GPUError(f"the GPU refused: {text}") from None

    def check_lost(self) -> None:
        """A GPUError once the device is lost; the next call opens a new device (this one's
        buffers died with it)."""
        if self.lost is not None:
            _State.backend = None
            raise GPUError(f"the GPU device was lost: {self.lost}")

    def checked(self, what: str, action: Callable[[], Any]) -> Any:
        """Runs `action` in a validation error scope; the device's message becomes a GPUError."""
        self.check_lost()
        self.device.pushErrorScope("validation")
        self.device.pushErrorScope("out-of-memory")
        try:
            value = action()
        finally:
            problems = [
                self.wait(self.device.popErrorScope()),
                self.wait(self.device.popErrorScope()),
            ]
        self.check_lost()  # a lost device reports no errors: its work silently did nothing
        messages = [str(problem.message) for problem in problems if not _is_null(problem)]
        if messages:
            raise GPUError(f"{what}: {'; '.join(messages)}")
        return value

    def create_buffer(self, size: int, uniform: bool) -> Any:
        usage = self.js.GPUBufferUsage
        kind = usage.UNIFORM if uniform else usage.STORAGE
        spec = self.obj({"size": size, "usage": kind | usage.COPY_SRC | usage.COPY_DST})
        return self.checked("creating a buffer", lambda: self.device.createBuffer(spec))

    def write(self, handle: Any, data: bytes) -> None:
        self.device.queue.writeBuffer(handle, 0, self.to_js(memoryview(data)))

    def read(self, handle: Any) -> bytes:
        usage = self.js.GPUBufferUsage
        size = int(handle.size)
        staging = self.device.createBuffer(
            self.obj({"size": size, "usage": usage.MAP_READ | usage.COPY_DST})
        )
        try:
            encoder = self.device.createCommandEncoder()
            encoder.copyBufferToBuffer(handle, 0, staging, 0, size)
            self.device.queue.submit(self.js.Array.of(encoder.finish()))
            self.wait(staging.mapAsync(self.js.GPUMapMode.READ))
            data: bytes = self.js.Uint8Array.new(staging.getMappedRange()).to_bytes()
            staging.unmap()
            return data
        finally:
            staging.destroy()

    def free(self, handle: Any) -> None:
        handle.destroy()

    def pipeline(self, code: str, entry: str, layout: Sequence[tuple[int, str]]) -> Any:
        shader = self.device.createShaderModule(self.obj({"code": code}))
        compilation = self.wait(shader.getCompilationInfo())
        errors = [
            f"line {message.lineNum}:{message.linePos}: {message.message}"
            for message in compilation.messages
            if message.type == "error"
        ]
        if errors:
            raise GPUError("the shader does not compile: " + "; ".join(errors))
        kinds = {"read": "read-only-storage", "read_write": "storage", "uniform": "uniform"}
        stage = self.js.GPUShaderStage.COMPUTE
        entries = [
            {"binding": b, "visibility": stage, "buffer": {"type": kinds[k]}} for b, k in layout
        ]

        def build() -> Any:
            group_layout = self.device.createBindGroupLayout(self.obj({"entries": entries}))
            pipeline_layout = self.device.createPipelineLayout(
                self.obj({"bindGroupLayouts": [group_layout]})
            )
            spec = {"layout": pipeline_layout, "compute": {"module": shader, "entryPoint": entry}}
            return self.device.createComputePipeline(self.obj(spec)), group_layout

        return self.checked("the compute pipeline", build)

    def dispatch(
        self, compiled: Any, bindings: Sequence[tuple[int, Any]], groups: tuple[int, int, int]
    ) -> float:
        pipeline, group_layout = compiled
        entries = [{"binding": b, "resource": {"buffer": h}} for b, h in bindings]

        def submit() -> float:
            group = self.device.createBindGroup(
                self.obj({"layout": group_layout, "entries": entries})
            )
            encoder = self.device.createCommandEncoder()
            compute = encoder.beginComputePass()
            compute.setPipeline(pipeline)
            compute.setBindGroup(0, group)
            compute.dispatchWorkgroups(*groups)
            compute.end()
            started = time.perf_counter()
            self.device.queue.submit(self.js.Array.of(encoder.finish()))
            self.wait(self.device.queue.onSubmittedWorkDone())
            return time.perf_counter() - started

        elapsed: float = self.checked("the dispatch", submit)
        return elapsed


_INFO_KEYS = ("vendor", "architecture", "device", "description")


def _is_null(value: Any) -> bool:
    """JavaScript's null and undefined as Pyodide hands them over (None, or a JsNull)."""
    return value is None or type(value).__name__ == "JsNull"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Where the GPU is reached from, by platform: Pyodide (a browser sandbox) uses the page's WebGPU,
# anything else wgpu-py's native backend.
BACKENDS: dict[str, type[_Native] | type[_Browser]] = {"emscripten": _Browser}


class _State:
    """The one device of this process or sandbox, opened on first use; GPU time of the slice."""

    backend: _Native | _Browser | None = None
    failure: GPUError | None = None
    seconds = 0.0


def _backend() -> _Native | _Browser:
    if _State.backend is None:
        if _State.failure is not None:
            raise _State.failure
        try:
            _State.backend = BACKENDS.get(sys.platform, _Native)()
        except GPUError as error:
            _State.failure = error
            raise
        except Exception as error:  # the platform's own error: say it plainly
            _State.failure = GPUError(f"no GPU: {type(error).__name__}: {error}")
            raise _State.failure from error
    return _State.backend


def take_gpu_seconds() -> float:
    """GPU time since the last call (the slice runtime reports it with each result)."""
    seconds, _State.seconds = _State.seconds, 0.0
    return seconds


def available() -> bool:
    """Whether a GPU can be used here (opens the device on first call)."""
    try:
        _backend()
    except GPUError:
        return False
    return True


def adapter_info() -> dict[str, str]:
    """The adapter's vendor, architecture, device and description, as WebGPU reports them."""
    return dict(_backend().info)


def device() -> Any:
    """The device itself, for what the helpers do not cover: a WebGPU GPUDevice in the browser
    (a Pyodide proxy), wgpu-py's GPUDevice in local_exec. Its API differs between the two."""
    return _backend().device


def limits() -> dict[str, int]:
    """The device's limits that compute work meets, WebGPU's names in snake_case."""
    return dict(_backend().limits)


# ---------------------------------------------------------------------------------- buffers


@dataclass
class _Kind:
    """What a buffer's data was given as, so that it reads back as the same."""

    name: str  # "list", "array", "bytes", "bytearray", "memoryview"
    typecode: str = "f"


class Buffer:
    """Data on the GPU. Created by `gpu.buffer()`; stays there across dispatches until read."""

    def __init__(
        self,
        data: Any = None,
        dtype: str | None = None,
        *,
        length: int | None = None,
        uniform: bool = False,
    ) -> None:
        payload, self.dtype, self._kind = _encode(data, dtype, length)
        self.nbytes = len(payload)
        self.uniform = uniform
        backend = _backend()
        self._handle = backend.create_buffer(
            max(_round4(self.nbytes), 16 if uniform else 4), uniform
        )
        if payload:
            backend.write(self._handle, _pad4(payload))

    def __len__(self) -> int:
        return self.nbytes // 4 if self._kind.name in ("list", "array") else self.nbytes

    def __repr__(self) -> str:
        return f"<gpu.Buffer {self.dtype} x {self.nbytes // 4}>"

    def write(self, data: Any) -> None:
        """Replaces the buffer's contents with `data` (same size or smaller)."""
        payload, _, _ = _encode(data, self.dtype, None)
        if len(payload) > _round4(self.nbytes):
            raise ValueError(f"{len(payload)} bytes do not fit a buffer of {self.nbytes}")
        _backend().write(self._handle, _pad4(payload))

    def read(self) -> Any:
        """The buffer's contents, as the kind of data it was created from."""
        raw = _backend().read(self._handle)[: self.nbytes]
        return _decode(raw, self._kind)

    def destroy(self) -> None:
        """Frees the GPU memory now rather than when the sandbox ends."""
        _backend().free(self._handle)


def buffer(
    data: Any = None, dtype: str | None = None, *, length: int | None = None, uniform: bool = False
) -> Buffer:
    """A GPU buffer from `data` (list, array.array, bytes, bytearray, memoryview) or of `length`
    zeros; `dtype` is "f32" (default for lists of floats), "i32" or "u32"."""
    return Buffer(data, dtype, length=length, uniform=uniform)


def _encode(data: Any, dtype: str | None, length: int | None) -> tuple[bytes, str, _Kind]:
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be 'f32', 'i32' or 'u32', not {dtype!r}")
    if data is None:
        if length is None or length < 0:
            raise ValueError("gpu.buffer() needs data or length=N")
        dtype = dtype or "f32"
        return bytes(4 * length), dtype, _Kind("list", DTYPES[dtype])
    if isinstance(data, bytes | bytearray | memoryview):
        kind = "bytes" if isinstance(data, bytes) else type(data).__name__
        return bytes(data), dtype or "f32", _Kind(kind)
    if isinstance(data, array.array):
        dtype = dtype or TYPECODE_DTYPES.get(data.typecode)
        if dtype is None:
            raise ValueError(f"array('{data.typecode}') has no GPU type: use 'f', 'i' or 'I'")
        return array.array(DTYPES[dtype], data).tobytes(), dtype, _Kind("array", data.typecode)
    if isinstance(data, Iterable) and not isinstance(data, str):
        values = list(data)
        dtype = dtype or (
            "f32" if any(isinstance(v, float) for v in values) or not values else "i32"
        )
        try:
            packed = array.array(DTYPES[dtype], values)
        except (TypeError, OverflowError) as error:
            raise ValueError(f"these values do not fit {dtype}: {error}") from None
        return packed.tobytes(), dtype, _Kind("list", DTYPES[dtype])
    raise TypeError(
        f"a GPU buffer takes a list, array.array, bytes or memoryview, not {type(data).__name__}"
    )


def _decode(raw: bytes, kind: _Kind) -> Any:
    if kind.name == "bytes":
        return raw
    if kind.name == "bytearray":
        return bytearray(raw)
    if kind.name == "memoryview":
        return memoryview(raw)
    values = array.array(kind.typecode if kind.name == "list" else _GPU_TYPECODE[kind.typecode])
    values.frombytes(raw)
    if kind.name == "list":
        return values.tolist()
    return array.array(kind.typecode, values)


_GPU_TYPECODE = {"f": "f", "d": "f", "i": "i", "l": "i", "q": "i", "I": "I", "L": "I"}


def _round4(size: int) -> int:
    return (size + 3) // 4 * 4


def _pad4(data: bytes) -> bytes:
    return data + bytes(_round4(len(data)) - len(data))


# --------------------------------------------------------------------------------- dispatch


def declared_bindings(code: str) -> list[tuple[int, str]]:
    """(binding, "read" | "read_write" | "uniform") for each buffer the shader declares."""
    found = []
    for group, binding, space, access in _BINDING_RE.findall(code):
        if group != "0":
            raise GPUError(f"@group({group}): buffers are bound in @group(0) only")
        if space == "uniform":
            found.append((int(binding), "uniform"))
        elif space == "storage":
            found.append((int(binding), "read_write" if access == "read_write" else "read"))
        else:
            raise GPUError(
                f"@binding({binding}) is var<{space}>: only storage and uniform buffers are bound"
            )
    return sorted(found)


def run(
    code: str, buffers: Sequence[Any], workgroups: int | Sequence[int], *, entry: str = "main"
) -> tuple[Any, ...]:
    """Dispatches WGSL `code` once: `buffers[k]` is `@group(0) @binding(k)`.

    A buffer may be a `Buffer` (it stays on the GPU) or data (uploaded for this call). Returns
    the read_write bindings' contents: Buffers as themselves, data read back as its own kind
    (and lists, arrays and bytearrays updated in place).
    """
    layout = declared_bindings(code)
    if [binding for binding, _ in layout] != list(range(len(buffers))):
        declared = ", ".join(f"@binding({b})" for b, _ in layout) or "none"
        raise GPUError(
            f"the shader declares {declared}; {len(buffers)} buffer(s) were given, "
            "one per binding in order"
        )
    groups = _workgroups(workgroups)
    bound = [
        _bound(data, kind == "uniform") for data, (_, kind) in zip(buffers, layout, strict=True)
    ]
    _dispatch(code, entry, layout, [b for b, _ in bound], groups)
    return tuple(
        _give_back(data, gpu_buffer, temporary)
        for data, (gpu_buffer, temporary), (_, kind) in zip(buffers, bound, layout, strict=True)
        if kind == "read_write"
    )


def _workgroups(workgroups: int | Sequence[int]) -> tuple[int, int, int]:
    counts = [workgroups] if isinstance(workgroups, int) else list(workgroups)
    if not 1 <= len(counts) <= 3 or not all(isinstance(c, int) and c >= 0 for c in counts):
        raise ValueError(f"workgroups must be 1 to 3 non-negative ints, not {workgroups!r}")
    x, y, z = [*counts, 1, 1][:3]
    return x, y, z


def _bound(data: Any, uniform: bool) -> tuple[Buffer, bool]:
    if isinstance(data, Buffer):
        return data, False
    return Buffer(data, uniform=uniform), True


def _give_back(data: Any, gpu_buffer: Buffer, temporary: bool) -> Any:
    if not temporary:
        return gpu_buffer
    value = gpu_buffer.read()
    gpu_buffer.destroy()
    if isinstance(data, list | bytearray | array.array):
        data[:] = value
        return data
    return value


def _dispatch(
    code: str,
    entry: str,
    layout: Sequence[tuple[int, str]],
    buffers: Sequence[Buffer],
    groups: tuple[int, int, int],
) -> None:
    backend = _backend()
    compiled = backend.pipelines.get((code, entry))
    if compiled is None:
        try:
            compiled = backend.pipeline(code, entry, layout)
        except GPUError:
            raise
        except Exception as error:  # wgpu-py's validation error carries the compiler's message
            raise GPUError(f"the shader does not compile: {error}") from None
        backend.pipelines[(code, entry)] = compiled
    try:
        elapsed = backend.dispatch(
            compiled,
            [(b, buf._handle) for (b, _), buf in zip(layout, buffers, strict=True)],
            groups,
        )
    except GPUError:
        raise
    except Exception as error:
        raise GPUError(f"the dispatch failed: {error}") from None
    _State.seconds += elapsed


# ---------------------------------------------------------------------------------- kernels


class Kernel:
    """A Python function translated to a WGSL compute shader: call it like the function,
    without the index; it runs once per element of the first array it writes (or `n=` times)."""

    def __init__(self, function: Callable[..., Any], spec: KernelSpec) -> None:
        self.function = function
        self.spec = spec
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__

    @property
    def wgsl(self) -> str:
        """The generated shader, to read or to use with gpu.run()."""
        return self.spec.wgsl

    def __call__(self, *args: Any, n: int | None = None) -> Any:
        arrays = self._arrays(args)
        bound = [_bound_array(param, value) for param, value in arrays]
        written = [b for (param, _), (b, _) in zip(arrays, bound, strict=True) if param.written]
        count = n if n is not None else written[0].nbytes // 4
        uniform = Buffer(self._uniform(args, count), uniform=True)
        layout = [(param.binding, "read_write" if param.written else "read") for param, _ in arrays]
        layout.append((self.spec.uniform_binding, "uniform"))
        groups = _groups_for(count, self.spec.workgroup_size)
        _dispatch(self.spec.wgsl, "main", layout, [b for b, _ in bound] + [uniform], groups)
        uniform.destroy()
        out = []
        for (param, value), (gpu_buffer, temporary) in zip(arrays, bound, strict=True):
            if param.written:
                out.append(_give_back(value, gpu_buffer, temporary))
            elif temporary:
                gpu_buffer.destroy()
        return out[0] if len(out) == 1 else tuple(out)

    def _arrays(self, args: Sequence[Any]) -> list[tuple[Any, Any]]:
        """(parameter, value) of each array argument; TypeError for a wrong argument count."""
        params = self.spec.params
        if len(args) != len(params):
            names = ", ".join(param.name for param in params)
            raise TypeError(
                f"{self.__name__}() takes {len(params)} arguments ({names}), {len(args)} given"
            )
        return [(p, value) for p, value in zip(params, args, strict=True) if p.kind == "array"]

    def _uniform(self, args: Sequence[Any], count: int) -> bytes:
        scalars = {
            param.name: value
            for param, value in zip(self.spec.params, args, strict=True)
            if param.kind == "scalar"
        }
        packed = b""
        for name, dtype in self.spec.uniform_layout:
            value = count if name == "n" else scalars.get(name, 0)
            packed += struct.pack(
                "<" + DTYPES[dtype], float(value) if dtype == "f32" else int(value)
            )
        return packed


def _bound_array(param: Any, value: Any) -> tuple[Buffer, bool]:
    if isinstance(value, Buffer):
        if value.dtype != param.dtype:
            raise TypeError(
                f"{param.name} is Array[{param.dtype}]; the buffer given holds {value.dtype}"
            )
        return value, False
    return Buffer(value, param.dtype), True


def _groups_for(count: int, size: int) -> tuple[int, int, int]:
    total = math.ceil(count / size)
    if total <= WORKGROUP_LIMIT:
        return total, 1, 1
    return WORKGROUP_LIMIT, math.ceil(total / WORKGROUP_LIMIT), 1


def kernel(function: Callable[..., Any]) -> Kernel:
    """Decorator: a typed element-wise Python function becomes a GPU kernel (see wgsl.py)."""
    import ast
    import inspect
    import textwrap

    try:
        lines, first_line = inspect.getsourcelines(function)
    except (OSError, TypeError) as error:
        raise KernelError(f"the source of {function.__name__} is not available: {error}") from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise KernelError(f"{function.__name__} is not a plain def")
    ast.increment_lineno(tree, first_line - 1)
    filename = function.__code__.co_filename
    # Constants the kernel reads: module globals, and the enclosing work function's locals.
    names = {**function.__globals__, **inspect.getclosurevars(function).nonlocals}
    return Kernel(function, translate_kernel(node, filename=filename, globals_=names))
