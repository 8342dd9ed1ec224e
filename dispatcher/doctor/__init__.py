"""`dispatcher doctor`: a pre-flight of a new or changed set-up, each check ok / warn / fail with
the exact fix.

Pure (facts in, checks out): `facts` (the data), `identities`, `records` (the DNS records SES
needs), `checks` (account, identities; `evaluate` runs them all), `dns_checks` (DKIM, MAIL FROM,
DMARC), `setup_checks` (configuration set, feedback, guard), `draft` (the production-access
request). I/O: `dns` (dnspython, a configurable resolver), `gather` (SES, DNS, the database).
"""
