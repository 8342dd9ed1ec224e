"""The shipped alert rules and Grafana dashboard (config/monitoring/) name only metrics that
/metrics exports, and promtool accepts the rules and their unit tests when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.config.settings import GuardSettings
from dispatcher.obs.metrics import ProcessMetrics, render
from tests.unit.test_metrics import facts

MONITORING = Path(__file__).resolve().parents[2] / "config" / "monitoring"
FILES = ("alerts.yml", "alerts.test.yml", "grafana-dashboard.json")


def exported() -> set[str]:
    text = render(ProcessMetrics(), facts(), GuardSettings(), ready=True).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.parametrize("name", FILES)
def test_every_metric_named_is_exported(name: str) -> None:
    named = set(re.findall(r"\bdispatcher_[a-z0-9_]+", (MONITORING / name).read_text()))
    assert named, name
    assert named - exported() == set()


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["gridPos"]["w"] > 0, panel["title"]
        assert all(t["expr"] for t in panel["targets"]), panel["title"]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run(
        [binary, *args], cwd=MONITORING, capture_output=True, text=True, check=False, timeout=60
    )


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
