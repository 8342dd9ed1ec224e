"""An Amazon SES simulator (v1 Query/XML and v2 REST-JSON) for tests, benchmarks and rehearsals.

Layers. Pure (no aiohttp, no I/O): `settings` (every knob, validated), `limits` (rate bucket,
rolling quota), `account` (identities, templates, configuration sets, suppression list, account
state), `state` (the send decision), `errors` (each refusal in SES's v1 and v2 wire forms),
`events` (SES event JSON in both formats), `faults` (latency model, injected faults). I/O:
`sns` (signing, with `cryptography`), `publisher` (SNS POSTs, JSONL file), the protocol layers
`v1`, `v2` (`v2_setup`: reads of the set-up) and `admin`, `server` (aiohttp; latency and
faults as a middleware, `inject`), `front` (the listening socket's protocol: the two send
routes answered without aiohttp's machinery, every other request handed to it), `cli`,
`launch` (start it for a caller, as a child process or in this loop: the demo, bench, tests),
and `provision` (set its account up through the SES API, as a user would).

Defaults: a production account as strict as SES's: 14/s, 50,000/day, 1 s of burst; senders
(From/Source, Return-Path, FeedbackForwardingEmailAddress, a raw message's From and Sender) must
be verified; configuration sets must exist (X-SES-CONFIGURATION-SET of raw messages too); SES's
address rules; each non-send action (all but SendEmail, SendRawEmail, SendTemplatedEmail) at most
once a second. New identities (CreateEmailIdentity, Verify*Identity) stay PENDING, with their
DKIM and MAIL FROM, until POST /_sim/identities/NAME/verify (`--auto-verify`: at once);
`provision.setup_account` does both as a user would. `--lenient` accepts unverified senders and
unknown configuration sets and drops the 1 request/s limit; `--sandbox` (or the other flags, see
`--help`) opts in to more. No latency, no faults, no events by default.

Admin and inspection (never delayed or faulted): GET /_sim/messages, /_sim/stats, /_sim/config
(POST to change any setting), POST /_sim/reset[?account=1]; GET/POST /_sim/account
(sending_enabled, enforcement_status, sandbox), /_sim/identities (POST: a verified identity
directly, the documented back door; POST /_sim/identities/NAME/verify; DELETE .../NAME),
/_sim/configuration-sets, /_sim/templates, /_sim/suppressed, /_sim/subscriptions (DELETE
/_sim/subscriptions/ID); GET /_sim/events (POST {"record": true} to keep them without a
subscriber), /_sim/deliveries; POST /_sim/storm {"seconds": N}; GET /_sim/sns/certificate.pem
(the certificate a receiver pins); the SubscribeURL GET /_sim/sns/confirm?...
"""

from __future__ import annotations

from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import SimState

__all__ = ["SimServer", "SimSettings", "SimState", "build_app"]


def __getattr__(name: str) -> object:
    # The server imports aiohttp; load it only when asked so the pure parts stay light.
    if name in ("SimServer", "build_app", "serve"):
        from dispatcher.sim import server

        return getattr(server, name)
    raise AttributeError(name)
