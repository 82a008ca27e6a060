/*
 * GPU compute for JavaScript work functions: the `gpu` global of a sandbox. The same helpers as
 * Python's `from dcp import gpu` (dcp/runtime/gpu.py), in WebGPU's own spelling and with promises:
 *
 *   const x = await gpu.buffer(new Float32Array([1, 2, 3]));   // or a plain array (f32)
 *   const [y] = await gpu.run(SHADER, [x, new Float32Array(3)], Math.ceil(3 / 64));
 *   const device = await gpu.device();                          // the GPUDevice itself
 *
 * Buffers are `@group(0) @binding(k)` in order; `run` resolves to the read_write bindings'
 * contents (a GpuBuffer stays on the GPU and is returned as itself; data comes back as its own
 * kind: Float32Array, Int32Array, Uint32Array, ArrayBuffer or a plain array). A shader that does
 * not compile or a dispatch the device refuses rejects with a GPUError naming the compiler's
 * message. The GPU time of a slice is measured from each submit to onSubmittedWorkDone().
 */

const BINDING_RE = /@group\s*\(\s*(\d+)\s*\)\s*@binding\s*\(\s*(\d+)\s*\)\s*var\s*<\s*(\w+)\s*(?:,\s*(\w+)\s*)?>/g;
const ARRAYS = { f32: Float32Array, i32: Int32Array, u32: Uint32Array };
const LAYOUT_TYPES = { read: "read-only-storage", read_write: "storage", uniform: "uniform" };

export class GPUError extends Error {
  constructor(message) {
    super(message);
    this.name = "GPUError";
  }
}

/** (binding, "read" | "read_write" | "uniform") for each buffer a WGSL module declares. */
export function declaredBindings(code) {
  const found = [];
  for (const [, group, binding, space, access] of code.matchAll(BINDING_RE)) {
    if (group !== "0") throw new GPUError(`@group(${group}): buffers are bound in @group(0) only`);
    if (space === "uniform") found.push([Number(binding), "uniform"]);
    else if (space === "storage") found.push([Number(binding), access === "read_write" ? "read_write" : "read"]);
    else throw new GPUError(`@binding(${binding}) is var<${space}>: only storage and uniform buffers are bound`);
  }
  return found.sort((a, b) => a[0] - b[0]);
}

function encode(data, dtype) {
  if (data instanceof ArrayBuffer) return { bytes: new Uint8Array(data), kind: "ArrayBuffer" };
  if (ArrayBuffer.isView(data)) {
    const kind = Object.keys(ARRAYS).find((name) => data instanceof ARRAYS[name]);
    if (!kind) throw new GPUError(`a ${data.constructor.name} has no GPU type: use Float32Array, Int32Array or Uint32Array`);
    return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), kind };
  }
  if (Array.isArray(data)) {
    const Type = ARRAYS[dtype ?? "f32"];
    if (!Type) throw new GPUError(`dtype must be "f32", "i32" or "u32", not ${JSON.stringify(dtype)}`);
    return { bytes: new Uint8Array(Type.from(data).buffer), kind: `Array:${dtype ?? "f32"}` };
  }
  throw new GPUError(`a GPU buffer takes a typed array, an ArrayBuffer or an array of numbers, not ${typeof data}`);
}

function decode(bytes, kind) {
  if (kind === "ArrayBuffer") return bytes.buffer;
  if (kind.startsWith("Array:")) return Array.from(new ARRAYS[kind.slice(6)](bytes.buffer));
  return new ARRAYS[kind](bytes.buffer);
}

const round4 = (size) => Math.ceil(size / 4) * 4;

/** The `gpu` helpers over `navigatorGpu` (the sandbox's own navigator.gpu, kept privately). */
export function gpuHelpers(navigatorGpu, now = () => performance.now()) {
  let devicePromise = null;
  let lost = null;
  let gpuMs = 0;
  const pipelines = new Map();

  async function openDevice() {
    if (!navigatorGpu) {
      throw new GPUError("this worker has no WebGPU (local_exec runs JavaScript under node, which has none; a browser worker without an adapter gets no GPU jobs)");
    }
    const adapter = await navigatorGpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new GPUError("this worker's browser found no WebGPU adapter");
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
      },
    });
    device.lost.then((info) => {
      if (devicePromise) lost = info?.message || "the GPU device was lost";
    });
    return { adapter, device };
  }

  /** A GPUError once the device is lost; the next call opens a new device (this one's buffers
   * died with it). */
  function checkLost() {
    if (!lost) return;
    const why = lost;
    devicePromise = null;
    lost = null;
    pipelines.clear();
    throw new GPUError(`the GPU device was lost: ${why}`);
  }

  async function opened() {
    devicePromise ??= openDevice().catch((error) => {
      devicePromise = null;
      throw error;
    });
    const found = await devicePromise;
    checkLost();
    return found;
  }

  async function checked(device, what, action) {
    device.pushErrorScope("validation");
    device.pushErrorScope("out-of-memory");
    let value;
    try {
      value = await action();
    } finally {
      const problems = [await device.popErrorScope(), await device.popErrorScope()].filter(Boolean);
      checkLost(); // a lost device reports no errors: its work silently did nothing
      if (problems.length) throw new GPUError(`${what}: ${problems.map((p) => p.message).join("; ")}`);
    }
    return value;
  }

  class GpuBuffer {
    constructor(device, handle, byteLength, kind) {
      this.device = device;
      this.handle = handle;
      this.byteLength = byteLength;
      this.kind = kind;
    }

    async read() {
      const { device, handle } = this;
      const staging = device.createBuffer({ size: handle.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      try {
        const encoder = device.createCommandEncoder();
        encoder.copyBufferToBuffer(handle, 0, staging, 0, handle.size);
        device.queue.submit([encoder.finish()]);
        try {
          await staging.mapAsync(GPUMapMode.READ);
        } catch (error) {
          checkLost();
          throw new GPUError(`reading a buffer failed: ${error.message}`);
        }
        const bytes = new Uint8Array(staging.getMappedRange().slice(0, this.byteLength));
        staging.unmap();
        return decode(bytes, this.kind);
      } finally {
        staging.destroy();
      }
    }

    write(data) {
      const { bytes } = encode(data, this.kind.startsWith("Array:") ? this.kind.slice(6) : undefined);
      this.device.queue.writeBuffer(this.handle, 0, bytes.slice(), 0, round4(bytes.byteLength));
    }

    destroy() {
      this.handle.destroy();
    }
  }

  async function buffer(data, dtype, { uniform = false } = {}) {
    const { device } = await opened();
    const { bytes, kind } = encode(data, dtype);
    const size = Math.max(round4(bytes.byteLength), uniform ? 16 : 4);
    const usage = (uniform ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE) | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const handle = await checked(device, "creating a buffer", () => device.createBuffer({ size, usage }));
    const padded = new Uint8Array(round4(bytes.byteLength));
    padded.set(bytes);
    if (padded.byteLength) device.queue.writeBuffer(handle, 0, padded);
    return new GpuBuffer(device, handle, bytes.byteLength, kind);
  }

  async function pipeline(device, code, entry, layout) {
    const key = `${entry}\n${code}`;
    if (pipelines.has(key)) return pipelines.get(key);
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error").map((m) => `line ${m.lineNum}:${m.linePos}: ${m.message}`);
    if (errors.length) throw new GPUError(`the shader does not compile: ${errors.join("; ")}`);
    const compiled = await checked(device, "the compute pipeline", () => {
      const entries = layout.map(([binding, kind]) => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: LAYOUT_TYPES[kind] } }));
      const groupLayout = device.createBindGroupLayout({ entries });
      const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [groupLayout] });
      return { groupLayout, pipeline: device.createComputePipeline({ layout: pipelineLayout, compute: { module, entryPoint: entry } }) };
    });
    pipelines.set(key, compiled);
    return compiled;
  }

  /** Dispatches `code` once over `buffers` (GpuBuffers or data, one per binding, in order). */
  async function run(code, buffers, workgroups, { entry = "main" } = {}) {
    const { device } = await opened();
    const layout = declaredBindings(code);
    if (layout.length !== buffers.length || layout.some(([binding], index) => binding !== index)) {
      const declared = layout.map(([b]) => `@binding(${b})`).join(", ") || "none";
      throw new GPUError(`the shader declares ${declared}; ${buffers.length} buffer(s) were given, one per binding in order`);
    }
    const counts = typeof workgroups === "number" ? [workgroups] : [...workgroups];
    const [x, y = 1, z = 1] = counts;
    const { pipeline: compute, groupLayout } = await pipeline(device, code, entry, layout);
    const bound = await Promise.all(buffers.map((data, index) => (data instanceof GpuBuffer
      ? data : buffer(data, undefined, { uniform: layout[index][1] === "uniform" }))));
    await checked(device, "the dispatch", async () => {
      const group = device.createBindGroup({
        layout: groupLayout,
        entries: bound.map((b, index) => ({ binding: index, resource: { buffer: b.handle } })),
      });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(compute);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
      const started = now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      gpuMs += now() - started;
    });
    const out = [];
    for (const [index, [, kind]] of layout.entries()) {
      const given = buffers[index];
      if (kind === "read_write") out.push(given instanceof GpuBuffer ? given : await bound[index].read());
      if (!(given instanceof GpuBuffer)) bound[index].destroy();
    }
    return out;
  }

  const limitNames = [
    "maxBufferSize", "maxStorageBufferBindingSize", "maxUniformBufferBindingSize",
    "maxStorageBuffersPerShaderStage", "maxBindingsPerBindGroup", "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupSizeY", "maxComputeWorkgroupSizeZ", "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupsPerDimension", "maxComputeWorkgroupStorageSize",
  ];

  return Object.freeze({
    GPUError,
    buffer,
    run,
    device: async () => (await opened()).device,
    adapterInfo: async () => {
      const { info } = (await opened()).adapter;
      return { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description };
    },
    limits: async () => {
      const { limits } = (await opened()).device;
      return Object.fromEntries(limitNames.map((name) => [name, limits[name]]));
    },
    /** GPU milliseconds since the last call: the sandbox reports them with the slice's result. */
    takeGpuMs() {
      const spent = gpuMs;
      gpuMs = 0;
      return Math.round(spent * 1000) / 1000;
    },
  });
}
