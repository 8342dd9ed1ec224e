"""Run the benchmarks in sequence, each as its own process writing bench/results/<name>.json.

    python -m bench.run [--full]

Quick (`make bench`, about seven minutes): throughput vs bare aioboto3, client CPU per call, idle
latency, 1 vs 2 processes, rate fidelity (8 s per rate), five SIGKILLs over 5,000 recipients,
one of two daemons SIGKILLed at 200/s (12 s of sending), the queue vs pgqueuer (20,000 jobs, a
200,000-recipient list), what the per-job launch costs (5,000 jobs), SendBulkEmail vs SendEmail
(2,000 recipients) and a 10,000-recipient campaign killed half-way, with peak RSS against list
size; a 100,000-row `campaign create` next to a bare COPY of the file (bench.million; 1,000,000
rows in the full run); table size and prune cost over simulated days; intake through SMTP and the
HTTP API next to `enqueue`; a mixed-provider campaign with two capped provider lanes (3,000
recipients; 50,000 in full). Full (`make bench-full`): the same at full size (100,000 jobs, a
1,000,000-recipient list, 20,000 launches, the 100k-recipient campaign), plus the simulator's
ceiling. A failed benchmark is reported and the others still run; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUICK: list[list[str]] = [
    ["bench.throughput", "--rounds", "3"],
    ["bench.client"],
    ["bench.render", "--recipients", "1000", "--rounds", "3"],
    ["bench.latency", "--messages", "40"],
    ["bench.processes"],
    ["bench.rate", "--quick"],
    ["bench.reliability", "--quick"],
    ["bench.kill", "--quick"],
    ["bench.queue", "--quick"],
    ["bench.launch", "--quick"],
    ["bench.bulk", "--recipients", "2000", "--rounds", "1"],
    ["bench.campaign", "--quick"],
    ["bench.million", "--quick"],
    ["bench.retention", "--quick"],
    ["bench.intake", "--quick"],
    ["bench.lanes", "--quick"],
]
FULL: list[list[str]] = [
    ["bench.throughput"],
    ["bench.client"],
    ["bench.render"],
    ["bench.latency"],
    ["bench.processes"],
    ["bench.rate"],
    ["bench.reliability"],
    ["bench.kill"],
    ["bench.queue"],
    ["bench.launch"],
    ["bench.bulk"],
    ["bench.sim_throughput"],
    ["bench.campaign"],
    ["bench.million"],
    ["bench.retention"],
    ["bench.intake"],
    ["bench.lanes"],
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--full", action="store_true", help="every benchmark at full size")
    args = parser.parse_args(argv)
    failed: list[str] = []
    for module, *rest in FULL if args.full else QUICK:
        if not (HERE / f"{module.split('.')[-1]}.py").exists():
            print(f"== {module}: not in this checkout, skipped", flush=True)
            continue
        print(f"== {module} {' '.join(rest)}", flush=True)
        began = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", module, *rest], check=False).returncode
        print(f"== {module}: exit {code} in {time.perf_counter() - began:.0f} s", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
