"""The HTTP ceiling for bench/http.py and the steps from it to ours: a granian RSGI app that
answers with one stored order's JSON (read at import from the file named by BENCH_BODY_FILE),
doing what BENCH_APP names first:

- `bare` (the default), the ceiling: the same bytes for every request. No routing, no
  framework, no cache lookup: the fastest this machine's granian can serve those bytes.
- `dict`: our path check, then a plain `dict.get` over every stored uid (read from
  BENCH_UIDS_FILE, each mapped to the same bytes).
- `cache`: our path check, then the shared cache's native `get` on the region named by
  CACHE_NAME, which a running service owns and has filled.

Between them they split a hit's time into granian, the path, the lookup and the rest of ours.

    BENCH_BODY_FILE=order.json python -m granian --interface rsgi --loop uvloop \\
        --workers 2 --no-ws bench.bare_rsgi:app
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
HEADERS = [("content-type", "application/json")]
PREFIX = "/order/"
UID_AT = len(PREFIX)


async def bare(scope: Any, protocol: Any) -> None:
    """The stored order for any HTTP request."""
    protocol.response_bytes(200, HEADERS, BODY)


def path_app(lookup: Callable[[str], bytes | None]) -> Callable[[Any, Any], Any]:
    """Our hit path up to the lookup, then the bytes found (404 for a miss)."""

    async def answer(scope: Any, protocol: Any) -> None:
        path: str = scope.path
        if path.startswith(PREFIX) and scope.method in {"GET", "HEAD"}:
            body = lookup(path[UID_AT:])
            if body is not None:
                protocol.response_bytes(200, HEADERS, body)
                return
        protocol.response_bytes(404, HEADERS, b"{}")

    return answer


def build(kind: str) -> Callable[[Any, Any], Any]:
    """The RSGI entry point BENCH_APP names."""
    if kind == "bare":
        return bare
    if kind == "dict":
        uids = Path(os.environ["BENCH_UIDS_FILE"]).read_text().split()
        return path_app(dict.fromkeys(uids, BODY).get)
    if kind == "cache":
        from service.cache import SharedCache  # noqa: PLC0415 -- only this app needs it

        return path_app(SharedCache.attach(os.environ["CACHE_NAME"]).get)
    raise SystemExit(f"BENCH_APP={kind!r}: expected bare, dict or cache")


app = build(os.environ.get("BENCH_APP", "bare"))
