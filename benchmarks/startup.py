"""Start-up of the `flowkernel` command: the CPU time of `--version` and `--help`, as whole
processes, the median of several runs.

    python -m flowkernel.benchmarks.startup [--runs N] [--command PATH]

`--command` times another installation's `flowkernel` (a previous release, say) the same way,
so two versions can be compared on one machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def measure(command: list[str], runs: int) -> tuple[float, float]:
    """Median CPU seconds (user + system) and wall seconds of `command` over `runs` runs."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(runs):
        before = os.times()
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall.append(time.perf_counter() - began)
        after = os.times()
        cpu.append(
            (after.children_user - before.children_user)
            + (after.children_system - before.children_system)
        )
    return statistics.median(cpu), statistics.median(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowkernel.benchmarks.startup")
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--command", help="the flowkernel command to time (default: this one)")
    args = parser.parse_args(argv)
    found = args.command or shutil.which("flowkernel")
    command = [found] if found else [sys.executable, "-m", "flowkernel"]
    for option in ("--version", "--help"):
        cpu, wall = measure([*command, option], args.runs)
        print(f"flowkernel {option}: {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
