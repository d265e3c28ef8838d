"""Run every benchmark (benchmarks/bench_*.py), one after another, in fresh processes.

    .venv/bin/python benchmarks/run_all.py            # full sizes (a few minutes)
    .venv/bin/python benchmarks/run_all.py --quick    # smoke run (well under a minute)
    .venv/bin/python benchmarks/run_all.py --wait-idle 120 bench_claims

Exit status is 0 when every script ran to completion; a missed target is reported in the
tables (MISS) but is not a failure. Scripts are run one at a time: they measure the machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS", help="passed to every benchmark")
    parser.add_argument("only", nargs="*", help="benchmark names to run (default: all), e.g. bench_ready")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        scripts = [s for s in scripts if s.stem in wanted]
        if not scripts:
            parser.error(f"no benchmark named {', '.join(sorted(wanted))}")
    extra = (["--quick"] if args.quick else []) + (["--wait-idle", str(args.wait_idle)] if args.wait_idle else [])
    outcomes = []
    for script in scripts:
        print(f"\n### {script.name} {' '.join(extra)}".rstrip(), flush=True)
        start = time.perf_counter()
        status = subprocess.run([sys.executable, str(script), *extra], cwd=str(HERE.parent), check=False).returncode
        outcomes.append((script.name, status, time.perf_counter() - start))
    print("\n### summary")
    for name, status, seconds in outcomes:
        print(f"{name:<24} {'ok' if status == 0 else f'FAILED (exit {status})':<18} {seconds:6.1f} s")
    return 0 if all(status == 0 for _, status, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
