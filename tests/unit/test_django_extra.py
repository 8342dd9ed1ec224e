"""Django stays an extra: the core package neither requires nor imports it, and the backend says
how to install it when it is missing."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.support.cli import REPO_ROOT


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )


def test_django_is_an_extra_and_the_core_never_imports_it() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("django")]
    assert project["optional-dependencies"]["django"] == ["django>=4.2"]

    core = python(
        "import sys, dispatcher.app, dispatcher.outbox, dispatcher.cli.main, "
        "dispatcher.doors.web, dispatcher.integrations; "
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    assert core.returncode == 0, core.stderr
    assert core.stdout.strip() == "[]"


def test_the_backend_without_django_says_which_extra_to_install() -> None:
    missing = python(
        "import sys; sys.modules['django'] = None; import dispatcher.integrations.django"
    )
    assert missing.returncode == 1
    assert (
        "ImportError: dispatcher.integrations.django needs Django: "
        "pip install 'dispatcher[django]'" in missing.stderr
    )
