"""A bad setting stops `dispatcher` before it touches anything, with one line saying what to fix."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import CliResult, cli_env, run_cli


def assert_one_error(result: CliResult, data_dir: Path) -> str:
    """Exit 2, one error line and nothing else; no embedded cluster was started for it."""
    assert result.code == 2, result
    assert result.out == ""
    assert result.events == []  # failed before logging was even set up
    (line,) = result.err.splitlines()
    assert line.startswith("dispatcher: error: "), result
    assert not (data_dir / "pg").exists()
    return line.removeprefix("dispatcher: error: ")


async def test_a_bad_environment_value_names_the_key_and_the_variable(tmp_path: Path) -> None:
    env = cli_env(tmp_path, DISPATCHER_QUEUE__CLAIM_BATCH="abc")

    result = await run_cli(env, "status")

    message = assert_one_error(result, tmp_path)
    assert message == (
        "queue.claim_batch must be an integer, got 'abc' "
        "(from environment variable DISPATCHER_QUEUE__CLAIM_BATCH)"
    )


async def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    result = await run_cli(cli_env(tmp_path), "--config", "missing.toml", "status")

    assert assert_one_error(result, tmp_path) == "config file missing.toml not found"


async def test_config_file_from_the_environment_that_is_missing_says_where_it_came_from(
    tmp_path: Path,
) -> None:
    env = cli_env(tmp_path, DISPATCHER_CONFIG=str(tmp_path / "gone.toml"))

    result = await run_cli(env, "status")

    message = assert_one_error(result, tmp_path)
    assert str(tmp_path / "gone.toml") in message
    assert "DISPATCHER_CONFIG" in message


async def test_an_unknown_key_in_the_file_gets_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "conf"
    config.mkdir()
    (config / "dispatcher.toml").write_text("[queue]\nclaim_bach = 50\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    result = await run_cli(
        cli_env(data_dir), "--config", str(config / "dispatcher.toml"), "migrate"
    )

    message = assert_one_error(result, data_dir)
    assert message == (
        f"unknown key queue.claim_bach in {config / 'dispatcher.toml'}; "
        "did you mean queue.claim_batch?"
    )


async def test_an_environment_variable_with_one_underscore_is_caught(tmp_path: Path) -> None:
    env = cli_env(tmp_path, DISPATCHER_QUEUE_CLAIM_BATCH="50")

    result = await run_cli(env, "status")

    message = assert_one_error(result, tmp_path)
    assert "DISPATCHER_QUEUE__CLAIM_BATCH" in message
