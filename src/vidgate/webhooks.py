"""Verify vidgate's webhooks in your own receiver (and sign them, on the server).

vidgate signs each delivery the Standard Webhooks way (https://www.standardwebhooks.com)::

    from vidgate.webhooks import WebhookVerificationError, verify

    try:
        event = verify(body_bytes, request.headers, secret="whsec_...")
    except WebhookVerificationError:
        ...  # answer 400 and ignore the delivery
    if event.type == "video.completed":
        print(event.data.run_id, event.data.video_url)

Pass the body exactly as received. The implementation lives in
:mod:`vidgate.client._webhooks`; this module is its public name.
"""

from vidgate.client._errors import WebhookVerificationError
from vidgate.client._webhooks import (
    DEFAULT_TOLERANCE_S,
    ID_HEADER,
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "ID_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookEvent",
    "WebhookVerificationError",
    "sign",
    "verify",
]
