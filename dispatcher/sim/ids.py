"""Request ids shaped like AWS's (a UUID), unique per process without a uuid4() per request."""

from __future__ import annotations

import itertools
import os

_prefix = os.urandom(10).hex()
_PREFIX = f"{_prefix[:8]}-{_prefix[8:12]}-{_prefix[12:16]}-{_prefix[16:20]}-"
_seq = itertools.count(1)


def request_id() -> str:
    return f"{_PREFIX}{next(_seq):012x}"
