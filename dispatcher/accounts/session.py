"""The AWS session of one SES account: access keys, a profile, or a role assumed with either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.credentials import AioRefreshableCredentials

if TYPE_CHECKING:  # only a type here: dispatcher.ses imports this module
    from dispatcher.ses.settings import SesSettings

__all__ = ["ROLE_SESSION_NAME", "ses_session"]

ROLE_SESSION_NAME = "dispatcher"


async def ses_session(settings: SesSettings) -> aioboto3.Session:
    """A session with the account's credentials; with `role_arn`, temporary credentials of
    that role, renewed by the SDK before they expire."""
    base = aioboto3.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        profile_name=settings.profile,
        region_name=settings.region,
    )
    if settings.role_arn is None:
        return base
    refresh = _assume_role(base, settings)
    credentials = AioRefreshableCredentials.create_from_metadata(
        await refresh(), refresh, "assume-role"
    )
    session = aioboto3.Session(region_name=settings.region)
    session._session._credentials = credentials  # type: ignore[attr-defined]  # botocore: no API
    return session


def _assume_role(
    base: aioboto3.Session, settings: SesSettings
) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def refresh() -> dict[str, Any]:
        # STS answers at the same endpoint as SES in a rehearsal (moto); AWS's otherwise.
        async with base.client("sts", endpoint_url=settings.endpoint_url) as sts:
            answer = await sts.assume_role(
                RoleArn=settings.role_arn, RoleSessionName=ROLE_SESSION_NAME
            )
        c = answer["Credentials"]
        return {
            "access_key": c["AccessKeyId"],
            "secret_key": c["SecretAccessKey"],
            "token": c["SessionToken"],
            "expiry_time": c["Expiration"].isoformat(),
        }

    return refresh
