"""The checks of this installation's own set-up around SES: the configuration set and its event
destination, the feedback path, the reputation guard. Pure."""

from __future__ import annotations

from dispatcher.doctor.facts import Check, Facts

FEEDBACK_TYPES = frozenset({"BOUNCE", "COMPLAINT"})
AWS_BOUNCE_REVIEW = 0.05  # AWS reviews an account at these rates (SES-FACTS.md)
AWS_COMPLAINT_REVIEW = 0.001

# -- events, feedback, guard ---------------------------------------------------------------------


def _destination_command(set_name: str, facts: Facts) -> str:
    topic = (facts.feedback.topics or (f"arn:aws:sns:{facts.region}:ACCOUNT-ID:ses-feedback",))[0]
    return (
        f"aws sesv2 create-configuration-set-event-destination --configuration-set-name "
        f"{set_name} --event-destination-name dispatcher-feedback --event-destination "
        '\'{"Enabled":true,"MatchingEventTypes":["BOUNCE","COMPLAINT","DELIVERY","REJECT",'
        f'"RENDERING_FAILURE","DELIVERY_DELAY"],"SnsDestination":{{"TopicArn":"{topic}"}}}}\' '
        f"--region {facts.region}"
    )


def configuration_set_checks(facts: Facts) -> list[Check]:
    """ses.configuration_set: it exists, sends, and publishes bounces and complaints."""
    region = facts.region
    found = facts.configuration_set
    if facts.configuration_set_error is not None:
        name = found.name if found is not None else "?"
        return [
            Check(
                "configuration_set",
                name,
                "warn",
                f"could not read configuration set {name}: {facts.configuration_set_error}",
            )
        ]
    if found is None:
        return [
            Check(
                "configuration_set",
                "ses.configuration_set",
                "warn",
                "no default configuration set (ses.configuration_set): SES returns our "
                "dispatcher_id tag only in a configuration set's events",
                (
                    f"aws sesv2 create-configuration-set --configuration-set-name dispatcher "
                    f"--region {region}",
                    _destination_command("dispatcher", facts),
                    'then in the config: [ses] configuration_set = "dispatcher" (or '
                    "DISPATCHER_SES__CONFIGURATION_SET=dispatcher)",
                ),
            )
        ]
    name = found.name
    if not found.exists:
        return [
            Check(
                "configuration_set",
                name,
                "fail",
                f"configuration set {name} (ses.configuration_set) does not exist in {region}: "
                "SES refuses every message that names it",
                (
                    f"aws sesv2 create-configuration-set --configuration-set-name {name} "
                    f"--region {region}",
                    _destination_command(name, facts),
                ),
            )
        ]
    out: list[Check] = []
    if found.sending_enabled:
        out.append(Check("configuration_set", name, "ok", f"configuration set {name} exists"))
    else:
        out.append(
            Check(
                "configuration_set",
                name,
                "fail",
                f"sending is paused for configuration set {name}",
                (
                    f"aws sesv2 put-configuration-set-sending-options --configuration-set-name "
                    f"{name} --sending-enabled --region {region}",
                ),
            )
        )
    useful = [d for d in found.destinations if d.enabled and d.types >= FEEDBACK_TYPES]
    if not useful:
        out.append(
            Check(
                "event_destination",
                name,
                "warn",
                f"configuration set {name} has no enabled event destination for BOUNCE and "
                "COMPLAINT: its bounces reach neither the suppression list nor the guard",
                (_destination_command(name, facts),),
            )
        )
        return out
    topics = set(facts.feedback.topics)
    foreign = [
        d for d in useful if d.kind == "SnsDestination" and topics and d.target not in topics
    ]
    if foreign and len(foreign) == len(useful):
        targets = [str(d.target) for d in foreign]
        listed = ", ".join(targets)
        return [
            *out,
            Check(
                "event_destination",
                name,
                "warn",
                f"{name} publishes bounces and complaints to {listed}, which "
                "feedback.allowed_topics does not list: the daemon refuses them",
                (f"add it to feedback.allowed_topics: {','.join([*topics, *targets])}",),
            ),
        ]
    shown = ", ".join(
        f"{d.name} ({d.kind.removesuffix('Destination')} {d.target or ''})".replace(" )", ")")
        for d in useful
    )
    out.append(
        Check(
            "event_destination", name, "ok", f"{name} publishes bounces and complaints to {shown}"
        )
    )
    return out


def feedback_check(facts: Facts) -> Check:
    """The way bounces and complaints come back: the SNS endpoint or the SQS queue."""
    fb = facts.feedback
    if fb.sqs_queue_url:
        return Check(
            "feedback",
            "feedback",
            "ok",
            f"feedback through SQS {fb.sqs_queue_url} (topics {', '.join(fb.topics)})",
        )
    if fb.enabled:
        where = f"{fb.listen_host}:{fb.listen_port}{fb.path}"
        topics = ", ".join(fb.topics)
        if facts.feedback_listening is False:
            return Check(
                "feedback",
                "feedback",
                "warn",
                f"the SNS endpoint for {topics} is {where}, but nothing listens there: SNS "
                "retries for a while, then drops the bounces and complaints",
                (
                    "start the daemon (dispatcher run) with [feedback] enabled, and reach it from "
                    f"SNS over HTTPS (a proxy to {where} if it listens on loopback)",
                ),
            )
        return Check(
            "feedback",
            "feedback",
            "ok",
            f"the SNS endpoint {where} answers, for {topics} (SNS must reach it over HTTPS from "
            "outside: the SNS console shows the subscription Confirmed once it did)",
        )
    return Check(
        "feedback",
        "feedback",
        "fail",
        "no feedback path: bounces and complaints reach neither the suppression list nor the "
        "guard, and the same bad addresses are mailed again",
        (
            '[feedback] enabled = true and allowed_topics = "arn:aws:sns:REGION:ACCOUNT:TOPIC", '
            "with an SNS HTTPS subscription of that topic to this daemon's endpoint",
            'or for SNS -> SQS: [feedback] sqs_queue_url = "https://sqs...." and allowed_topics',
        ),
    )


def guard_check(facts: Facts) -> Check:
    """The reputation guard is on and trips before AWS reviews the account."""
    guard = facts.guard
    if not guard.enabled:
        return Check(
            "guard",
            "guard",
            "warn",
            "the reputation guard is off: nothing pauses a campaign whose bounces or complaints "
            "approach AWS's review levels",
            ("[guard] enabled = true (or DISPATCHER_GUARD__ENABLED=true)",),
        )
    levels = f"bounces {guard.bounce_threshold:.2%}, complaints {guard.complaint_threshold:.2%}"
    late = [
        key
        for key, value, aws in (
            ("guard.bounce_threshold", guard.bounce_threshold, AWS_BOUNCE_REVIEW),
            ("guard.complaint_threshold", guard.complaint_threshold, AWS_COMPLAINT_REVIEW),
            ("guard.campaign_bounce_threshold", guard.campaign_bounce_threshold, AWS_BOUNCE_REVIEW),
            (
                "guard.campaign_complaint_threshold",
                guard.campaign_complaint_threshold,
                AWS_COMPLAINT_REVIEW,
            ),
        )
        if value >= aws
    ]
    if late:
        return Check(
            "guard",
            "guard",
            "warn",
            f"the guard is on ({levels}) but {', '.join(late)} trips at or after AWS's review "
            "level (bounces 5 %, complaints 0.1 %)",
            ("lower them, e.g. the defaults: 0.04 and 0.0008",),
        )
    return Check("guard", "guard", "ok", f"the reputation guard is on ({levels})")
