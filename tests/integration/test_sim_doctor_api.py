"""What `dispatcher doctor` asks the simulator, answered as SES does: identities listed with their
status, a domain's own DKIM tokens and a DKIM state of its own, a configuration set's event
destinations (issue 17 item 4)."""

from __future__ import annotations

from tests.support.sim import SimFactory, clients

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


async def test_identities_dkim_and_event_destinations(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(configuration_sets=("cs",)) as sim:
        await sim.create_identity("pending.example")
        await sim.admin(
            "POST",
            "/_sim/identities",
            {"identity": "example.com", "dkim_status": "TEMPORARY_FAILURE"},
        )
        async with clients(sim, paced=True) as (_, ses):
            listed = await ses.list_email_identities()
            verified = await ses.get_email_identity(EmailIdentity="example.com")
            pending = await ses.get_email_identity(EmailIdentity="pending.example")
            assert (await ses.get_configuration_set(ConfigurationSetName="cs"))[
                "SendingOptions"
            ] == {"SendingEnabled": True}
            empty = await ses.get_configuration_set_event_destinations(ConfigurationSetName="cs")
            await ses.create_configuration_set_event_destination(
                ConfigurationSetName="cs",
                EventDestinationName="fb",
                EventDestination={
                    "Enabled": True,
                    "MatchingEventTypes": ["BOUNCE", "COMPLAINT"],
                    "SnsDestination": {"TopicArn": TOPIC},
                },
            )
            after = await ses.get_configuration_set_event_destinations(ConfigurationSetName="cs")

    statuses = {i["IdentityName"]: i["VerificationStatus"] for i in listed["EmailIdentities"]}
    assert statuses == {"example.com": "SUCCESS", "pending.example": "PENDING"}
    assert verified["VerificationStatus"] == "SUCCESS"
    assert verified["DkimAttributes"]["Status"] == "TEMPORARY_FAILURE"
    assert pending["DkimAttributes"]["Status"] == "PENDING"
    mine, theirs = verified["DkimAttributes"]["Tokens"], pending["DkimAttributes"]["Tokens"]
    assert len(mine) == 3 and all(len(t) == 32 for t in mine) and not set(mine) & set(theirs)
    assert empty["EventDestinations"] == []
    assert after["EventDestinations"] == [
        {
            "Name": "fb",
            "Enabled": True,
            "MatchingEventTypes": ["BOUNCE", "COMPLAINT"],
            "SnsDestination": {"TopicArn": TOPIC},
        }
    ]
