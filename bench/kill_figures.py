"""bench.kill's figures: from the simulator's record, the jobs table and the surviving daemon's
log, the rate over time around the SIGKILL, when the survivors were back at rate, when the killed
daemon's claimed mail was sent or in doubt, and the exactly-once check; the plot and the report.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import signal
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

SHARE = 0.95  # of the allowed rate that counts as "back at rate"
WINDOW = 1.0  # seconds per rate window
STEP = 0.05  # seconds between window starts
BIN = 0.25  # seconds per bin of the plot's finer series
HOLD = 3.0  # seconds the survivors must keep up the rate to count as back at it
BEFORE = 2.0  # seconds before the kill the rate before it is taken over (all four sending)
TAIL = 1.0  # seconds at the end of sending left out of "sustained" (the queue runs dry there)


@dataclass(slots=True)
class Run:
    """What one run left behind: the kill, what the killed daemon held, the record, the jobs."""

    ids: list[int]
    kill_wall: float  # unix seconds of the SIGKILL
    killed_workers: list[str]
    held: dict[int, str]  # job id -> state at the kill (claimed / in_flight)
    workers_gone_at_read: int  # A's workers already deleted when `held` was read (0 expected)
    held_read_s: float  # seconds after the kill `held` was read
    a_code: int
    b_code: int
    b_output: str
    record: list[dict[str, Any]]
    throttled: int  # sends the simulator refused for going past MaxSendRate
    throttled_before_kill: int
    jobs: dict[int, tuple[str, float]]  # job id -> (final state, updated_at in unix seconds)


def window_counts(times: list[float], starts: list[float], width: float = WINDOW) -> list[int]:
    """Acceptances in [s, s + width) for each start s (times sorted)."""
    return [bisect.bisect_left(times, s + width) - bisect.bisect_left(times, s) for s in starts]


def back_at_rate(times: list[float], rate: float, end: float) -> float | None:
    """The first s >= 0 from which the survivors keep up SHARE x rate for HOLD seconds: at
    least SHARE x rate x (t - s) acceptances in [s, t) for every t from s + 1 s to s + HOLD
    (or `end`, where the queue runs dry); times relative to the kill, sorted. Cumulative, so
    the latency's jitter in one window is no dip, while a shortfall that lasts is; None if
    there is no such s."""
    starts = [i * STEP for i in range(int(max(0.0, end - WINDOW) / STEP) + 1)]
    for s in starts:
        first = bisect.bisect_left(times, s)
        t = s + WINDOW
        while t <= min(s + HOLD, end) + 1e-9:
            if bisect.bisect_left(times, t) - first < SHARE * rate * (t - s):
                break
            t += STEP
        else:
            return s
    return None


def events_after(output: str, event: str, kill_wall: float, *keys: str) -> list[dict[str, Any]]:
    """The survivors' log lines of one event after the kill: seconds after it, and `keys`."""
    out = []
    needle = f'"{event}"'
    for line in output.splitlines():
        if needle not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            obj = json.loads(line)
            at = datetime.fromisoformat(obj["timestamp"].replace("Z", "+00:00")).timestamp()
            if at >= kill_wall:
                out.append({"after_s": round(at - kill_wall, 3), **{k: obj.get(k) for k in keys}})
    return out


def share_back(share_log: list[dict[str, Any]], survivors: int) -> float | None:
    """When every surviving process had been told its share is 1 / survivors (or more)."""
    told: set[str] = set()
    for e in sorted(share_log, key=lambda e: float(e["after_s"])):
        if e["share"] is not None and float(e["share"]) >= 1.0 / survivors - 1e-6:
            told.add(str(e["worker_id"]))
            if len(told) >= survivors:
                return float(e["after_s"])
    return None


def analyse(run: Run, rate: float, target: float, survivors: int) -> dict[str, Any]:
    seen = Counter(int(m["tags"]["dispatcher_id"]) for m in run.record)
    accepted_at: dict[int, float] = {}
    for m in run.record:
        i = int(m["tags"]["dispatcher_id"])
        accepted_at[i] = max(accepted_at.get(i, 0.0), float(m["accepted_at"]))
    ids = set(run.ids)
    states = Counter(state for state, _ in run.jobs.values())
    in_doubt = sorted(i for i, (state, _) in run.jobs.items() if state == "unknown")
    problems: list[str] = []

    # exactly once
    lost = sorted(i for i in ids if not seen[i] and i not in in_doubt)
    twice = sorted(i for i, c in seen.items() if c > 1)
    strangers = sorted(set(seen) - ids)
    not_final = {s: c for s, c in states.items() if s not in ("sent", "unknown")}
    if lost or twice or strangers or not_final:
        problems.append(
            f"not exactly once: {len(lost)} lost, {len(twice)} accepted more than once, "
            f"{len(strangers)} unknown ids accepted, jobs not sent or in doubt: {not_final}"
        )
    if run.b_code != 0:
        tail = "\n".join(run.b_output.splitlines()[-10:])
        problems.append(f"the surviving daemon exited {run.b_code}:\n{tail}")
    if run.a_code != -signal.SIGKILL:
        problems.append(f"the killed daemon exited {run.a_code}, not by SIGKILL")

    # the held jobs: when each was sent (the simulator) or put in doubt (the jobs row)
    resolved: dict[int, float] = {}
    unresolved = []
    for i in run.held:
        state, updated = run.jobs.get(i, ("missing", 0.0))
        if state == "sent" and i in accepted_at:
            resolved[i] = accepted_at[i] - run.kill_wall
        elif state == "unknown":
            resolved[i] = updated - run.kill_wall
        else:
            unresolved.append(i)
    if not run.held:
        problems.append("the killed daemon held no mail at the kill: nothing was measured")
    if run.workers_gone_at_read:
        problems.append("the killed workers were recovered before their jobs were read")
    if unresolved:
        problems.append(f"{len(unresolved)} job(s) the killed daemon held were never resolved")
    resolve_s = max(resolved.values()) if resolved and not unresolved else None
    held_in_doubt = sorted(i for i in run.held if run.jobs.get(i, ("", 0.0))[0] == "unknown")

    # the rate over time, relative to the kill
    times = sorted(float(m["accepted_at"]) - run.kill_wall for m in run.record)
    first, last = times[0], times[-1]
    before = sum(1 for t in times if -BEFORE <= t < 0)
    after = sum(1 for t in times if t >= 0)
    end = last - TAIL
    back = back_at_rate(times, rate, end) if end > WINDOW else None
    starts = [i * STEP for i in range(int(max(0.0, end - WINDOW) / STEP) + 1)]
    dip = min(window_counts(times, starts)) if starts else None
    # per second, in 1 s windows centred on t (every 0.1 s), and in 0.25 s bins (x 4)
    centres = [first + i * 0.1 for i in range(int((last - first) / 0.1) + 1)]
    centred = window_counts(times, [c - WINDOW / 2 for c in centres])
    bins = [first + i * BIN for i in range(int((last - first) / BIN) + 1)]
    binned = [round(n / BIN) for n in window_counts(times, bins, BIN)]
    # Throttles before the kill make every process back off for seconds (the pacing
    # controller), whatever the kill does: say so beside the figure.
    backed_off = (
        f" ({run.throttled_before_kill} sends throttled before the kill: the back-off after"
        " them, not the kill, held the rate down)"
        if run.throttled_before_kill
        else ""
    )
    if back is None:
        problems.append(f"never back at {SHARE:.2f} x {rate:g}/s after the kill{backed_off}")
    elif back > target:
        problems.append(
            f"back at rate {back:.2f} s after the kill, target {target:g} s{backed_off}"
        )
    if resolve_s is not None and resolve_s > target:
        problems.append(
            f"the killed daemon's claimed mail resolved {resolve_s:.2f} s after the kill, "
            f"target {target:g} s"
        )
    share_log = events_after(
        run.b_output, "pacing.share", run.kill_wall, "share", "rate", "worker_id"
    )
    return {
        "messages": len(ids),
        "kill_at_s": round(-first, 3),
        "rate_before_per_s": round(before / BEFORE, 1),
        "rate_after_per_s": round(after / last, 1) if last > 0 else None,
        "back_at_rate_s": None if back is None else round(back, 2),
        "lowest_1s_window_after_kill": dip,
        "throttled": run.throttled,
        "throttled_before_kill": run.throttled_before_kill,
        "held_at_kill": dict(Counter(run.held.values())),
        "held_read_s": round(run.held_read_s, 3),
        "held_resolved_s": None if resolve_s is None else round(resolve_s, 3),
        "held_resolved_quantiles_s": quantiles(list(resolved.values())),
        "held_in_doubt": held_in_doubt,
        "recovered_log": events_after(
            run.b_output, "queue.recovered", run.kill_wall, "requeued", "in_doubt"
        ),
        "share_back_s": share_back(share_log, survivors),
        "share_log": share_log,
        "in_doubt": [{"id": i, "accepted_by_simulator": seen[i]} for i in in_doubt],
        "job_states": dict(states),
        "lost": lost,
        "duplicates": twice,
        "strangers": strangers,
        "killed_workers": run.killed_workers,
        "daemon_exit_codes": {"a": run.a_code, "b": run.b_code},
        "accepted_s_since_kill": [round(t, 4) for t in times],
        "series": {
            "t_s": [round(c, 2) for c in centres],
            "per_s_1s_centred": centred,
            "bin_start_s": [round(b, 3) for b in bins],
            "per_s_quarter_s_bins": binned,
        },
        "problems": problems,
    }


def quantiles(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    s = sorted(xs)
    return {
        q: round(s[min(len(s) - 1, int(p * len(s)))], 3)
        for q, p in (("p50", 0.5), ("p90", 0.9), ("max", 1.0))
    }


def plot(res: dict[str, Any], rate: float, target: float, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot (pip install -e '.[bench]')")
        return False
    fig, ax = plt.subplots(figsize=(11, 3.8))
    series = res["series"]
    ax.step(
        series["bin_start_s"], series["per_s_quarter_s_bins"], where="post", color="lightsteelblue",
        linewidth=0.8, label="accepted per s, 0.25 s bins",
    )  # fmt: skip
    ax.plot(series["t_s"], series["per_s_1s_centred"], label="accepted per s, 1 s window")
    ax.axhline(rate, color="grey", linestyle="--", label=f"MaxSendRate {rate:g}/s")
    ax.axhline(SHARE * rate, color="grey", linestyle=":", label=f"{SHARE:.2f} x rate")
    ax.axvline(0.0, color="red", label="SIGKILL of daemon A")
    ax.axvspan(0.0, target, color="red", alpha=0.08, label=f"{target:g} s target")
    if res["share_back_s"] is not None:
        ax.axvline(res["share_back_s"], color="orange", linestyle=":", label="survivors' share set")
    if res["back_at_rate_s"] is not None:
        ax.axvline(res["back_at_rate_s"], color="green", linestyle="--", label="back at rate")
    if res["held_resolved_s"] is not None:
        ax.axvline(
            res["held_resolved_s"], color="purple", linestyle="-.", label="A's mail resolved"
        )
    ax.set_xlabel("seconds since the SIGKILL (simulator clock)")
    ax.set_ylabel("messages/s")
    ax.set_title("two daemons x 2 processes, one SIGKILLed")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def report(res: dict[str, Any], rate: float) -> None:
    held = res["held_at_kill"]
    print(
        f"{res['messages']:,} messages at MaxSendRate {rate:g}/s; daemon A SIGKILLed "
        f"{res['kill_at_s']:.1f} s after the first acceptance, holding "
        f"{held.get('claimed', 0)} claimed + {held.get('in_flight', 0)} in flight"
    )
    print(
        f"rate: {res['rate_before_per_s']}/s in the {BEFORE:g} s before the kill, "
        f"{res['rate_after_per_s']}/s after it; "
        f"lowest 1 s window after the kill {res['lowest_1s_window_after_kill']}; "
        f"throttled {res['throttled']} ({res['throttled_before_kill']} before the kill)"
    )
    print(
        f"back at >= {SHARE:.2f} x {rate:g}/s: {res['back_at_rate_s']} s after the kill "
        f"(every survivor paced at its new share {res['share_back_s']} s after it)"
    )
    print(
        f"A's claimed mail sent or in doubt: {res['held_resolved_s']} s after the kill "
        f"(quantiles {res['held_resolved_quantiles_s']}); in doubt {len(res['held_in_doubt'])}"
    )
    for r in res["recovered_log"]:
        print(
            f"  queue.recovered {r['after_s']} s after the kill: {r['requeued']} requeued, "
            f"{r['in_doubt']} in doubt"
        )
    for r in res["share_log"]:
        print(f"  pacing.share {r['after_s']} s after the kill: share {r['share']}, {r['rate']}/s")
    doubt = res["in_doubt"]
    print(
        f"exactly once: lost {len(res['lost'])}, duplicates {len(res['duplicates'])}, "
        f"in doubt {len(doubt)} (of those the simulator accepted "
        f"{sum(1 for d in doubt if d['accepted_by_simulator'])}): "
        + ", ".join(str(d["id"]) for d in doubt[:40])
        + (" ..." if len(doubt) > 40 else "")
    )
