"""The Mandelbrot set computed on volunteers' GPUs, tile by tile, saved as a PNG.

    DCP_SCHEDULER_URL=http://127.0.0.1:8000 DCP_HOMEDIR=$HOME python examples/gpu_mandelbrot.py
    python examples/gpu_mandelbrot.py --local          # on this machine's GPU (pip install wgpu)

Each slice is one tile: the work function's kernel (`@gpu.kernel`, plain Python that the GPU
runs once per pixel) counts how many steps each point takes to escape. The job asks for a WebGPU
worker by itself, because the work function uses `dcp.gpu`. Options: `--size N` (pixels a side,
a multiple of 64; default 512), `--out FILE` (default mandelbrot.png).
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from pathlib import Path

import dcp

TILE = 64  # pixels a side of one slice's tile
MAX_ITER = 200


def work(tile, size, max_iter):
    from dcp import gpu
    from dcp.gpu import Array, f32, i32

    @gpu.kernel
    def escape(i, x0: f32, y0: f32, step: f32, cols: i32, limit: i32, out: Array[i32]):
        cx = x0 + (i % cols) * step
        cy = y0 + (i // cols) * step
        x = 0.0
        y = 0.0
        steps = 0
        for _k in range(limit):
            if x * x + y * y > 4.0:
                break
            x_next = x * x - y * y + cx
            y = 2.0 * x * y + cy
            x = x_next
            steps += 1
        out[i] = steps

    row, col, tile_size = tile
    left, top, width = -2.2, -1.5, 3.0  # the part of the complex plane shown
    step = width / size
    counts = escape(
        left + col * tile_size * step,
        top + row * tile_size * step,
        step,
        tile_size,
        max_iter,
        [0] * (tile_size * tile_size),
    )
    return {"row": row, "col": col, "counts": counts}


def colour(steps: int, max_iter: int) -> bytes:
    """A point's RGB: black inside the set, blue to gold by escape speed outside."""
    if steps >= max_iter:
        return b"\x00\x00\x00"
    t = (steps / max_iter) ** 0.5
    return bytes((int(255 * t), int(200 * t * t + 30 * t), int(120 * (1 - t) + 60)))


def png(pixels: list[bytearray], size: int) -> bytes:
    """An RGB PNG of `size` rows of RGB bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--local", action="store_true", help="run on this machine's GPU")
    options.add_argument("--size", type=int, default=512, help="pixels a side (a multiple of 64)")
    options.add_argument("--out", default="mandelbrot.png", help="the PNG to write")
    args = options.parse_args()
    if args.size <= 0 or args.size % TILE:
        sys.exit(f"--size must be a positive multiple of {TILE}, not {args.size}")
    tiles = [
        [row, col, TILE] for row in range(args.size // TILE) for col in range(args.size // TILE)
    ]
    job = dcp.compute_for(tiles, work, args=[args.size, MAX_ITER])
    job.public = {"name": "Mandelbrot on GPUs"}
    if args.local:
        results = job.local_exec()
    else:
        dcp.init()
        results = job.exec(slice_payment_offer="0.001")
    pixels = [bytearray(3 * args.size) for _ in range(args.size)]
    for tile in results.values():
        for index, steps in enumerate(tile["counts"]):
            y, x = tile["row"] * TILE + index // TILE, tile["col"] * TILE + index % TILE
            pixels[y][3 * x : 3 * x + 3] = colour(steps, MAX_ITER)
    Path(args.out).write_bytes(png(pixels, args.size))
    print(f"wrote {args.out}: {args.size}x{args.size} pixels from {len(tiles)} GPU tiles")


if __name__ == "__main__":
    main()
