"""Detached-signature check of a large image vs `sha256sum` of the same file, and its peak memory.

    .venv/bin/python bench/image_verify.py [--size 2G] [--runs 3] [--dir DIR]

Writes an image of --size bytes (a 64 MiB random block repeated: real data, written fast), signs it with
`openssl dgst -sha256 -sign` (RSA 2048), then, with the file in the page cache, times in fresh processes:
- `sha256sum FILE` (the reference), and
- siteline's verify_detached(FILE, SIG, PUB) (hash in 1 MiB reads + RSA check).
Prints the best of --runs for each (whole processes), the ratio sha256sum_time / siteline_time (goal >= 0.9),
and siteline's peak RSS (VmHWM of its process) against a process that only imports the same modules, plus the Python
heap peak from tracemalloc (goal: constant, under 64 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = 64 << 20
CHILD = """
import json, resource, sys, time, tracemalloc
from pathlib import Path
from siteline.core.images.signature import verify_detached
mode, image, sig, pub = sys.argv[1:5]
if mode == "idle":
    verdict_ok, elapsed, heap = True, 0.0, 0
else:
    if mode == "trace":
        tracemalloc.start()
    start = time.perf_counter()
    verdict = verify_detached(Path(image), Path(sig), Path(pub))
    elapsed = time.perf_counter() - start
    heap = tracemalloc.get_traced_memory()[1] if mode == "trace" else 0
    verdict_ok = verdict.ok
    if not verdict.ok:
        print(verdict.reason, file=sys.stderr)
# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork+exec.
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"ok": verdict_ok, "elapsed": elapsed, "heap": heap, "rss": rss}))
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)


def make_image(path: Path, size: int) -> None:
    block = os.urandom(min(BLOCK, size))
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            fh.write(block[:left])
            left -= len(block)


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {done.stderr.strip()}")
    return done


def child(mode: str, image: Path, sig: Path, pub: Path) -> dict[str, float]:
    result: dict[str, float] = json.loads(run([sys.executable, "-c", CHILD, mode, str(image), str(sig), str(pub)])
                                          .stdout)
    if not result["ok"]:
        sys.exit("siteline refused the signature openssl made")
    return result


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    run(cmd)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2G", help="image size, e.g. 2G, 256M (default 2G)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", help="where to write the image (default: a temp dir, removed after)")
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        image, key, pub, sig = d / "image.img", d / "k.pem", d / "pub.pem", d / "image.sig"
        start = time.perf_counter()
        make_image(image, size)
        print(f"image: {size / (1 << 20):.0f} MiB written in {time.perf_counter() - start:.1f} s")
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)])
        run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)])
        run(["openssl", "dgst", "-sha256", "-sign", str(key), "-out", str(sig), str(image)])  # also warms the cache
        ref, ours, inner = [], [], []
        for _ in range(args.runs):
            ref.append(timed(["sha256sum", str(image)]))
            start = time.perf_counter()
            inner.append(child("time", image, sig, pub)["elapsed"])
            ours.append(time.perf_counter() - start)  # the whole process, as sha256sum's: start-up included
        traced = child("trace", image, sig, pub)
        idle = child("idle", image, sig, pub)
        best_ref, best_ours = min(ref), min(ours)
        mib = size / (1 << 20)
        print(f"sha256sum:        best {best_ref:.2f} s ({mib / best_ref:.0f} MiB/s) of {args.runs}")
        print(f"siteline verify:  best {best_ours:.2f} s ({mib / best_ours:.0f} MiB/s) of {args.runs}, whole process; "
              f"the check itself {min(inner):.2f} s")
        ratio = best_ref / best_ours
        print(f"ratio sha256sum/siteline: {ratio:.2f} (goal >= 0.9) {'OK' if ratio >= 0.9 else 'BELOW GOAL'}")
        peak, base = traced["rss"] / (1 << 20), idle["rss"] / (1 << 20)
        print(f"peak RSS: {peak:.1f} MiB (a process importing the same modules: {base:.1f} MiB; "
              f"growth {peak - base:.1f} MiB); Python heap peak (tracemalloc) {traced['heap'] / (1 << 20):.2f} MiB")
        print(f"memory goal (< 64 MiB, constant): {'OK' if peak < 64 else 'ABOVE GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
