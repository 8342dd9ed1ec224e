"""How to reach SES: region, endpoint, credentials, timeouts and the connection pool."""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.errors import ConfigError

CLIENTS = ("lean", "botocore")


@dataclass(frozen=True, slots=True)
class SesSettings:
    """Settings of the SES adapter; credentials None means the standard AWS credential chain."""

    region: str = "us-east-1"
    endpoint_url: str | None = None  # e.g. the simulator or moto; None = the AWS endpoint
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in a repr or log
    profile: str | None = None  # a profile of ~/.aws/config instead of the keys
    role_arn: str | None = None  # a role to assume (STS AssumeRole) with those credentials
    connect_timeout: float = 5.0  # seconds to open a TCP connection (a failure is TRANSIENT)
    read_timeout: float = 15.0  # seconds of silence once the request is sent (then IN_DOUBT)
    max_pool_connections: int = 100  # concurrent HTTP connections, hence in-flight sends
    configuration_set: str | None = None  # for sends whose message names none
    # How SendEmail / SendBulkEmail go out: "lean" (dispatcher/ses/lean.py: one signed HTTP/1.1
    # POST, about a fifth of botocore's CPU a call) or "botocore" (the aioboto3 client).
    client: str = "lean"

    def __post_init__(self) -> None:
        if not self.region:
            raise ConfigError("ses.region must not be empty (e.g. 'us-east-1')")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError(
                "ses.access_key_id and ses.secret_access_key must be given together, "
                "or both left out to use the standard AWS credential chain"
            )
        if self.profile is not None and self.access_key_id is not None:
            raise ConfigError("ses.profile and ses.access_key_id exclude each other: give one")
        if self.role_arn is not None and not self.role_arn.startswith("arn:"):
            raise ConfigError(
                "ses.role_arn must be a role ARN such as "
                f"arn:aws:iam::123456789012:role/ses-sender, got {self.role_arn!r}"
            )
        if not self.connect_timeout > 0:
            raise ConfigError(
                f"ses.connect_timeout must be > 0 seconds, got {self.connect_timeout}"
            )
        if not self.read_timeout > 0:
            raise ConfigError(f"ses.read_timeout must be > 0 seconds, got {self.read_timeout}")
        if self.client not in CLIENTS:
            raise ConfigError(
                f"ses.client must be one of {', '.join(CLIENTS)}, got {self.client!r}"
            )
        if self.max_pool_connections < 1:
            raise ConfigError(
                f"ses.max_pool_connections must be >= 1, got {self.max_pool_connections}"
            )
