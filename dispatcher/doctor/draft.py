"""A draft of the request for SES production access, filled in from this installation. Pure.

AWS's form (SES console > Account dashboard > Request production access, or sesv2
PutAccountDetails) asks for the mail type (MARKETING or TRANSACTIONAL), a website URL, a use case
description, additional contacts and a contact language; the developer guide asks the use case
description to answer: how the list is built or acquired (how recipients opted in), how bounces
and complaints are handled, how recipients unsubscribe and how those requests are handled, and
how the amount was chosen. AWS turns down requests that leave these unanswered, so what the
installation cannot know is marked [FILL IN: ...] rather than left out.
"""

from __future__ import annotations

from dispatcher.doctor.facts import Facts

FILL = "[FILL IN: {}]"


def production_access_draft(facts: Facts) -> list[str]:
    """The draft as lines of text, ready to paste field by field."""
    usage = facts.usage
    domains = sorted({s.domain for s in facts.senders}) or [FILL.format("your sending domain")]
    campaigns = usage is not None and usage.campaigns > 0
    mail_type = "MARKETING" if campaigns else "TRANSACTIONAL"
    fb = facts.feedback
    guard = facts.guard
    if fb.sqs_queue_url:
        intake = (
            f"SES publishes them to SNS ({', '.join(fb.topics)}), which delivers to the SQS "
            f"queue {fb.sqs_queue_url}; our dispatcher reads the queue, checks each SNS "
            "signature and topic, and records the event before deleting it."
        )
    elif fb.enabled:
        intake = (
            f"SES publishes them to SNS ({', '.join(fb.topics)}), subscribed over HTTPS to our "
            "dispatcher, which checks each SNS signature and topic before it records the event."
        )
    else:
        intake = FILL.format(
            "how bounce and complaint notifications reach you; this installation has no "
            "feedback path yet ([feedback] is off): set it up before sending the request"
        )
    if guard.enabled:
        guarding = (
            f"A reputation guard computes hard-bounce and complaint rates over the last "
            f"{guard.window_hours:g} hours and pauses campaigns at {guard.bounce_threshold:.1%} "
            f"bounces or {guard.complaint_threshold:.2%} complaints, below AWS's review levels "
            "(5 % and 0.1 %); resuming takes a person's decision."
        )
    else:
        guarding = FILL.format(
            "how you stop sending when bounce or complaint rates rise; the reputation guard "
            "of this installation is off ([guard] enabled = false)"
        )
    suppressed = f" (the list holds {usage.suppressed} addresses today)" if usage else ""
    unsubscribe = (
        "Campaign mail carries a List-Unsubscribe header with one-click unsubscribe "
        "(List-Unsubscribe-Post, RFC 8058) and a link in the body; an unsubscribe puts the "
        "address on the suppression list at once."
        if campaigns
        else "We send transactional mail only (account and order messages a recipient "
        "triggers); it carries no marketing. "
        + FILL.format("how recipients stop mail they no longer want, e.g. account settings")
    )
    if campaigns and usage is not None and usage.campaigns_with_unsubscribe < usage.campaigns:
        unsubscribe += (
            f" Note: {usage.campaigns - usage.campaigns_with_unsubscribe} of {usage.campaigns} "
            "campaigns here were created without --unsubscribe-url: give every campaign one."
        )
    volume = (
        f"we sent {usage.sent_last_24_hours} messages in the last 24 hours; "
        if usage is not None and usage.sent_last_24_hours
        else ""
    )
    lines = [
        f"Region: {facts.region} (the sandbox is per region: request each region you send from)",
        f"Mail type: {mail_type}"
        + (" (campaigns are sent from this installation)" if campaigns else ""),
        f"Website URL: https://{domains[0]}/ " + FILL.format("the site of the business that sends"),
        "Additional contacts: " + FILL.format("up to 4 addresses AWS may write to about SES"),
        "Preferred contact language: English",
        "Use case description:",
        "  What we send: "
        + (
            "transactional mail and newsletters/campaigns"
            if campaigns
            else "transactional mail (account, order and notification messages)"
        )
        + f" from {', '.join(domains)}, through our own dispatcher on the SES API; "
        + FILL.format("who the recipients are and what the mail is about"),
        "  How recipients opted in / how the list is built: "
        + FILL.format(
            "e.g. customers who created an account on our site and confirmed their address; "
            "we never buy, rent or scrape lists"
        ),
        "  Bounces and complaints: " + intake + " Every hard bounce and every complaint puts "
        "the address on our suppression list, which every send checks first, so it is never "
        "mailed again; an address that soft-bounces "
        f"{usage.transient_limit if usage else 3} times in "
        f"{usage.transient_days if usage else 7:g} days is suppressed too{suppressed}. SES's "
        "account-level suppression list is imported into ours as well. " + guarding,
        "  Unsubscribe: " + unsubscribe,
        "  Volume and the amount requested: "
        + volume
        + FILL.format("expected messages per day and peak per second, and why that amount"),
        "Acknowledge the AWS Service Terms and Acceptable Use Policy (a box in the form).",
    ]
    return lines
