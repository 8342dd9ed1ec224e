"""The one-click unsubscribe receiver (RFC 8058) on the feedback listener: /unsubscribe/<token>.

``POST`` with ``List-Unsubscribe=One-Click`` (form-encoded or multipart, as Gmail and Yahoo send
it) puts the recipient on the suppression list at once, for every later mail (the list is
global: campaigns import their own recipient lists, so there is no list to scope it to) and
answers 200, no redirect; a repeat answers 200 too. ``GET`` only shows a page whose button makes
that POST: link scanners follow GETs. A token that is not ours is refused with 403 before
anything is read, a campaign that is gone 404, a recipient whose row was pruned 410; a refused
request changes nothing.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import asyncpg  # type: ignore[import-untyped]
import structlog
from aiohttp import web

from dispatcher.campaigns.unsubscribe import (
    UNSUBSCRIBE_PATH,
    BadToken,
    TokenTarget,
    UnsubscribeTokens,
)
from dispatcher.feedback.store import FeedbackStore

__all__ = ["add_unsubscribe_routes", "unsubscribe_reason"]

log = structlog.get_logger()

ONE_CLICK_FIELD: Final = "List-Unsubscribe"
ONE_CLICK_VALUE: Final = "One-Click"
MAX_FORM_BYTES: Final = 16 * 1024  # the one-click body is 26 bytes; a multipart one a few hundred
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}

_LOOKUP = """
SELECT c.id AS campaign_id, c.name, m.to_addrs[1] AS address
FROM dispatcher.campaigns c
LEFT JOIN dispatcher.messages m ON m.id = $2 AND m.campaign_id = c.id
WHERE c.id = $1
"""


def unsubscribe_reason(campaign_id: int) -> str:
    """The suppression reason (it says "unsubscribed", so webhooks send an `unsubscribed`)."""
    return f"unsubscribed (one-click, campaign {campaign_id})"


@dataclass(frozen=True, slots=True)
class _Recipient:
    campaign_id: int
    address: str


def _page(status: int, title: str, body: str) -> web.Response:
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em">'
        f'<h1 style="font-size:1.4em">{html.escape(title)}</h1>{body}</body></html>'
    )
    return web.Response(
        status=status, text=text, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _refused(request: web.Request, status: int, why: str, title: str) -> web.Response:
    log.warning("unsubscribe.refused", status=status, why=why, peer=request.remote)
    return _page(status, title, f"<p>{html.escape(why)}</p>")


def add_unsubscribe_routes(
    app: web.Application,
    tokens: UnsubscribeTokens,
    store: FeedbackStore,
    count: Callable[[str], None] | None = None,
) -> None:
    """Serve GET (confirmation page) and POST (one-click) on ``/unsubscribe/{token}``; `count`
    is told each POST's result (unsubscribed, repeat, refused) for the metrics."""

    def counted(result: str, response: web.Response) -> web.Response:
        if count is not None:
            count(result)
        return response

    async def recipient(request: web.Request) -> _Recipient | web.Response:
        try:
            target: TokenTarget = tokens.verify(request.match_info["token"])
        except BadToken as exc:
            return _refused(request, 403, f"This unsubscribe link is not valid ({exc}).", "Refused")
        try:
            row = await store.pool.fetchrow(_LOOKUP, target.campaign_id, target.message_id)
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("unsubscribe.lookup_failed", error=str(exc))
            return _page(503, "Try again later", "<p>The request could not be read now.</p>")
        if row is None:
            return _refused(request, 404, "The mailing this link came from is gone.", "Not found")
        if row["address"] is None:
            return _refused(
                request,
                410,
                "This link is from a mail no longer kept; reply to the mail to unsubscribe.",
                "Link expired",
            )
        return _Recipient(target.campaign_id, row["address"])

    async def page(request: web.Request) -> web.Response:
        found = await recipient(request)
        if isinstance(found, web.Response):
            return found
        # No address on the page: whoever holds a forwarded mail should not learn it here.
        form = (
            "<p>Stop receiving this mailing?</p>"
            '<form method="post">'
            f'<input type="hidden" name="{ONE_CLICK_FIELD}" value="{ONE_CLICK_VALUE}">'
            '<button type="submit" style="font-size:1.1em;padding:.5em 1.2em">Unsubscribe'
            "</button></form>"
        )
        return _page(200, "Unsubscribe", form)

    async def one_click(request: web.Request) -> web.Response:
        found = await recipient(request)
        if isinstance(found, web.Response):
            return counted("refused", found) if found.status < 500 else found
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            return counted("refused", _refused(request, 413, "The body is too large.", "Refused"))
        try:
            form = await request.post()
        except (ValueError, web.HTTPException):
            form = None
        if form is None or form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
            why = (
                f"A one-click unsubscribe posts the form field {ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"
            )
            return counted("refused", _refused(request, 400, why + " (RFC 8058).", "Bad request"))
        try:
            added = await store.suppress([found.address], unsubscribe_reason(found.campaign_id))
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("unsubscribe.suppress_failed", error=str(exc))
            return _page(503, "Try again later", "<p>The request could not be saved now.</p>")
        log.info(
            "unsubscribe.received",
            campaign_id=found.campaign_id,
            new=bool(added),  # False: already suppressed (a repeat, or for another reason)
            peer=request.remote,
        )
        page = _page(200, "Unsubscribed", "<p>No more mail will be sent to this address.</p>")
        return counted("unsubscribed" if added else "repeat", page)

    path = UNSUBSCRIBE_PATH + "{token}"
    app.router.add_get(path, page)
    app.router.add_post(path, one_click)
