"""A start-up failure with every credential in hand: B2 out of reach, as on a node whose network
is down. Both workers' log tests start a real worker process with it."""

from __future__ import annotations

import socket

#: The credentials (B2's key id is half of one); none may show in any log line.
B2_KEY_ID = "0042keyid-visible-in-traces"
B2_APP_KEY = "K0042-b2-application-key-secret"
INTERNAL_API_KEY = "internal-api-key-secret-0042"
SECRETS = (B2_KEY_ID, B2_APP_KEY, INTERNAL_API_KEY)
#: What the failure must still say, in both log formats.
REASON = "could not authorise with B2 as B2_KEY_ID"


def unreachable_b2_env() -> dict[str, str]:
    """B2's variables, with B2's HTTPS sent to a proxy on a loopback port where nothing listens:
    b2sdk's ``authorize_account`` fails (after its own retries, some 8 s) with the keys in its
    frames, and nothing leaves the machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    return {
        "B2_KEY_ID": B2_KEY_ID,
        "B2_APP_KEY": B2_APP_KEY,
        "B2_BUCKET_NAME": "fastwan-test-outputs",
        "HTTPS_PROXY": f"http://127.0.0.1:{closed_port}",
        "NO_PROXY": "",
    }
