"""How to gzip a big package's layer: zlib levels, and the layer writer's parallel blocks, on a
real shared library. A script, not a test.

    python3 benchmarks/gzip_options.py --wheel WHEEL --member PATH [--runs 3]

e.g. `--wheel nvidia_cublas_cu12-12.4.5.8-py3-none-manylinux2014_x86_64.whl
--member nvidia/cublas/lib/libcublasLt.so.12` (the first 256 MiB of the member are used).

Every variant is the plugin's own layer writer (`ai_agent.oci.layer.write_layer`) writing a
one-file layer to /dev/null, so what is measured is what the build runs: serial gzip at levels 6
and 1, and `Compression(parallel=True)` (level 1 in independent 1 MiB blocks) on one core and on
all of this process' cores (the cores are limited with sched_setaffinity). Each figure is the
best of --runs, in MB/s (10^6 bytes) of input, with the blob's size as a ratio of the input's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import List, Set

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from ai_agent.oci.layer import (  # noqa: E402
    Compression,
    Entry,
    LayerOptions,
    LayerResult,
    write_layer,
)

SAMPLE = 256 << 20


def measure(sample: Path, compression: Compression, cores: Set[int], runs: int) -> LayerResult:
    """The best of `runs` layer writes of `sample` on `cores`; prints its speed and ratio."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        timings: List[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            result = write_layer(
                [Entry.file("lib.so", sample)], os.devnull, LayerOptions(compression)
            )
            timings.append(time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, allowed)
    size = sample.stat().st_size
    name = f"level {compression.level}" + (", parallel blocks" if compression.parallel else "")
    print(
        f"{name:24} {len(cores)} core(s)  {size / min(timings) / 1e6:6.1f} MB/s"
        f"  ratio {result.descriptor.size / size:.3f}"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--member", required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cores = os.sched_getaffinity(0)
    one = {min(cores)}
    with tempfile.TemporaryDirectory() as scratch:
        sample = Path(scratch) / "sample"
        with zipfile.ZipFile(args.wheel) as wheel, wheel.open(args.member) as member:
            sample.write_bytes(member.read(SAMPLE))
        print(f"{args.member}: {sample.stat().st_size / 1e6:.0f} MB")
        measure(sample, Compression("gzip", 6), one, args.runs)
        measure(sample, Compression("gzip", 1), one, args.runs)
        alone = measure(sample, Compression("gzip", 1, parallel=True), one, args.runs)
        every = measure(sample, Compression("gzip", 1, parallel=True), cores, args.runs)
    print(
        f"parallel blocks' digest independent of the cores: {alone.descriptor == every.descriptor}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
