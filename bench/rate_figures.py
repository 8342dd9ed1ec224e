"""bench.rate's figures: what a run's acceptance times show (rate per second, achieved over
allowed, flatness, CPU per message), the machine's load beside it, one line per result, and the
plot of rate over time against the allowed rate."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cpu import TreeCpu

__all__ = [
    "MachineLoad",
    "cpu_per_message",
    "describe",
    "flatness",
    "per_second",
    "plot",
    "sent_figures",
]


def per_second(times: list[float]) -> list[int]:
    """Accepted count in each whole second from the first acceptance."""
    if not times:
        return []
    start = min(times)
    buckets = Counter(int(t - start) for t in times)
    return [buckets.get(i, 0) for i in range(max(buckets) + 1)]


def sent_figures(
    rate: float, n: int, stats: dict[str, Any], times: list[float], wall: float
) -> dict[str, Any]:
    """What one drain achieved, from the simulator's stats and acceptance times (sorted)."""
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / span if span > 0 else 0.0
    accepted, throttled = int(stats["accepted"]), int(stats.get("throttled", 0))
    return {
        "allowed_per_s": rate,
        "recipients": n,
        "accepted": accepted,
        "throttled": throttled,
        "throttled_pct": 100.0 * throttled / (accepted + throttled) if accepted else 0.0,
        "achieved_per_s": achieved,
        "achieved_over_allowed": achieved / rate,
        "send_span_s": span,
        "drain_wall_s": wall,
        "per_second": per_second(times),
        "first_accepted_at": times[0],
    }


def cpu_per_message(cpu: TreeCpu, times: list[float]) -> dict[str, float | None]:
    """CPU ms per accepted message from the first to the last acceptance: the daemon (every
    process of it) and Postgres (all-in), and the simulator beside them (it shares the cores,
    but it stands in for SES, so it is not part of the dispatcher's cost)."""
    sent = len(times) - 1
    out: dict[str, float | None] = {}
    for name in ("daemon", "postgres", "simulator"):
        spent = cpu.between(name, times[0], times[-1]) if sent > 0 else None
        out[f"cpu_ms_per_msg_{name}"] = None if spent is None else 1000.0 * spent / sent
    d, p = out["cpu_ms_per_msg_daemon"], out["cpu_ms_per_msg_postgres"]
    out["cpu_ms_per_msg_all_in"] = None if d is None or p is None else d + p
    return out


class MachineLoad:
    """Every second: the whole machine's CPU busy fraction (other sessions' work included) and
    the cores our `dispatcher` processes used, so a dip in the rate can be told apart from a
    neighbour taking the cores, and the dispatcher's own CPU per recipient followed over time."""

    def __init__(self) -> None:
        # (unix end of the second, machine busy 0..1, cores used by our dispatcher processes)
        self.samples: list[tuple[float, float, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _machine() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    @staticmethod
    def _ours() -> dict[int, int]:
        """CPU ticks of each `dispatcher` process descending from this benchmark."""
        parent: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
        me, out = os.getpid(), {}
        for pid in ticks:
            p, depth = parent.get(pid, 0), 0
            while p not in (0, 1, me) and depth < 20:
                p, depth = parent.get(p, 0), depth + 1
            if p == me:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"dispatcher.cli.main" in f.read():
                            out[pid] = ticks[pid]
                except OSError:
                    continue
        return out

    async def _run(self) -> None:
        last, last_ours = self._machine(), self._ours()
        while last is not None:
            await asyncio.sleep(1.0)
            now, ours = self._machine(), self._ours()
            if now is None:
                return
            total, idle = now[0] - last[0], now[1] - last[1]
            used = sum(t - last_ours[pid] for pid, t in ours.items() if pid in last_ours)
            busy = 1.0 - idle / total if total else 0.0
            self.samples.append((time.time(), busy, used / self._tick))
            last, last_ours = now, ours

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="machine-load")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def attach(self, r: dict[str, Any]) -> None:
        """Add to a result, per second of its send: machine busy, our cores, CPU ms a recipient."""
        busy, cores = [], []
        for i in range(len(r["per_second"])):
            mid = r["first_accepted_at"] + i + 0.5
            hit = [(b, c) for t, b, c in self.samples if t - 1.0 <= mid < t]
            busy.append(round(hit[0][0], 3) if hit else float("nan"))
            cores.append(round(hit[0][1], 3) if hit else float("nan"))
        r["machine_busy"], r["dispatcher_cores"] = busy, cores
        ms = [1000 * c / n for c, n in zip(cores, r["per_second"], strict=True) if n and c == c]
        inner = ms[1:-1]
        if len(inner) >= 2:
            half = len(inner) // 2
            r["cpu_ms_per_recipient"] = {
                "mean": statistics.fmean(inner),
                "first_half_mean": statistics.fmean(inner[:half]),
                "second_half_mean": statistics.fmean(inner[half:]),
            }


def flatness(series: list[int]) -> dict[str, float]:
    """How flat a rate is: the whole seconds between the first and the last (both partial)."""
    inner = series[1:-1]
    if len(inner) < 2:
        return {}
    mean = statistics.fmean(inner)
    half = len(inner) // 2
    return {
        "seconds": len(inner),
        "min": min(inner),
        "max": max(inner),
        "cv": statistics.pstdev(inner) / mean if mean else 0.0,
        "first_half_mean": statistics.fmean(inner[:half]),
        "second_half_mean": statistics.fmean(inner[half:]),
    }


def describe(r: dict[str, Any]) -> str:
    """One line of a result: achieved, throttled, flatness."""
    flat = r.get("flatness") or {}
    line = (
        f"MaxSendRate {r['allowed_per_s']:>6g}/s: achieved {r['achieved_per_s']:8.1f}/s = "
        f"{r['achieved_over_allowed']:.3f} of allowed, throttled {r['throttled_pct']:.2f} % "
        f"({r['throttled']} of {r['accepted'] + r['throttled']} sends), "
        f"{r['recipients']:,} recipients"
    )
    if flat:
        line += (
            f"; per second {flat['min']}-{flat['max']} (cv {flat['cv']:.3f}, halves "
            f"{flat['first_half_mean']:.0f} / {flat['second_half_mean']:.0f})"
        )
    busy = [b for b in r.get("machine_busy", []) if b == b]  # nan: not sampled
    if busy:
        line += f"; machine CPU busy {100 * statistics.fmean(busy):.0f} % (all sessions)"
    cpu = r.get("cpu_ms_per_recipient")
    if cpu:
        line += (
            f"; dispatcher CPU {cpu['mean']:.2f} ms/recipient (halves "
            f"{cpu['first_half_mean']:.2f} / {cpu['second_half_mean']:.2f})"
        )
    if "cpu_ms_per_msg_daemon" in r:
        line += (
            f"; --processes {r['processes']}, CPU ms/msg {_ms(r['cpu_ms_per_msg_daemon'])} "
            f"daemon + {_ms(r['cpu_ms_per_msg_postgres'])} Postgres"
        )
        if r.get("cpu_ms_per_msg_simulator") is not None:
            line += f" (simulator {_ms(r['cpu_ms_per_msg_simulator'])})"
    if "by_operation" in r:
        line += f"; {r['mode']}, --processes {r['processes']}: {r['by_operation']}"
    return line


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot (pip install -e '.[bench]')")
        return False
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 2.6 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        series = r["per_second"]
        ax.step(range(len(series)), series, where="post", label="accepted per second")
        ax.axhline(r["allowed_per_s"], color="red", linestyle="--", label="MaxSendRate")
        ax.set_title(
            f"MaxSendRate {r['allowed_per_s']:g}/s{' bulk' if 'by_operation' in r else ''}, "
            f"--processes {r.get('processes', 1)}: achieved {r['achieved_over_allowed']:.3f}"
            f" of allowed, {r['throttled_pct']:.2f} % throttled"
        )
        ax.set_xlabel("seconds since the first acceptance")
        ax.set_ylabel("recipients/s")
        ax.legend(loc="lower right")
        busy, cores = r.get("machine_busy"), r.get("dispatcher_cores")
        if busy and cores:  # the machine's CPU, other sessions included: a dip may be theirs
            twin = ax.twinx()
            xs = [i + 0.5 for i in range(len(busy))]
            ncpu = os.cpu_count() or 1
            twin.plot(xs, [ncpu * b for b in busy], "grey", lw=0.7)
            twin.plot(xs, cores, "green", lw=0.7)
            twin.set_ylim(0, ncpu * 1.05)
            twin.set_ylabel("cores: machine (grey), ours (green)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
