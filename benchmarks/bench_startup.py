"""Cold start: CPU to ``import asyncx``, to run ``asyncx --help`` and ``asyncx post --help``, and to import
tweepy's async client, each over a bare interpreter and as a ratio to ``import aiohttp`` in the same run.

Each is a fresh process; the figure is its CPU time (user + system) minus a bare interpreter's, best of N.
asyncx's bytecode is written first, as installing it does, so every package loads from cached bytecode.

    python benchmarks/bench_startup.py [--runs 7]
Targets: import asyncx <= 1.25x import aiohttp; asyncx --help <= 1.5x import aiohttp.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

from _support import compile_asyncx

CASES = {
    "bare interpreter": ["-c", "pass"],
    "import aiohttp": ["-c", "import aiohttp"],
    "import asyncx": ["-c", "import asyncx"],
    "asyncx --help": ["-m", "asyncx", "--help"],
    "asyncx post --help": ["-m", "asyncx", "post", "--help"],
    "import tweepy.asynchronous": ["-c", "import tweepy.asynchronous"],
}


def cpu(args: list[str]) -> float:
    """The CPU seconds a fresh interpreter spends on ``args``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=7)
    runs = p.parse_args().runs
    compile_asyncx()
    # Rounds interleave the cases, so a slow spell on a noisy machine weighs on all of them alike.
    times = dict.fromkeys(CASES, float("inf"))
    for _ in range(runs):
        for name, args in CASES.items():
            times[name] = min(times[name], cpu(args))
    bare = times.pop("bare interpreter")
    base = times["import aiohttp"] - bare
    print(f"CPU over a bare interpreter ({bare * 1000:.0f} ms), best of {runs}:")
    for name, seconds in times.items():
        over = seconds - bare
        print(f"  {name:<28} {over * 1000:6.0f} ms  {over / base:5.2f}x import aiohttp")
    print("targets: import asyncx <= 1.25x; asyncx --help <= 1.5x")


if __name__ == "__main__":
    main()
