"""The simulated SES account: settings, limits, the record of accepted mail, and the send decision.

Pure: no aiohttp, no asyncio. The protocol modules (v1.py, the v2_*.py routed by v2.py) parse
the wire, call `SimState.send`, and turn an `Accepted` or a `Refusal` into their API's wire form.
"""

from __future__ import annotations

import base64
import enum
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.sim.account import Account
from dispatcher.sim.limits import ActionLimit, Clock, RateBucket, RollingQuota
from dispatcher.sim.settings import SimSettings

MAX_RECIPIENTS = 50  # per message, To + Cc + Bcc together
SIMULATOR_DOMAIN = "@simulator.amazonses.com"  # mailbox simulator: rate yes, daily quota no
_SIMULATOR_BRACKETED = SIMULATOR_DOMAIN + ">"  # `Name <success@simulator.amazonses.com>`


class SendError(enum.Enum):
    """Why the account refused a message; `errors.py` maps each to its v1 and v2 wire forms."""

    THROTTLED = "throttled"  # over MaxSendRate
    DAILY_QUOTA = "daily_quota"  # Max24HourSend spent within the rolling window
    TOO_MANY_RECIPIENTS = "too_many_recipients"  # more than MAX_RECIPIENTS
    INVALID_ADDRESS = "invalid_address"  # detail: the address; reason: SES's v1 wording
    NO_RECIPIENTS = "no_recipients"
    MISSING_PARAMETER = "missing_parameter"  # found by a protocol layer; detail: what is missing
    INVALID_PARAMETER = "invalid_parameter"  # found by a protocol layer; detail: what is wrong
    NOT_FOUND = "not_found"  # a named resource does not exist; detail: SES's text
    TEMPLATE_MISSING = "template_missing"  # detail: the template name
    CONFIG_SET_MISSING = "config_set_missing"  # detail: the configuration set name
    CONFIG_SET_PAUSED = "config_set_paused"  # detail: the configuration set name
    ACCOUNT_PAUSED = "account_paused"  # sending disabled for the whole account
    ACCOUNT_SUSPENDED = "account_suspended"  # enforcement status SHUTDOWN
    MAIL_FROM_NOT_VERIFIED = "mail_from_not_verified"  # detail: the MAIL FROM domain
    NOT_VERIFIED = "not_verified"  # detail: the identities that failed, comma-separated
    TOO_LARGE = "too_large"  # detail: the limit in bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: SendError
    detail: str = ""  # the offending address or parameter
    reason: str = ""  # SES's wording where it depends on the detail (invalid address)


_THROTTLED = Refusal(SendError.THROTTLED)
_DAILY_QUOTA = Refusal(SendError.DAILY_QUOTA)
_TOO_MANY = Refusal(SendError.TOO_MANY_RECIPIENTS)
_NO_RECIPIENTS = Refusal(SendError.NO_RECIPIENTS)


@dataclass(slots=True)
class SentMessage:
    """One accepted message as the inspection API shows it."""

    message_id: str
    api: str  # "v1" or "v2"
    from_addr: str
    to: Sequence[str]
    cc: Sequence[str]
    bcc: Sequence[str]
    subject: str
    tags: Mapping[str, str]
    accepted_at: float  # unix seconds
    configuration_set: str | None = None
    reply_to: Sequence[str] = ()
    text: str | None = None
    html: str | None = None
    raw: bytes | None = None  # the MIME message of a raw send, as received
    template: str | None = None  # the template a templated send used
    headers: tuple[tuple[str, str], ...] = ()  # v2 Simple Headers / bulk ReplacementHeaders
    operation: str = "SendEmail"  # the API call that sent it: the `ses:operation` auto-tag
    # SES accepted a templated send whose data lacks a variable: not delivered, and a
    # Rendering Failure event says why (SES's text).
    rendering_failure: str | None = None
    list_management: Mapping[str, str] | None = None  # v2 ListManagementOptions as given

    def to_json(self, *, body: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "api": self.api,
            "from": self.from_addr,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "subject": self.subject,
            "tags": dict(self.tags),
            "accepted_at": self.accepted_at,
            "configuration_set": self.configuration_set,
            "reply_to": list(self.reply_to),
            "raw_size": len(self.raw) if self.raw is not None else None,
            "template": self.template,
            "headers": [list(h) for h in self.headers],
            "operation": self.operation,
            "rendering_failure": self.rendering_failure,
            "list_management": dict(self.list_management) if self.list_management else None,
        }
        if body:
            out["text"] = self.text
            out["html"] = self.html
            out["raw"] = base64.b64encode(self.raw).decode() if self.raw is not None else None
        return out


@dataclass(slots=True)
class Counters:
    accepted: int = 0  # messages
    recipients_accepted: int = 0
    throttled: int = 0  # refused for MaxSendRate
    daily_quota_exceeded: int = 0  # refused for Max24HourSend
    rejected: int = 0  # refused as malformed: too many recipients, bad address, missing field
    refused_account: int = 0  # refused by the account model: paused, unverified, missing set...
    faults: int = 0  # injected 500/503/reset/timeout answers
    events: int = 0  # SES events generated
    quota_reads: int = 0  # GetSendQuota (v1) / GetAccount (v2) calls answered
    rendering_failures: int = 0  # accepted, then not sent: a template variable was missing
    api_throttled: int = 0  # non-send actions refused for coming within a second

    def to_json(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "recipients_accepted": self.recipients_accepted,
            "throttled": self.throttled,
            "daily_quota_exceeded": self.daily_quota_exceeded,
            "rejected": self.rejected,
            "refused_account": self.refused_account,
            "faults": self.faults,
            "events": self.events,
            "quota_reads": self.quota_reads,
            "rendering_failures": self.rendering_failures,
            "api_throttled": self.api_throttled,
        }


def address_problem(address: str) -> str | None:
    """SES's v1 reason for refusing `address` (bare or `Name <addr>`), or None if it is usable.

    SES answers with javax.mail's texts. Sources: a trailing dot in the domain is "Missing
    domain" (brave/accounts#35); a non-ASCII local part "Local address contains control or
    whitespace" (egulias/EmailValidator#414); a non-ASCII domain "Domain contains illegal
    character" (18F/identity-idp#7380). Not confirmed: the text for a domain without a dot
    (`user@localhost`), taken to be "Missing domain" as for the trailing dot.
    """
    s = address.strip()
    if s.endswith(">"):
        start = s.rfind("<")
        if start < 0:
            return "Missing final '@domain'"
        s = s[start + 1 : -1].strip()
    at = s.rfind("@")
    if at < 0:
        return "Missing final '@domain'"
    if at == 0:
        return "Missing local name"
    if at == len(s) - 1:
        return "Missing domain"
    if " " in s or not s.isprintable():
        if " " in s[at:] or not s[at:].isprintable():
            return "Domain contains control or whitespace"
        return "Local address contains control or whitespace"
    if not s.isascii():
        if not s[:at].isascii():
            return "Local address contains control or whitespace"
        return "Domain contains illegal character"
    domain = s[at + 1 :]
    if domain.endswith(".") or "." not in domain:
        return "Missing domain"
    return None


def bare_address(address: str) -> str:
    """`Name <a@b>` -> `a@b`; a bare address unchanged."""
    s = address.strip()
    if s.endswith(">"):
        start = s.rfind("<")
        if start >= 0:
            return s[start + 1 : -1].strip()
    return s


def is_simulator(address: str) -> bool:
    """Mailbox-simulator recipients (labels allowed: bounce+x@...) skip the daily quota."""
    return bare_address(address).lower().endswith(SIMULATOR_DOMAIN)


Listener = Callable[["SentMessage"], None]


class SimState:
    """One simulated account. Not thread-safe: owned by the event loop that serves it."""

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.settings = settings or SimSettings()
        self._clock = clock
        self._wall_clock = wall_clock
        self.rate = RateBucket(
            self.settings.max_send_rate, self.settings.burst_seconds, clock=clock
        )
        self.quota = RollingQuota(
            self.settings.max_24_hour_send, self.settings.quota_window_seconds, clock=clock
        )
        self.actions = ActionLimit(self.settings.api_rate, clock=clock)
        self.account = Account()
        self.messages: list[SentMessage] = []
        self.counters = Counters()
        # Called with every accepted message (the event publisher registers here).
        self.listeners: list[Listener] = []
        # Message ids: SES's shape (0100<ms>-<uuid-like>-000000), unique via a per-process
        # random middle part and a counter, without a uuid4() per send.
        rnd = os.urandom(10).hex()
        self._id_middle = f"{rnd[:8]}-{rnd[8:12]}-{rnd[12:16]}-{rnd[16:20]}-"
        self._id_seq = 0

    # -- the send decision ---------------------------------------------------------------

    def check_account(self, configuration_set: str | None) -> Refusal | None:
        """What stops every message of this account (or of this configuration set) now.

        The protocol layers call it once for a bulk call before looking at the entries.
        """
        account = self.account
        if account.enforcement_status == "SHUTDOWN":
            return self._refuse_account(Refusal(SendError.ACCOUNT_SUSPENDED))
        if not account.sending_enabled:
            return self._refuse_account(Refusal(SendError.ACCOUNT_PAUSED))
        if configuration_set:
            found = account.configuration_sets.get(configuration_set)
            if found is None:
                if self.settings.configuration_sets_must_exist:
                    return self._refuse_account(
                        Refusal(SendError.CONFIG_SET_MISSING, configuration_set)
                    )
            elif not found.sending_enabled:
                return self._refuse_account(Refusal(SendError.CONFIG_SET_PAUSED, configuration_set))
        return None

    def send(
        self,
        *,
        api: str,
        from_addr: str,
        to: Sequence[str],
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        subject: str = "",
        tags: Mapping[str, str] | None = None,
        configuration_set: str | None = None,
        reply_to: Sequence[str] = (),
        text: str | None = None,
        html: str | None = None,
        raw: bytes | None = None,
        template: str | None = None,
        account_checked: bool = False,
        headers: Sequence[tuple[str, str]] = (),
        operation: str = "SendEmail",
        rendering_failure: str | None = None,
        senders: Sequence[str] = (),
        list_management: Mapping[str, str] | None = None,
    ) -> SentMessage | Refusal:
        """Accept and record the message, or say why SES would refuse it.

        Order: the account (suspended, paused, configuration set), the message's own validity,
        the identities (MAIL FROM domain, sandbox or required verification), then the daily
        quota (a quota refusal spends no rate token), then the rate. `account_checked`: the
        caller already ran `check_account` (bulk sends do it once per call). `senders`: the
        other addresses SES checks like the sender (Return-Path, FeedbackForwardingEmailAddress,
        a raw message's From and Sender headers).
        """
        if not account_checked:
            stop = self.check_account(configuration_set)
            if stop is not None:
                return stop
        n = len(to) + len(cc) + len(bcc)
        if n == 0:
            return self._reject(_NO_RECIPIENTS)
        if n > MAX_RECIPIENTS:
            return self._reject(_TOO_MANY)
        quota_n = n
        for group in (to, cc, bcc):
            for address in group:
                problem = address_problem(address)
                if problem is not None:
                    return self._reject(Refusal(SendError.INVALID_ADDRESS, address, problem))
                low = address.lower()
                if low.endswith(SIMULATOR_DOMAIN) or low.endswith(_SIMULATOR_BRACKETED):
                    quota_n -= 1
        for sender in (from_addr, *senders) if senders else (from_addr,):
            if sender:
                problem = address_problem(sender)
                if problem is not None:
                    return self._reject(Refusal(SendError.INVALID_ADDRESS, sender, problem))
        settings = self.settings
        if self.account.identities or settings.sandbox or settings.sender_must_be_verified:
            refusal = self._check_identities(from_addr, (to, cc, bcc), senders)
            if refusal is not None:
                return self._refuse_account(refusal)

        counters = self.counters
        if quota_n and not self.quota.allows(quota_n):
            counters.daily_quota_exceeded += 1
            return _DAILY_QUOTA
        if not self.rate.try_take(n):
            counters.throttled += 1
            return _THROTTLED
        self.quota.record(quota_n)

        wall = self._wall_clock()
        self._id_seq += 1
        record = SentMessage(
            message_id=f"0100{int(wall * 1000):012x}-{self._id_middle}{self._id_seq:012x}-000000",
            api=api,
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            tags=tags if tags is not None else {},
            accepted_at=wall,
            configuration_set=configuration_set,
            reply_to=reply_to,
            text=text,
            html=html,
            raw=raw,
            template=template,
            headers=tuple(headers),
            operation=operation,
            rendering_failure=rendering_failure,
            list_management=list_management or None,
        )
        self.messages.append(record)
        counters.accepted += 1
        counters.recipients_accepted += n
        if rendering_failure is not None:
            counters.rendering_failures += 1
        for listener in self.listeners:
            listener(record)
        return record

    def _check_identities(
        self, from_addr: str, groups: tuple[Sequence[str], ...], senders: Sequence[str] = ()
    ) -> Refusal | None:
        """MAIL FROM domain, then verification of the sender (and in the sandbox, recipients)."""
        account = self.account
        settings = self.settings
        sender = bare_address(from_addr) if from_addr else ""
        identity = account.identity_for(sender) if sender else None
        # The MAIL FROM domain is a domain identity's setting; its addresses inherit it.
        domain = identity
        if (identity is None or identity.kind != "DOMAIN") and "@" in sender:
            domain = account.identity_for(sender[sender.rfind("@") + 1 :])
        if domain is not None and domain.mail_from_rejects:
            return Refusal(SendError.MAIL_FROM_NOT_VERIFIED, domain.mail_from_domain or "")
        failed: list[str] = []
        if settings.sender_must_be_verified:
            if identity is None:
                failed.append(sender)
            for other in senders:
                bare = bare_address(other)
                if bare and not account.is_verified(bare) and bare not in failed:
                    failed.append(bare)
        if settings.sandbox:
            for group in groups:
                for address in group:
                    bare = bare_address(address)
                    if bare.lower().endswith(SIMULATOR_DOMAIN):
                        continue  # the mailbox simulator needs no verification
                    if not account.is_verified(bare) and bare not in failed:
                        failed.append(bare)
        if failed:
            return Refusal(SendError.NOT_VERIFIED, ", ".join(failed))
        return None

    def allow_action(self, action: str) -> bool:
        """Charge one call of a non-send action; False (counted) if over its 1 request/s."""
        if self.actions.allow(action, self.settings.api_rate):
            return True
        self.counters.api_throttled += 1
        return False

    def refuse(self, kind: SendError, detail: str = "") -> Refusal:
        """Count a message a protocol layer found malformed before it reached `send`."""
        return self._reject(Refusal(kind, detail))

    def refuse_account(self, kind: SendError, detail: str = "") -> Refusal:
        """Count a message the account refused before it reached `send` (missing template)."""
        return self._refuse_account(Refusal(kind, detail))

    def _reject(self, refusal: Refusal) -> Refusal:
        self.counters.rejected += 1
        return refusal

    def _refuse_account(self, refusal: Refusal) -> Refusal:
        self.counters.refused_account += 1
        return refusal

    # -- account queries and administration -----------------------------------------------

    def send_quota(self) -> tuple[float, float, float]:
        """(Max24HourSend, MaxSendRate, SentLast24Hours) as GetSendQuota reports them."""
        s = self.settings
        return s.max_24_hour_send, s.max_send_rate, self.quota.sent_in_window()

    def wall_time(self) -> float:
        return self._wall_clock()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self.counters.to_json()
        out["messages"] = len(self.messages)
        out["sent_last_24_hours"] = self.quota.sent_in_window()
        out["rate_tokens"] = self.rate.level()
        return out

    def configure(self, changes: Mapping[str, Any]) -> SimSettings:
        """Apply some SimSettings fields at runtime; ValueError (nothing changed) if one is bad."""
        new = self.settings.replace(changes)
        old = self.settings
        if (new.max_send_rate, new.burst_seconds) != (old.max_send_rate, old.burst_seconds):
            self.rate.set_rate(new.max_send_rate, new.burst_seconds)
        self.quota.configure(new.max_24_hour_send, new.quota_window_seconds)
        self.settings = new
        return new

    def reset(self) -> None:
        """Forget every message and counter, and refill the limits (the account is kept)."""
        self.messages.clear()
        self.counters = Counters()
        self.rate.refill_full()
        self.quota.clear()
        self.actions.clear()
