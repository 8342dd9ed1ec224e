"""What the worker pool needs for campaign mail: render at send time, pause on config errors."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from dispatcher.campaigns.render import (
    UNSUBSCRIBE_VARIABLE,
    CampaignContent,
    CompiledCampaign,
    UnsubscribeLinks,
)
from dispatcher.campaigns.store import CampaignRow, CampaignStore
from dispatcher.campaigns.unsubscribe import TOKEN_VARIABLE, UnsubscribeTokens
from dispatcher.campaigns.windows import SendWindow, parse_window, zone
from dispatcher.domain.jobs import ClaimedJob
from dispatcher.domain.plan import Fail, GiveBack, Plan, Send, SendBulk, Wait
from dispatcher.errors import ConfigError, InputError
from dispatcher.ses.errors import SesError

EnsureTemplate = Callable[[str, str, str | None, str | None], Awaitable[None]]
TokenKey = Callable[[], UnsubscribeTokens]  # loads the key (the master key file) when first needed

log = structlog.get_logger()


def _with_list(job: ClaimedJob, row: CampaignRow) -> ClaimedJob:
    """The job's message sent with the campaign's ListManagementOptions."""
    assert row.contact_list is not None
    options = (row.contact_list, row.topic)
    return dataclasses.replace(
        job, message=dataclasses.replace(job.message, list_management=options)
    )


class CampaignSender:
    """Renders campaign jobs from their campaign's template (compiled once per process).

    For `ses_template` campaigns nothing is rendered here: `bulk_template` makes sure the SES
    template exists (once per process) and the pool sends with SendBulkEmail.
    """

    __slots__ = (
        "_clock",
        "_compiled",
        "_ensure_template",
        "_links",
        "_rows",
        "_store",
        "_templates_ready",
        "_token_key",
        "_tokens",
        "_uses_token",
        "_windows",
    )

    def __init__(
        self,
        store: CampaignStore,
        ensure_template: EnsureTemplate | None = None,
        *,
        tokens: TokenKey | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._clock = clock  # wall clock: send windows are hours of the day
        self._windows: dict[int, SendWindow | None] = {}
        self._ensure_template = ensure_template
        self._token_key = tokens
        self._tokens: UnsubscribeTokens | None = None
        self._uses_token: dict[int, bool] = {}  # per campaign: its templates are scanned once
        self._compiled: dict[int, CompiledCampaign] = {}
        self._links: dict[int, UnsubscribeLinks] = {}  # ses_template campaigns: headers only
        self._rows: dict[int, CampaignRow] = {}  # definitions only: they never change
        self._templates_ready: set[int] = set()

    async def _row(self, campaign_id: int) -> CampaignRow:
        row = self._rows.get(campaign_id)
        if row is None:
            row = self._rows[campaign_id] = await self._store.get(campaign_id)
        return row

    def _signer(self, row: CampaignRow) -> UnsubscribeTokens | None:
        """The token maker if this campaign's templates use {{ unsubscribe_token }} (the default
        unsubscribe URL does); ConfigError if the key cannot be loaded."""
        uses = self._uses_token.get(row.id)
        if uses is None:
            sources = (row.unsubscribe_url, row.subject, row.html, row.text)
            uses = self._uses_token[row.id] = any(TOKEN_VARIABLE in s for s in sources if s)
        if not uses:
            return None
        if self._tokens is None:
            if self._token_key is None:
                raise ConfigError("{{ unsubscribe_token }} needs the keys' master key here")
            self._tokens = self._token_key()
        return self._tokens

    def _token_vars(self, row: CampaignRow, message_id: int) -> dict[str, str]:
        signer = self._signer(row)
        return {} if signer is None else {TOKEN_VARIABLE: signer.sign(row.id, message_id)}

    async def bulk_template(self, campaign_id: int) -> str | None:
        """The SES template to send this campaign with (SendBulkEmail), or None to render."""
        row = await self._row(campaign_id)
        if row.mode != "ses_template":
            return None
        if campaign_id not in self._templates_ready:
            if self._ensure_template is None:
                raise RuntimeError("ses_template campaigns need an SES client")
            await self._ensure_template(row.ses_template_name, row.subject, row.html, row.text)
            self._templates_ready.add(campaign_id)
            log.info(
                "campaign.template_ready", campaign_id=campaign_id, template=row.ses_template_name
            )
        return row.ses_template_name

    async def prepare(self, job: ClaimedJob) -> ClaimedJob:
        """The job with its message rendered for its recipient; InputError if it cannot be.

        Whatever rendering raises becomes InputError, so one recipient fails alone (the worker
        fails it as ``render_error``); only the campaign's row read (the database) can raise
        anything else.
        """
        campaign_id = job.campaign_id
        if campaign_id is None:
            return job
        row = await self._row(campaign_id)
        if row.contact_list is not None:  # SES's list management: SES writes the headers
            job = _with_list(job, row)
        try:
            if row.mode == "ses_template":
                return self._with_unsubscribe(job, row)  # SES renders the rest
            return self._rendered(job, row)
        except InputError:
            raise
        except Exception as exc:
            email = job.message.to[0] if job.message.to else ""
            raise InputError(
                f"rendering for {email} failed: {type(exc).__name__}: {exc}; "
                "change the template or this recipient's variables"
            ) from None

    def _rendered(self, job: ClaimedJob, row: CampaignRow) -> ClaimedJob:
        compiled = self._compiled.get(row.id)
        if compiled is None:
            compiled = CompiledCampaign(
                CampaignContent(
                    subject=row.subject,
                    html=row.html,
                    text=row.text,
                    unsubscribe_url=row.unsubscribe_url,
                )
            )
            self._compiled[row.id] = compiled
            if compiled.inlined_per_recipient is not None:  # the slower way: say why, once
                log.info(
                    "campaign.css_inlined_per_recipient",
                    campaign_id=row.id,
                    reason=compiled.inlined_per_recipient,
                )
        msg = job.message
        rendered = compiled.render(
            {**(job.variables or {}), **self._token_vars(row, msg.id)},
            email=msg.to[0] if msg.to else "",
            campaign_id=row.id,
            message_id=msg.id,
        )
        message = dataclasses.replace(
            msg,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            headers=rendered.headers,
        )
        return dataclasses.replace(job, message=message)

    def _with_unsubscribe(self, job: ClaimedJob, row: CampaignRow) -> ClaimedJob:
        """An SES-template job with its List-Unsubscribe headers (SES renders the body), and
        its URL among the template data so the body can link it as {{unsubscribe_url}}."""
        links = self._links.get(row.id)
        if links is None:
            links = self._links[row.id] = UnsubscribeLinks(row.unsubscribe_url, None)
        msg = job.message
        variables = dict(job.variables or {})
        email = msg.to[0] if msg.to else ""
        context = {**variables, "email": email, "campaign_id": row.id, "message_id": msg.id}
        context.update(self._token_vars(row, msg.id))
        url, headers = links.render(context, email)
        if url is None:
            return job
        variables[UNSUBSCRIBE_VARIABLE] = url
        return dataclasses.replace(
            job, message=dataclasses.replace(msg, headers=headers), variables=variables
        )

    async def window_wait(self, job: ClaimedJob) -> float | None:
        """Seconds until the recipient's send window opens; None if it is open (or none)."""
        assert job.campaign_id is not None
        cid = job.campaign_id
        if cid not in self._windows:
            row = await self._row(cid)
            self._windows[cid] = parse_window(row.send_window) if row.send_window else None
        window = self._windows[cid]
        if window is None:
            return None  # the common case: one dict lookup per job
        row = await self._row(cid)
        name = (job.variables or {}).get(row.timezone_column or "") or row.timezone or "UTC"
        now = self._clock()
        try:
            opens = window.next_open(zone(name), now)
        except InputError:  # checked at import; a zone gone from tzdata since: the campaign's
            opens = window.next_open(zone(row.timezone or "UTC"), now)
        return None if opens is None else max(1.0, (opens - now).total_seconds())

    async def materialise(self, stop: asyncio.Event, rate: Callable[[], float]) -> None:
        """Until `stop`: keep running campaigns' recipients ahead of the sending as jobs."""
        await self._store.materialiser(rate).run(stop)

    async def finish_done(self) -> list[int]:
        """Mark running campaigns with nothing left to send finished; their ids."""
        done = await self._store.finish_done()
        for campaign_id in done:
            log.info("campaign.finished", campaign_id=campaign_id)
        return done

    async def pause(self, campaign_id: int, reason: str) -> None:
        """A configuration error shared by the whole campaign: pause it, with the reason."""
        if await self._store.pause(campaign_id, reason):
            log.error("campaign.paused", campaign_id=campaign_id, reason=reason)

    async def plan(self, job: ClaimedJob) -> Plan:
        """How a campaign job goes out: rendered, in bulk with the SES template, failed (it
        cannot be rendered), or given back (SES refused the template: the campaign is paused)."""
        assert job.campaign_id is not None
        delay = await self.window_wait(job)
        if delay is not None:
            return Wait(job, delay)
        try:
            self._signer(await self._row(job.campaign_id))
        except ConfigError as exc:  # every recipient would fail alike: hold the campaign
            reason = f"cannot sign its unsubscribe links: {exc}"
            await self.pause(job.campaign_id, reason)
            return GiveBack(job, reason)
        try:
            template = await self.bulk_template(job.campaign_id)
        except SesError as exc:
            reason = f"SES refused the campaign's template: {exc}"
            await self.pause(job.campaign_id, reason)
            return GiveBack(job, reason)
        try:
            prepared = await self.prepare(job)
        except InputError as exc:
            return Fail(job, "render_error", str(exc))
        return Send(prepared) if template is None else SendBulk(prepared, template)
