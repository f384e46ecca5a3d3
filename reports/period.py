"""Report periods as people write them: `--from 2030-01-01 --to 2030-01-31` is all of January
(a date given for `to` includes that whole day); full ISO-8601 times are taken as they are
(`to` is then exclusive). Times without a zone are UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_DAYS = 30


class PeriodError(ValueError):
    pass


def parse_moment(text: str, *, end: bool = False, what: str = "time") -> datetime:
    text = text.strip()
    if _DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise PeriodError(f"{what}: not a date: {text!r}") from None
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1) if end else moment
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{what}: not an ISO-8601 date or time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_period(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """(start, exclusive end); defaults: `to` = today (whole day), `from` = 30 days earlier."""
    stop = parse_moment(end, end=True, what="to") if end else parse_moment(
        now.date().isoformat(), end=True)
    begin = parse_moment(start, what="from") if start else stop - timedelta(days=DEFAULT_DAYS)
    if stop <= begin:
        raise PeriodError("the period is empty: `to` must come after `from`")
    return begin.astimezone(UTC), stop.astimezone(UTC)
