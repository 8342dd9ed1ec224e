"""Each refusal in SES's two wire forms: v1 (code, text), v2 (HTTP status, code, text), and the
per-entry Status of the two bulk operations. Pure: the protocol modules render these.

Sources, per row. Confirmed: the rate and quota texts (SES-FACTS.md); "Recipient count exceeds
50." (doubleunion/arooo#243); javax.mail address texts (boto/boto#351, anymail#281); "Missing
required header 'To'." (tastyigniter#895); "Invalid email address X." (aws-ses-v2-local#44);
"Configuration set <X> does not exist." (Notifuse/notifuse#162, v1); "Template X does not
exist." (getmoto/moto#3783, v1); "Email address is not verified. The following identities failed
the check in region US-EAST-1: ..." (anonaddy/anonaddy#647); "Sending paused for this account.
For more information, please check the inbox of the email address associated with your AWS
account." (GoodDollar/GoodServer#419). Codes and HTTP statuses: botocore's ses and sesv2
service models. Marked "not confirmed" where the text or the v2 form is our best guess.
"""

from __future__ import annotations

from dispatcher.sim.state import Refusal, SendError

PAUSED_TEXT = (
    "Sending paused for this account. For more information, please check the inbox of the "
    "email address associated with your AWS account."
)
# A non-send action called more than once a second: AWS's API rate error (not MaxSendRate's
# text, which is only for sends). v1's "Throttling" / "Rate exceeded" is AWS's common Query
# throttling answer; v2's text is not confirmed (the code is the sesv2 model's 429).
ACTION_THROTTLED_V1 = ("Throttling", "Rate exceeded")
ACTION_THROTTLED_V2 = (429, "TooManyRequestsException", "Rate exceeded")
# Not confirmed: the sesv2 model's description of AccountSuspendedException.
SUSPENDED_TEXT = (
    "Your account has been shut down because of issues related to your email sending practices."
)


def _not_verified(refusal: Refusal, region: str) -> str:
    return (
        "Email address is not verified. The following identities failed the check in region "
        f"{region.upper()}: {refusal.detail}"
    )


def v1_error(refusal: Refusal, region: str) -> tuple[str, str]:
    """(Code, Message) of the v1 Query/XML error for a refusal."""
    kind = refusal.kind
    detail = refusal.detail
    if kind is SendError.THROTTLED:
        return "Throttling", "Maximum sending rate exceeded."
    if kind is SendError.DAILY_QUOTA:
        return "Throttling", "Daily message quota exceeded."
    if kind is SendError.TOO_MANY_RECIPIENTS:
        return "InvalidParameterValue", "Recipient count exceeds 50."
    if kind is SendError.INVALID_ADDRESS:
        return "InvalidParameterValue", refusal.reason
    if kind is SendError.NO_RECIPIENTS:
        return "InvalidParameterValue", "Missing required header 'To'."
    if kind is SendError.MISSING_PARAMETER:
        # AWS common error for the Query APIs.
        return "MissingParameter", f"The request must contain the parameter {detail}."
    if kind is SendError.NOT_FOUND:
        return "TemplateDoesNotExist", detail
    if kind is SendError.TEMPLATE_MISSING:
        return "TemplateDoesNotExist", f"Template {detail} does not exist."
    if kind is SendError.CONFIG_SET_MISSING:
        return "ConfigurationSetDoesNotExist", f"Configuration set <{detail}> does not exist."
    if kind is SendError.CONFIG_SET_PAUSED:
        # Not confirmed: the text.
        return (
            "ConfigurationSetSendingPausedException",
            f"Sending is paused for configuration set <{detail}>.",
        )
    if kind is SendError.ACCOUNT_PAUSED:
        return "AccountSendingPausedException", PAUSED_TEXT
    if kind is SendError.ACCOUNT_SUSPENDED:
        # Not confirmed: v1 has no suspended code; its only account-level code, with v2's text.
        return "AccountSendingPausedException", SUSPENDED_TEXT
    if kind is SendError.MAIL_FROM_NOT_VERIFIED:
        # Not confirmed: the text.
        return (
            "MailFromDomainNotVerifiedException",
            f"The MAIL FROM domain {detail} is not verified (no MX record found).",
        )
    if kind is SendError.NOT_VERIFIED:
        return "MessageRejected", _not_verified(refusal, region)
    if kind is SendError.TOO_LARGE:
        # Not confirmed: the wording for an oversized message.
        return "InvalidParameterValue", f"Message length is more than {detail} bytes."
    return "InvalidParameterValue", detail or "Invalid request."


def v2_error(refusal: Refusal, region: str) -> tuple[int, str, str]:
    """(HTTP status, x-amzn-ErrorType, message) of the v2 REST-JSON error for a refusal."""
    kind = refusal.kind
    detail = refusal.detail
    if kind is SendError.THROTTLED:
        return 429, "TooManyRequestsException", "Maximum sending rate exceeded."
    if kind is SendError.DAILY_QUOTA:
        # Not confirmed: sesv2 lists LimitExceededException on SendEmail; the text is SES's.
        return 400, "LimitExceededException", "Daily message quota exceeded."
    if kind is SendError.TOO_MANY_RECIPIENTS:
        # v1's text under v2's validation error (not confirmed).
        return 400, "BadRequestException", "Recipient count exceeds 50."
    if kind is SendError.INVALID_ADDRESS:
        return 400, "BadRequestException", f"Invalid email address {detail}."
    if kind is SendError.NO_RECIPIENTS:
        # Not confirmed.
        return 400, "BadRequestException", "No recipient addresses were specified."
    if kind is SendError.NOT_FOUND:
        return 404, "NotFoundException", detail
    if kind is SendError.MISSING_PARAMETER:
        return 400, "BadRequestException", f"Missing required parameter {detail}."
    if kind is SendError.TEMPLATE_MISSING:
        return 404, "NotFoundException", f"Template {detail} does not exist."
    if kind is SendError.CONFIG_SET_MISSING:
        # Not confirmed: v1's text under v2's NotFoundException.
        return 404, "NotFoundException", f"Configuration set <{detail}> does not exist."
    if kind is SendError.CONFIG_SET_PAUSED:
        # sesv2 has one SendingPausedException for the account and a configuration set; the
        # text names the set (not confirmed), which is how a reader tells them apart.
        return 400, "SendingPausedException", f"Sending is paused for configuration set <{detail}>."
    if kind is SendError.ACCOUNT_PAUSED:
        return 400, "SendingPausedException", PAUSED_TEXT
    if kind is SendError.ACCOUNT_SUSPENDED:
        return 400, "AccountSuspendedException", SUSPENDED_TEXT
    if kind is SendError.MAIL_FROM_NOT_VERIFIED:
        return (
            400,
            "MailFromDomainNotVerifiedException",
            f"The MAIL FROM domain {detail} is not verified (no MX record found).",
        )
    if kind is SendError.NOT_VERIFIED:
        return 400, "MessageRejected", _not_verified(refusal, region)
    if kind is SendError.TOO_LARGE:
        return 400, "BadRequestException", f"Message length is more than {detail} bytes."
    return 400, "BadRequestException", detail or "Invalid request."


# SendBulkTemplatedEmail (v1) and SendBulkEmail (v2) per-destination Status, from the models'
# enums (BulkEmailStatus in ses, BulkEmailStatus in sesv2).
_BULK: dict[SendError, tuple[str, str]] = {
    SendError.THROTTLED: ("AccountThrottled", "ACCOUNT_THROTTLED"),
    SendError.DAILY_QUOTA: ("AccountDailyQuotaExceeded", "ACCOUNT_DAILY_QUOTA_EXCEEDED"),
    SendError.TOO_MANY_RECIPIENTS: ("InvalidParameterValue", "INVALID_PARAMETER"),
    SendError.INVALID_ADDRESS: ("InvalidParameterValue", "INVALID_PARAMETER"),
    SendError.NO_RECIPIENTS: ("InvalidParameterValue", "INVALID_PARAMETER"),
    SendError.MISSING_PARAMETER: ("InvalidParameterValue", "INVALID_PARAMETER"),
    SendError.INVALID_PARAMETER: ("InvalidParameterValue", "INVALID_PARAMETER"),
    SendError.TOO_LARGE: ("InvalidParameterValue", "INVALID_PARAMETER"),
    SendError.NOT_FOUND: ("TemplateDoesNotExist", "TEMPLATE_NOT_FOUND"),
    SendError.TEMPLATE_MISSING: ("TemplateDoesNotExist", "TEMPLATE_NOT_FOUND"),
    SendError.CONFIG_SET_MISSING: ("ConfigurationSetDoesNotExist", "CONFIGURATION_SET_NOT_FOUND"),
    SendError.CONFIG_SET_PAUSED: (
        "ConfigurationSetSendingPaused",
        "CONFIGURATION_SET_SENDING_PAUSED",
    ),
    SendError.ACCOUNT_PAUSED: ("AccountSendingPaused", "ACCOUNT_SENDING_PAUSED"),
    SendError.ACCOUNT_SUSPENDED: ("AccountSuspended", "ACCOUNT_SUSPENDED"),
    SendError.MAIL_FROM_NOT_VERIFIED: (
        "MailFromDomainNotVerified",
        "MAIL_FROM_DOMAIN_NOT_VERIFIED",
    ),
    SendError.NOT_VERIFIED: ("MessageRejected", "MESSAGE_REJECTED"),
}


def bulk_status(refusal: Refusal, region: str, *, v2: bool) -> tuple[str, str]:
    """(Status, Error) of one bulk entry the account refused."""
    v1_status, v2_status = _BULK.get(refusal.kind, ("Failed", "FAILED"))
    text = v2_error(refusal, region)[2] if v2 else v1_error(refusal, region)[1]
    return (v2_status if v2 else v1_status), text
