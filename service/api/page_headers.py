"""The headers every page and asset carries, wherever it is served (the API's Litestar app,
the internal metrics listener): a strict Content-Security-Policy (no inline script, no foreign
origin) and no sniffing or referrers. No framework import, so the runner can use it."""

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
