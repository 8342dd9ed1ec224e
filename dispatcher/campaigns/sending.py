"""What the worker pool needs for campaign mail: render at send time, pause on config errors."""

from __future__ import annotations

import dataclasses

import structlog

from dispatcher.campaigns.render import CampaignContent, CompiledCampaign
from dispatcher.campaigns.store import CampaignStore
from dispatcher.queue.repository import ClaimedJob

log = structlog.get_logger()


class CampaignSender:
    """Renders campaign jobs from their campaign's template (compiled once per process)."""

    __slots__ = ("_compiled", "_store")

    def __init__(self, store: CampaignStore) -> None:
        self._store = store
        self._compiled: dict[int, CompiledCampaign] = {}

    async def prepare(self, job: ClaimedJob) -> ClaimedJob:
        """The job with its message rendered for its recipient; InputError if it cannot be."""
        campaign_id = job.campaign_id
        if campaign_id is None:
            return job
        compiled = self._compiled.get(campaign_id)
        if compiled is None:
            row = await self._store.get(campaign_id)
            compiled = CompiledCampaign(
                CampaignContent(
                    subject=row.subject,
                    html=row.html,
                    text=row.text,
                    unsubscribe_url=row.unsubscribe_url,
                )
            )
            self._compiled[campaign_id] = compiled
        msg = job.message
        rendered = compiled.render(
            job.variables or {},
            email=msg.to[0] if msg.to else "",
            campaign_id=campaign_id,
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

    async def pause(self, campaign_id: int, reason: str) -> None:
        """A configuration error shared by the whole campaign: pause it, with the reason."""
        if await self._store.pause(campaign_id, reason):
            log.error("campaign.paused", campaign_id=campaign_id, reason=reason)
