"""Pure decisions of the run triggers (controller.model.triggers): webhook signatures,
schedule catch-up and run names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.model.schedule import next_fire
from controller.model.triggers import (
    check_signature,
    schedule_run_name,
    schedule_step,
    sign,
    webhook_path,
    webhook_run_name,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cret"
DELIVERY = "3f2a9c4e-delivery"
BODY = b'{"ref": "main"}'
STAMP = str(int(T0.timestamp()))
PATH = "/hooks/ns/deploy/prod/github"

MISSING = "X-Flowpin-Delivery, X-Flowpin-Timestamp and X-Flowpin-Signature are required"
MISMATCH = "signature does not match the trigger's secret"
SKEW = "timestamp is more than 5 minutes from the server's clock"
NOT_SECONDS = "X-Flowpin-Timestamp must be Unix seconds"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------------- signatures


def test_sign_is_hmac_sha256_over_delivery_timestamp_path_and_body() -> None:
    signature = sign(SECRET, DELIVERY, STAMP, BODY, PATH)
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", signature)
    assert signature == sign(SECRET, DELIVERY, STAMP, BODY, PATH)
    # the known answer, computed independently (as docs/runs.md signs from a shell):
    # printf '%s' '3f2a9c4e-delivery.1714564800./hooks/ns/deploy/prod/github.{"ref": "main"}' \
    #   | openssl dgst -sha256 -hmac s3cret
    assert signature == "sha256=" + (
        "21cf3da444a697164d85a2ee13f21e4a6775912c2fdb0ad359f355a4bee05804"
    )
    import hashlib
    import hmac

    signed = f"{DELIVERY}.{STAMP}.{PATH}.".encode() + BODY
    assert signature == "sha256=" + hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()


def test_webhook_path_is_the_request_path() -> None:
    assert webhook_path("ns", "deploy", "prod", "github") == PATH


def signed_with(
    secret: str = SECRET,
    delivery: str = DELIVERY,
    stamp: str = STAMP,
    body: bytes = BODY,
    path: str = PATH,
) -> str:
    return sign(secret, delivery, stamp, body, path)


@pytest.mark.parametrize(
    ("delivery", "stamp", "signature", "body", "now", "expected"),
    [
        # good
        (DELIVERY, STAMP, signed_with(), BODY, T0, None),
        (DELIVERY, STAMP, " " + signed_with() + "\n", BODY, T0, None),
        (DELIVERY, STAMP, signed_with(body=b""), b"", T0, None),
        # wrong secret, or anything signed changed on the way
        (DELIVERY, STAMP, signed_with(secret="other"), BODY, T0, MISMATCH),
        (DELIVERY, STAMP, signed_with(), BODY + b" ", T0, MISMATCH),
        ("another-delivery", STAMP, signed_with(), BODY, T0, MISMATCH),
        (DELIVERY, str(int(T0.timestamp()) + 1), signed_with(), BODY, T0, MISMATCH),
        (DELIVERY, STAMP, signed_with().upper(), BODY, T0, MISMATCH),
        (DELIVERY, STAMP, signed_with().replace("sha256=", "sha1="), BODY, T0, MISMATCH),
        (DELIVERY, STAMP, signed_with().removeprefix("sha256="), BODY, T0, MISMATCH),
        (DELIVERY, STAMP, "sha256=", BODY, T0, MISMATCH),
        # signed for another trigger, environment, workflow or namespace sharing the secret
        *[
            (DELIVERY, STAMP, signed_with(path=other), BODY, T0, MISMATCH)
            for other in (
                "/hooks/ns/deploy/prod/other",
                "/hooks/ns/deploy/staging/github",
                "/hooks/ns/release/prod/github",
                "/hooks/other/deploy/prod/github",
                "",
            )
        ],
        # missing headers
        (None, STAMP, signed_with(), BODY, T0, MISSING),
        (DELIVERY, None, signed_with(), BODY, T0, MISSING),
        (DELIVERY, STAMP, None, BODY, T0, MISSING),
        ("", STAMP, signed_with(), BODY, T0, MISSING),
        (DELIVERY, "", signed_with(), BODY, T0, MISSING),
        (DELIVERY, STAMP, "", BODY, T0, MISSING),
        # freshness: within 5 minutes either way
        (DELIVERY, STAMP, signed_with(), BODY, T0 + timedelta(minutes=5), None),
        (DELIVERY, STAMP, signed_with(), BODY, T0 - timedelta(minutes=5), None),
        (DELIVERY, STAMP, signed_with(), BODY, T0 + timedelta(minutes=5, seconds=1), SKEW),
        (DELIVERY, STAMP, signed_with(), BODY, T0 - timedelta(minutes=5, seconds=1), SKEW),
        (DELIVERY, STAMP, signed_with(), BODY, T0 + timedelta(days=3), SKEW),
        # a timestamp that is not integer Unix seconds (even correctly signed)
        *[
            (DELIVERY, stamp, signed_with(stamp=stamp), BODY, T0, NOT_SECONDS)
            for stamp in (
                "1714564800.5",
                "2024-05-01T12:00:00Z",
                "abc",
                "0x66322e80",
                "99999999999999999999",
                "-99999999999999",
            )
        ],
    ],
)
def test_check_signature(
    delivery: str | None,
    stamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
    expected: str | None,
) -> None:
    assert check_signature(SECRET, delivery, stamp, signature, body, PATH, now) == expected


# ------------------------------------------------------------------------- schedules


def reference_step(
    cron: str,
    tz: str,
    deadline: timedelta,
    last: datetime | None,
    now: datetime,
    not_before: datetime | None = None,
) -> tuple[datetime | None, datetime]:
    """Every fire in [now - deadline, now], one by one: slow, obviously right."""
    latest = None
    fire = next_fire(cron, tz, now - deadline - timedelta(microseconds=1))
    while fire <= now:
        latest = fire
        fire = next_fire(cron, tz, fire)
    if latest is not None and last is not None and latest <= last:
        latest = None
    if latest is not None and not_before is not None and latest <= not_before:
        latest = None
    return latest, next_fire(cron, tz, now)


MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("cron", "tz", "deadline", "last", "now", "due", "next_at"),
    [
        # on time
        (
            "0 9 * * *",
            "UTC",
            5 * MIN,
            None,
            "2024-05-01T09:00:00",
            "2024-05-01T09:00",
            "2024-05-02T09:00",
        ),
        (
            "0 9 * * *",
            "UTC",
            5 * MIN,
            None,
            "2024-05-01T09:00:30",
            "2024-05-01T09:00",
            "2024-05-02T09:00",
        ),
        # already fired: only once
        (
            "0 9 * * *",
            "UTC",
            5 * MIN,
            "2024-05-01T09:00",
            "2024-05-01T09:00:30",
            None,
            "2024-05-02T09:00",
        ),
        # late, but within the deadline (inclusive)
        (
            "0 9 * * *",
            "UTC",
            5 * MIN,
            "2024-04-30T09:00",
            "2024-05-01T09:05:00",
            "2024-05-01T09:00",
            "2024-05-02T09:00",
        ),
        # older than the deadline: skipped
        (
            "0 9 * * *",
            "UTC",
            5 * MIN,
            "2024-04-30T09:00",
            "2024-05-01T09:05:01",
            None,
            "2024-05-02T09:00",
        ),
        ("0 9 * * *", "UTC", 5 * MIN, None, "2024-05-01T15:00:00", None, "2024-05-02T09:00"),
        (
            "0 9 * * *",
            "UTC",
            12 * 60 * MIN,
            None,
            "2024-05-01T15:00:00",
            "2024-05-01T09:00",
            "2024-05-02T09:00",
        ),
        # after a long downtime: only the latest missed fire, one run
        (
            "*/5 * * * *",
            "UTC",
            60 * MIN,
            "2024-04-28T10:00",
            "2024-05-01T12:07:00",
            "2024-05-01T12:05",
            "2024-05-01T12:10",
        ),
        (
            "* * * * *",
            "UTC",
            timedelta(days=30),
            "2024-04-01T00:00",
            "2024-05-01T12:07:30",
            "2024-05-01T12:07",
            "2024-05-01T12:08",
        ),
        # no deadline: only a fire at this very moment
        (
            "0 9 * * *",
            "UTC",
            timedelta(0),
            None,
            "2024-05-01T09:00:00",
            "2024-05-01T09:00",
            "2024-05-02T09:00",
        ),
        ("0 9 * * *", "UTC", timedelta(0), None, "2024-05-01T09:00:01", None, "2024-05-02T09:00"),
        # an absurd deadline is no error
        (
            "0 0 1 1 *",
            "UTC",
            timedelta(days=999_999),
            None,
            "2024-05-01T12:00:00",
            "2024-01-01T00:00",
            "2025-01-01T00:00",
        ),
        # before the first fire in the window
        ("0 0 1 1 *", "UTC", 5 * MIN, None, "2024-05-01T12:00:00", None, "2025-01-01T00:00"),
        (
            "0 0 1 1 *",
            "UTC",
            timedelta(days=365),
            None,
            "2024-05-01T12:00:00",
            "2024-01-01T00:00",
            "2025-01-01T00:00",
        ),
        # Europe/Berlin: 09:00 local is 08:00Z in winter, 07:00Z in summer
        (
            "0 9 * * *",
            "Europe/Berlin",
            5 * MIN,
            None,
            "2024-03-30T08:00:10",
            "2024-03-30T08:00",
            "2024-03-31T07:00",
        ),
        (
            "0 9 * * *",
            "Europe/Berlin",
            5 * MIN,
            "2024-03-30T08:00",
            "2024-03-30T08:01:00",
            None,
            "2024-03-31T07:00",
        ),
        (
            "0 9 * * *",
            "Europe/Berlin",
            5 * MIN,
            None,
            "2024-10-26T07:00:10",
            "2024-10-26T07:00",
            "2024-10-27T08:00",
        ),
        # 02:30 does not exist on 31 March: it fires once, at the change (01:00Z)
        (
            "30 2 * * *",
            "Europe/Berlin",
            5 * MIN,
            None,
            "2024-03-31T00:59:00",
            None,
            "2024-03-31T01:00",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            5 * MIN,
            None,
            "2024-03-31T01:00:00",
            "2024-03-31T01:00",
            "2024-04-01T00:30",
        ),
        # 02:30 happens twice on 27 October: it fires at the first one only
        (
            "30 2 * * *",
            "Europe/Berlin",
            5 * MIN,
            None,
            "2024-10-27T00:30:05",
            "2024-10-27T00:30",
            "2024-10-28T01:30",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            5 * MIN,
            "2024-10-27T00:30",
            "2024-10-27T01:30:05",
            None,
            "2024-10-28T01:30",
        ),
        # ... while an every-hour schedule keeps its real-time cadence through both
        (
            "30 * * * *",
            "Europe/Berlin",
            5 * MIN,
            "2024-10-27T00:30",
            "2024-10-27T01:30:05",
            "2024-10-27T01:30",
            "2024-10-27T02:30",
        ),
    ],
)
def test_schedule_step(
    cron: str,
    tz: str,
    deadline: timedelta,
    last: str | None,
    now: str,
    due: str | None,
    next_at: str,
) -> None:
    last_fired = utc(last) if last else None
    got = schedule_step(cron, tz, deadline, last_fired, utc(now))
    assert got == (utc(due) if due else None, utc(next_at))
    if deadline <= timedelta(days=1):  # the reference is slow for long deadlines
        assert got == reference_step(cron, tz, deadline, last_fired, utc(now))


@pytest.mark.parametrize(
    ("cron", "tz"),
    [
        ("*/7 * * * *", "UTC"),
        ("0-10 9 * * 1-5", "Europe/Berlin"),
        ("30 2 * * *", "Europe/Berlin"),
        ("0 */3 * * *", "America/New_York"),
        ("0 0 29 2 *", "UTC"),
    ],
)
@pytest.mark.parametrize("deadline", [MIN, 5 * MIN, 90 * MIN, timedelta(days=2)])
def test_schedule_step_matches_a_fire_by_fire_reference(
    cron: str, tz: str, deadline: timedelta
) -> None:
    for now in (
        utc("2024-03-31T00:59:59"),
        utc("2024-03-31T01:00:00"),
        utc("2024-03-10T07:03:00"),
        utc("2024-10-27T01:30:00"),
        utc("2024-11-03T06:00:01"),
        utc("2024-02-29T00:01:00"),
        utc("2024-05-06T07:10:00"),
    ):
        assert schedule_step(cron, tz, deadline, None, now) == reference_step(
            cron, tz, deadline, None, now
        )


@pytest.mark.parametrize(
    ("cron", "deadline", "last", "not_before", "now", "due", "next_at"),
    [
        # activated between two fires: the fire before activation is not due...
        ("* * * * *", 5 * MIN, None, "12:00:30", "12:00:30", None, "12:01"),
        ("* * * * *", 5 * MIN, None, "12:00:30", "12:00:59", None, "12:01"),
        # ... the first fire after it is
        ("* * * * *", 5 * MIN, None, "12:00:30", "12:01:00", "12:01", "12:02"),
        ("* * * * *", 5 * MIN, None, "12:00:30", "12:01:20", "12:01", "12:02"),
        # activated at the very fire time: that fire is not due (at or before is not)
        ("* * * * *", 5 * MIN, None, "12:01:00", "12:01:00", None, "12:02"),
        ("* * * * *", 5 * MIN, None, "12:01:00", "12:01:05", None, "12:02"),
        ("* * * * *", 5 * MIN, None, "12:00:59.999999", "12:01:00", "12:01", "12:02"),
        # a daily schedule activated after today's time waits for tomorrow (as a CronJob
        # created at 09:02 does), however long its starting deadline
        ("0 9 * * *", 5 * MIN, None, "09:02:00", "09:03:00", None, "2024-05-02T09:00"),
        ("0 9 * * *", 24 * 60 * MIN, None, "09:02:00", "23:00:00", None, "2024-05-02T09:00"),
        # activated long ago, the operator was down over the fire: the catch-up still runs
        ("0 9 * * *", 5 * MIN, None, "08:59:00", "09:04:00", "09:00", "2024-05-02T09:00"),
        ("* * * * *", 5 * MIN, None, "2024-04-01T00:00", "12:07:30", "12:07", "12:08"),
        # the later of last_fired and not_before is the floor
        ("* * * * *", 5 * MIN, "12:05", "12:03:00", "12:06:10", "12:06", "12:07"),
        ("* * * * *", 5 * MIN, "12:05", "12:06:30", "12:06:40", None, "12:07"),
        ("* * * * *", 5 * MIN, "12:06", "12:03:00", "12:06:40", None, "12:07"),
        # an activation time ahead of this replica's clock: nothing before it fires
        ("* * * * *", 5 * MIN, None, "12:03:10", "12:03:05", None, "12:04"),
        # no activation time known: as before
        ("* * * * *", 5 * MIN, None, None, "12:03:05", "12:03", "12:04"),
    ],
)
def test_schedule_step_never_fires_before_activation(
    cron: str,
    deadline: timedelta,
    last: str | None,
    not_before: str | None,
    now: str,
    due: str | None,
    next_at: str,
) -> None:
    def moment(text: str) -> datetime:
        return utc(text if "T" in text else f"2024-05-01T{text}")

    floor = moment(not_before) if not_before else None
    last_fired = moment(last) if last else None
    got = schedule_step(cron, "UTC", deadline, last_fired, moment(now), not_before=floor)
    assert got == (moment(due) if due else None, moment(next_at))
    assert got == reference_step(cron, "UTC", deadline, last_fired, moment(now), floor)


def test_a_newly_active_version_fires_at_its_next_time_then_on_schedule() -> None:
    """The scheduler asks on activation, then at each next time: the first run is for the
    first fire time after activation, then one per fire time."""
    activated = utc("2024-05-01T12:00:30")
    last: datetime | None = None
    started: list[datetime] = []
    now = activated
    for _ in range(4):
        due, next_at = schedule_step("* * * * *", "UTC", 5 * MIN, last, now, not_before=activated)
        if due is not None:
            started.append(due)
            last = due
        now = next_at
    assert started == [utc("2024-05-01T12:01"), utc("2024-05-01T12:02"), utc("2024-05-01T12:03")]


def test_no_burst_after_a_long_downtime() -> None:
    """The operator asks every time it looks again; after days down, one run at most."""
    cron, deadline = "*/5 * * * *", timedelta(hours=6)
    last: datetime | None = utc("2024-04-28T10:00:00")
    now = utc("2024-05-01T12:07:00")
    started: list[datetime] = []
    for _ in range(10):  # however often it asks at this moment
        due, next_at = schedule_step(cron, "UTC", deadline, last, now)
        if due is not None:
            started.append(due)
            last = due
    assert started == [utc("2024-05-01T12:05:00")]
    assert next_at == utc("2024-05-01T12:10:00")
    # and then it runs on schedule
    due, _ = schedule_step(cron, "UTC", deadline, last, next_at)
    assert due == next_at


# ------------------------------------------------------------------------- run names

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LONGEST = "w" * 62 + "1"


def valid(name: str) -> bool:
    return len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name) is not None


@pytest.mark.parametrize(
    ("workflow", "environment", "trigger", "delivery"),
    [
        ("deploy", "prod", "github", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("deploy", "prod", "hook", "UPPER/Case with spaces & ünïcode"),
        ("a", "b", "c", ""),
        (LONGEST, LONGEST, "t" * 63, "x" * 1000),
    ],
)
def test_webhook_run_names(workflow: str, environment: str, trigger: str, delivery: str) -> None:
    name = webhook_run_name(workflow, environment, trigger, delivery)
    assert valid(name), name
    assert name.startswith(f"{workflow}-{environment}-")
    assert name == webhook_run_name(workflow, environment, trigger, delivery)  # deterministic
    assert name != webhook_run_name(workflow, environment, trigger, delivery + "2")
    assert name != webhook_run_name(workflow, environment, trigger + "2", delivery)
    assert name != webhook_run_name(workflow, environment + "2", trigger, delivery)


@pytest.mark.parametrize(
    ("workflow", "environment", "trigger"),
    [("deploy", "prod", "nightly"), ("a", "b", "c"), (LONGEST, LONGEST, "t" * 63)],
)
def test_schedule_run_names(workflow: str, environment: str, trigger: str) -> None:
    fire = utc("2024-10-27T00:30:00")
    name = schedule_run_name(workflow, environment, trigger, fire)
    assert valid(name), name
    assert name.endswith("-202410270030")
    # the same instant however it is expressed, on any replica: the same name
    assert name == schedule_run_name(
        workflow, environment, trigger, fire.astimezone(ZoneInfo("Europe/Berlin"))
    )
    # the two 02:30 of a fall-back night, another trigger, another minute: other names
    assert name != schedule_run_name(workflow, environment, trigger, fire + timedelta(hours=1))
    assert name != schedule_run_name(workflow, environment, trigger + "x", fire)
    assert name != schedule_run_name(workflow, environment, trigger, fire + MIN)
