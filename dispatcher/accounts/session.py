"""The AWS session of one SES account: access keys, a profile, or a role assumed with either;
and the client configuration every AWS client of the daemon uses (`checked_config`).

botocore builds its TLS context with urllib3's `create_urllib3_context`, which turns
`check_hostname` off because urllib3 checks the name itself. aiobotocore (2.25) hands that
context to aiohttp, which relies on the context: so a certificate for any host, signed by a
trusted CA, was accepted for the SES endpoint. `HostCheckedSession` turns the check back on;
every AWS client the daemon makes (sesv2, ses, sqs, sts) uses it through `checked_config`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.httpsession import AIOHTTPSession

if TYPE_CHECKING:  # only a type here: dispatcher.ses imports this module
    from dispatcher.ses.settings import SesSettings

__all__ = ["ROLE_SESSION_NAME", "HostCheckedSession", "checked_config", "ses_session"]

ROLE_SESSION_NAME = "dispatcher"


class HostCheckedSession(AIOHTTPSession):
    """AIOHTTPSession whose TLS context checks the certificate's host name."""

    def _get_ssl_context(self) -> ssl.SSLContext:
        context: ssl.SSLContext = super()._get_ssl_context()  # type: ignore[misc]  # no stub
        context.check_hostname = True  # needs verify_mode CERT_REQUIRED: urllib3's default
        return context


def checked_config(**options: Any) -> AioConfig:
    """AioConfig(**options) with the host-name-checking HTTP session."""
    return AioConfig(http_session_cls=HostCheckedSession, **options)


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
        async with base.client(
            "sts", endpoint_url=settings.endpoint_url, config=checked_config()
        ) as sts:
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
