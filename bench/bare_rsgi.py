"""The HTTP ceiling for bench/http.py: a bare granian RSGI app that answers every request with
the same bytes (one stored order's JSON, read at import from the file named by BENCH_BODY_FILE).
No routing, no framework, no cache lookup: the fastest this machine can serve those bytes.

    BENCH_BODY_FILE=order.json python -m granian --interface rsgi --loop uvloop \\
        --workers 2 --no-ws bench.bare_rsgi:app
"""

import os
from pathlib import Path
from typing import Any

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
HEADERS = [("content-type", "application/json")]


async def app(scope: Any, protocol: Any) -> None:
    """RSGI entry point: the stored order for any HTTP request."""
    protocol.response_bytes(200, HEADERS, BODY)
