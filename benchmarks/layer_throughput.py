"""Layer writer throughput, measured against this machine's own anchors. A script, not a test.

    python benchmarks/layer_throughput.py [--size-mib 1024] [--gzip-mib 64] [--runs 3]
                                          [--workdir DIR] [--python PYTHON]

It writes (or reuses) an input file of random bytes in the work directory, times
`openssl dgst -sha256` on it (the hashing anchor: the target is >= 0.4x of it for uncompressed
layers) and `dd bs=1M` copying it (the disk's own write speed), then runs the layer command as a
child process: uncompressed to a file on the same disk, uncompressed to /dev/null, and gzip on a
smaller input (gzip runs at tens of MB/s). Each figure is the best of --runs runs, in MB/s
(10^6 bytes), with the ratio to openssl and the writer child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
TARGET_RATIO = 0.4
MIB = 1 << 20


@dataclass(frozen=True)
class Timing:
    seconds: float
    peak_rss_bytes: int


def run_timed(command: Sequence[str], env: Optional[Dict[str, str]] = None) -> Timing:
    """Run `command`, returning its wall time and peak RSS (from wait4, this child only)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed with exit status {process.returncode}")
    return Timing(seconds, usage.ru_maxrss * 1024)


def best_of(runs: int, command: Sequence[str], env: Optional[Dict[str, str]] = None) -> Timing:
    timings = [run_timed(command, env) for _ in range(runs)]
    return min(timings, key=lambda timing: timing.seconds)


def random_input(path: Path, size_mib: int) -> Path:
    """Reuse `path` if it has the right size, else fill it with random (incompressible) bytes."""
    if not path.exists() or path.stat().st_size != size_mib * MIB:
        with open(path, "wb") as handle:
            for _ in range(size_mib):
                handle.write(os.urandom(MIB))
    return path


def layer_spec(workdir: Path, source: Path, compression: str) -> Path:
    spec = workdir / f"spec-{compression}-{source.name}.json"
    entries = [{"path": "models/weights.bin", "source": str(source)}]
    spec.write_text(json.dumps({"compression": compression, "entries": entries}))
    return spec


def layer_command(python: str, spec: Path, output_dir: Path, discard: bool) -> List[str]:
    command = [python, "-m", "ai_agent.oci", "layer", "--spec", str(spec)]
    return command + ["--output-dir", str(output_dir)] + (["--discard-blob"] if discard else [])


def megabytes_per_second(size_bytes: int, timing: Timing) -> float:
    return size_bytes / timing.seconds / 1e6


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--gzip-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv or None)
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is needed as the hashing anchor")

    workdir = args.workdir / "layer-throughput"
    workdir.mkdir(parents=True, exist_ok=True)
    big = random_input(workdir / f"input-{args.size_mib}MiB.bin", args.size_mib)
    small = random_input(workdir / f"input-{args.gzip_mib}MiB.bin", args.gzip_mib)
    env = {**os.environ, "PYTHONPATH": str(PLUGINS_DIR)}
    copy_target = workdir / "dd-copy.bin"
    output_dir = workdir / "layer-out"

    openssl = best_of(args.runs, ["openssl", "dgst", "-sha256", str(big)])
    disk = best_of(args.runs, ["dd", f"if={big}", f"of={copy_target}", "bs=1M", "status=none"])
    copy_target.unlink()
    anchor = megabytes_per_second(big.stat().st_size, openssl)

    none_spec = layer_spec(workdir, big, "none")
    gzip_spec = layer_spec(workdir, small, "gzip")
    cases = [
        ("none -> file (same disk)", big, layer_command(args.python, none_spec, output_dir, False)),
        ("none -> /dev/null", big, layer_command(args.python, none_spec, output_dir, True)),
        (
            f"gzip-6 -> /dev/null ({args.gzip_mib} MiB)",
            small,
            layer_command(args.python, gzip_spec, output_dir, True),
        ),
    ]
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"input: {args.size_mib} MiB of random bytes in {workdir}; CPython {version};")
    print(f"{os.cpu_count()} CPUs; best of {args.runs} runs; MB = 10^6 bytes")
    print(f"{'anchor':<36}{'MB/s':>8}")
    print(f"{'openssl dgst -sha256':<36}{anchor:>8.0f}")
    print(f"{'dd bs=1M (disk write)':<36}{megabytes_per_second(big.stat().st_size, disk):>8.0f}")
    print(f"{'layer writer':<36}{'MB/s':>8}{'x openssl':>11}{'peak RSS MB':>13}")
    uncompressed_ratios = []
    for label, source, command in cases:
        timing = best_of(args.runs, command, env)
        speed = megabytes_per_second(source.stat().st_size, timing)
        ratio = speed / anchor
        if label.startswith("none"):
            uncompressed_ratios.append(ratio)
        print(f"{label:<36}{speed:>8.0f}{ratio:>10.2f}x{timing.peak_rss_bytes / 1e6:>13.1f}")
    shutil.rmtree(output_dir, ignore_errors=True)
    met = "met" if min(uncompressed_ratios) >= TARGET_RATIO else "NOT met"
    print(f"target >= {TARGET_RATIO}x openssl for uncompressed layers: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
