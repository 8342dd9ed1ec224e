"""An account's credentials: a profile of the AWS config files, or a role assumed through STS
(moto in server mode plays STS and SES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.accounts.session import ses_session
from dispatcher.ses import SesAdapter
from tests.support.moto import MotoServer

ROLE = "arn:aws:iam::123456789012:role/ses-sender"


async def test_a_role_is_assumed_and_its_temporary_credentials_send(moto: MotoServer) -> None:
    settings = moto.ses_settings(role_arn=ROLE)
    session = await ses_session(settings)
    credentials = await session.get_credentials()  # type: ignore[misc]  # a coroutine here
    assert credentials is not None
    frozen = await credentials.get_frozen_credentials()
    # STS's temporary keys (ASIA...) with a session token, not the keys it was asked with
    assert frozen.access_key != settings.access_key_id and frozen.token
    async with SesAdapter.open(settings) as ses:
        quota = await ses.get_send_quota()
    assert quota.max_send_rate > 0


async def test_a_profile_gives_its_own_keys(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "credentials"
    shared.write_text("[brand-b]\naws_access_key_id = AKIABRANDB\naws_secret_access_key = b\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    settings = moto.ses_settings(access_key_id=None, secret_access_key=None, profile="brand-b")
    session = await ses_session(settings)
    credentials = await session.get_credentials()  # type: ignore[misc]  # a coroutine here
    assert credentials is not None and credentials.access_key == "AKIABRANDB"
    async with SesAdapter.open(settings) as ses:
        assert (await ses.get_send_quota()).max_send_rate > 0
