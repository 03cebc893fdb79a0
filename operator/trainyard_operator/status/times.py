"""RFC 3339 timestamps as the API server writes them, to and from aware datetimes.

Shared by the status logic (conditions, start and completion times, TTL and deadlines) and
the pod view; kept apart so both use the same second-precision UTC format.
"""

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """The API server's format: UTC, second precision, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (with Z or an offset, with or without fractions)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def seconds_since(text: str | None, now: datetime) -> float | None:
    """Seconds from an RFC 3339 timestamp to now; None when the timestamp is absent."""
    if not text:
        return None
    return (now - parse_time(text)).total_seconds()
