"""Provider lanes: a mixed-provider campaign with two capped providers, through the real CLI.

    python -m bench.lanes [--recipients N] [--rate R] [--google-rate G] [--microsoft-rate M]
                          [--quick]

A list of N recipients (30 % google: gmail.com, googlemail.com; 20 % microsoft: outlook.com,
hotmail.com; the rest at yahoo, naver, apple and kakao, which `[[providers]]` leaves
uncapped) is sent as one campaign by `dispatcher run --drain` against the simulator at
MaxSendRate R, with google capped at G/s and microsoft at M/s. From the simulator's record of
accepted sends: each lane's achieved rate against its cap, and the total against the account
rate while every lane still had mail. Prints the figures, writes bench/results/lanes.json
(and lanes.png when matplotlib is importable); exits 1 if a recipient is missing or a capped
lane ran more than 5 % over its cap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import BenchError, SimControl, cli_env, run_bench, run_cli, stderr_into
from bench.lists import create_args, created, write_templates
from bench.services import Databases, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging
from dispatcher.pacing.providers import ProviderTable, domain_of

RESULTS = Path(__file__).resolve().parent / "results"
# Ten recipients in a row: 3 google, 2 microsoft, 5 at uncapped providers.
DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "gmail.com",
    "naver.com",
    "icloud.com",
    "hotmail.com",
    "googlemail.com",
    "daum.net",
    "yahoo.com",
)
UNCAPPED = "uncapped"


def write_list(path: Path, n: int) -> list[str]:
    addresses = [f"r{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(n)]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name\n")
        out.writelines(f"{a},Person {i}\n" for i, a in enumerate(addresses))
    return addresses


def lane_figures(stamps: list[float], cap: float | None, start: float) -> dict[str, Any]:
    """A lane's achieved rate: over its whole span, and in its steady middle (first and last
    second left out: the start's burst and the end's stragglers)."""
    n = len(stamps)
    span = stamps[-1] - stamps[0] if n > 1 else 0.0
    achieved = (n - 1) / span if span > 0 else None
    lo, hi = stamps[0] + 1.0, stamps[-1] - 1.0
    middle = sum(1 for t in stamps if lo <= t < hi) / (hi - lo) if hi > lo else None
    per_second = Counter(int(t - start) for t in stamps)
    return {
        "recipients": n,
        "cap_per_s": cap,
        "achieved_per_s": achieved,
        "steady_per_s": middle,
        "achieved_over_cap": None if cap is None or achieved is None else achieved / cap,
        "max_in_a_second": max(per_second.values()) if per_second else 0,
        "finished_at_s": stamps[-1] - start if stamps else None,
        "per_second": [per_second[i] for i in range(int(stamps[-1] - start) + 1)],
    }


def _status_lanes(output: str) -> Any:
    """The `lanes` of `status --json` (its output also carries log lines)."""
    start = output.find("{\n")
    try:
        return json.loads(output[start : output.rindex("}") + 1])["lanes"]
    except (ValueError, KeyError):
        return None


def plot(lanes: dict[str, dict[str, Any]], rate: float, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot (pip install -e '.[bench]')")
        return False
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, lane in lanes.items():
        line = ax.step(range(len(lane["per_second"])), lane["per_second"], where="post")
        label = f"{name}" + (f" (cap {lane['cap_per_s']:g}/s)" if lane["cap_per_s"] else "")
        line[0].set_label(label)
        if lane["cap_per_s"]:
            ax.axhline(lane["cap_per_s"], color=line[0].get_color(), linestyle=":")
    ax.axhline(rate, color="red", linestyle="--", label=f"account MaxSendRate {rate:g}/s")
    ax.set_xlabel("seconds since the first acceptance")
    ax.set_ylabel("recipients accepted per second")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    caps = {"google": args.google_rate, "microsoft": args.microsoft_rate}
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.lanes " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"recipients": args.recipients, "account_rate": args.rate, "caps": caps},
    }
    table = ProviderTable()
    with tempfile.TemporaryDirectory(prefix="bench-lanes-") as tmp, temporary_cluster() as pg:
        work = Path(tmp)
        html, text = write_templates(work)
        listing = work / "list.csv"
        addresses = write_list(listing, args.recipients)
        config = work / "dispatcher.toml"
        config.write_text(
            "".join(f'[[providers]]\nname = "{n}"\nrate = {r}\n\n' for n, r in caps.items()),
            encoding="utf-8",
        )
        dbs = Databases(pg)
        await dbs.make_template()
        async with contextlib.AsyncExitStack() as stack:
            with stderr_into(work / "simulator.log"):
                raw = await stack.enter_async_context(run_simulator(max_send_rate=args.rate))
            sim = SimControl(raw, await stack.enter_async_context(aiohttp.ClientSession()))
            dsn = await dbs.create()
            env = cli_env(dsn, raw, work, DISPATCHER_CONFIG=str(config))
            made = (await run_cli(env, work, *create_args("lanes", listing, html, text))).check()
            campaign_id = created(made, args.recipients)
            (await run_cli(env, work, "campaign", "start", str(campaign_id))).check()
            await raw.reset()
            drain = (await run_cli(env, work, "run", "--drain")).check()
            received = await sim.messages()
            stats = await raw.stats()
            status = (await run_cli(env, work, "status", "--json")).check()

    seen = Counter(m["to"][0] for m in received)
    missing = len(set(addresses) - set(seen))
    twice = sum(1 for n in seen.values() if n > 1)
    by_lane: dict[str, list[float]] = {}
    for m in received:
        name = table.by_domain(domain_of(m["to"][0])) or UNCAPPED
        by_lane.setdefault(name if name in caps else UNCAPPED, []).append(m["accepted_at"])
    stamps = sorted(m["accepted_at"] for m in received)
    start = stamps[0]
    lanes = {
        name: lane_figures(sorted(ts), caps.get(name), start)
        for name, ts in sorted(by_lane.items())
    }
    # The total while every lane still had mail: until the first lane finished.
    busy_until = min(sorted(ts)[-1] for ts in by_lane.values())
    busy = sum(1 for t in stamps if start + 1.0 <= t < busy_until) / max(
        busy_until - start - 1.0, 1e-9
    )
    out |= {
        "drain_wall_s": drain.wall,
        "recipients_accepted": len(seen),
        "missing": missing,
        "sent_twice": twice,
        "throttled": stats.get("throttled"),
        "lanes": lanes,
        "total": {
            "account_rate": args.rate,
            "achieved_while_all_lanes_busy": busy,
            "over_account_rate": busy / args.rate,
            "all_lanes_busy_s": busy_until - start,
        },
        "status_lanes": _status_lanes(status.output),
    }
    print(
        f"{len(seen):,} recipients in {drain.wall:.1f} s (run --drain), account MaxSendRate "
        f"{args.rate:g}/s, throttled {stats.get('throttled')}, missing {missing}, twice {twice}"
    )
    for name, lane in lanes.items():
        cap = f"cap {lane['cap_per_s']:g}/s" if lane["cap_per_s"] else "no cap"
        ratio = f" = {lane['achieved_over_cap']:.3f} of cap" if lane["achieved_over_cap"] else ""
        print(
            f"  {name:<10} {lane['recipients']:>7,} recipients, {cap:<12} achieved "
            f"{lane['achieved_per_s'] or 0:7.1f}/s{ratio} (steady {lane['steady_per_s'] or 0:.1f}"
            f"/s, most in a second {lane['max_in_a_second']}), done at +"
            f"{lane['finished_at_s']:.1f} s"
        )
    print(
        f"  total while all lanes had mail ({busy_until - start:.1f} s): {busy:.1f}/s = "
        f"{busy / args.rate:.3f} of the account rate"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lanes.json").write_text(json.dumps(out, indent=2) + "\n")
    if plot(lanes, args.rate, RESULTS / "lanes.png"):
        print(f"plot: {RESULTS / 'lanes.png'}")
    problems = []
    if missing or twice:
        problems.append(f"{missing} recipients missing, {twice} sent twice")
    for name, lane in lanes.items():
        if lane["achieved_over_cap"] is not None and lane["achieved_over_cap"] > 1.05:
            problems.append(f"{name} ran at {lane['achieved_over_cap']:.3f} of its cap")
    if problems:
        raise BenchError("; ".join(problems))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lanes", description=__doc__)
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="account MaxSendRate")
    parser.add_argument("--google-rate", type=float, default=200.0)
    parser.add_argument("--microsoft-rate", type=float, default=150.0)
    parser.add_argument(
        "--quick", action="store_true", help="3,000 recipients at 150/s, caps 40/s and 25/s"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.recipients, args.rate, args.google_rate, args.microsoft_rate = 3000, 150.0, 40.0, 25.0
    return run_bench(main_async(args), "bench.lanes failed")


if __name__ == "__main__":
    sys.exit(main())
