"""Read the config file and the environment, then hand both to the pure `build_config`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dispatcher.config.build import ENV_CONFIG_PATH, build_config
from dispatcher.config.settings import Config
from dispatcher.errors import ConfigError


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The effective config: defaults, then the TOML file, then environment variables.

    The file is `path`, else `$DISPATCHER_CONFIG`, else none (defaults only); a file that is
    named but missing is an error. `env` defaults to `os.environ`. Access keys may be left out:
    aioboto3 then uses the standard AWS credential chain (AWS_ACCESS_KEY_ID, ~/.aws, a role).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    given = ""
    if path is None and environ.get(ENV_CONFIG_PATH):
        path = Path(environ[ENV_CONFIG_PATH])
        given = f" (from environment variable {ENV_CONFIG_PATH})"
    data = read_toml(path, given) if path is not None else {}
    return build_config(data, environ, path=path)


def read_toml(path: Path, given: str = "") -> dict[str, Any]:
    """Parse one TOML file; every failure becomes a ConfigError naming the file."""
    try:
        with path.expanduser().open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}{given} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}{given} is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(
            f"config file {path}{given} is not readable (permission denied)"
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path}{given} is not UTF-8 text: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML in {path}{given}: {err}") from None
