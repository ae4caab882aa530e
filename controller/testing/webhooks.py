"""A run-webhook sender, as a form backend or another service would be: signs a JSON body
for `/hooks/{namespace}/{workflow}/{environment}/{trigger}` and posts it. Shared by the
e2e tests, the demo and the benchmark."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from controller.model.triggers import sign


def deliver(
    port: int,
    path: str,
    body: bytes,
    secret: str,
    *,
    delivery: str | None = None,
    sent_at: float | None = None,
    signed_path: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST a signed delivery to the operator on loopback; (HTTP status, JSON answer).
    `signed_path` signs another path than the one posted to (to test that it is refused);
    a connection failure is status 0."""
    delivery = delivery or uuid.uuid4().hex
    timestamp = str(int(sent_at if sent_at is not None else time.time()))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Flowpin-Delivery": delivery,
            "X-Flowpin-Timestamp": timestamp,
            "X-Flowpin-Signature": sign(secret, delivery, timestamp, body, signed_path or path),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return int(error.code), json.loads(error.read() or b"{}")
        except ValueError:
            return int(error.code), {}
    except OSError:
        return 0, {}
