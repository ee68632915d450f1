"""How to gzip a big package's layer: zlib levels, and a deterministic parallel deflate, on a real
shared library. A script, not a test.

    python benchmarks/gzip_options.py --wheel WHEEL --member PATH [--threads 2] [--runs 3]

e.g. `--wheel nvidia_cublas_cu12-12.4.5.8-py3-none-manylinux2014_x86_64.whl
--member nvidia/cublas/lib/libcublasLt.so.12` (the first 256 MiB of the member are used).

The parallel variant is the one a deterministic pigz does: the input cut into 1 MiB blocks, each
deflated on its own thread (zlib releases the GIL) with the previous block's last 32 KiB as its
dictionary and a sync flush at its end, the blocks joined in order into one gzip member. Its
bytes depend on the input, level and block size only, never on the thread count or timing. Each
figure is the best of --runs, in MB/s (10^6 bytes) of input, with the output's size as a ratio of
the input's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable, List

BLOCK = 1 << 20
WINDOW = 32 << 10
SAMPLE = 256 << 20


def serial_gzip(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _block(data: memoryview, start: int, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    if start:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=data[start - WINDOW : start])
    end = min(start + BLOCK, len(data))
    mode = zlib.Z_FINISH if end == len(data) else zlib.Z_SYNC_FLUSH
    return compressor.compress(data[start:end]) + compressor.flush(mode)


def parallel_gzip(data: bytes, level: int, threads: int) -> bytes:
    view = memoryview(data)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # mtime 0, unknown OS: no host in it
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        blocks = list(
            pool.map(lambda start: _block(view, start, level), range(0, len(data), BLOCK))
        )
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return header + b"".join(blocks) + trailer


def best(runs: int, compress: Callable[[], bytes]) -> tuple[float, bytes]:
    timings: List[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        output = compress()
        timings.append(time.perf_counter() - started)
    return min(timings), output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--member", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel, wheel.open(args.member) as member:
        data = member.read(SAMPLE)
    print(f"{args.member}: {len(data) / 1e6:.0f} MB")
    variants = [
        ("zlib level 6", lambda: serial_gzip(data, 6)),
        ("zlib level 1", lambda: serial_gzip(data, 1)),
        ("parallel level 1, 1 thread", lambda: parallel_gzip(data, 1, 1)),
        (f"parallel level 1, {args.threads} threads", lambda: parallel_gzip(data, 1, args.threads)),
    ]
    outputs = {}
    for name, compress in variants:
        seconds, output = best(args.runs, compress)
        assert zlib.decompress(output, 31) == data, name
        outputs[name] = output
        print(
            f"{name:32} {len(data) / seconds / 1e6:6.1f} MB/s  ratio {len(output) / len(data):.3f}"
        )
    one, many = outputs["parallel level 1, 1 thread"], outputs[variants[-1][0]]
    print(f"parallel output independent of the thread count: {one == many}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
