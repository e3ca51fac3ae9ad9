"""`digest import FILE.csv` and `digest export`: many subscribers at once.

Columns (a header line names them; only ``email`` and ``rules`` are required): email, name, rules (separated
by ``;``), cadence (daily|weekly), weekday (0-6 or mon..sun), send_time (HH:MM), timezone (IANA), status.
Every row is checked before anything is written; each bad one is reported as ``FILE.csv:LINE: problem`` (a
rule with its caret) and then nothing is imported. The rows are written in one transaction.

Without ``--confirmed`` new addresses are stored ``pending`` (they get no digest until they confirm); with
it the operator vouches for their consent and they are ``active``. A row may also say ``paused``,
``unsubscribed`` or ``bounced`` (a suppression list). An address that unsubscribed or bounced is never
reactivated by an import, and the config's ``[[subscribers]]`` are left to the config.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.addresses import normalize_email
from digest.clock import Clock, utc_now
from digest.errors import DigestError, RuleError, SubscriberError
from digest.models import SubscriberStatus
from digest.rules import parse_rule
from digest.sendtimes import parse_send_time, parse_timezone
from digest.store.db import Engine
from digest.store.subscriber_import import ImportResult, ImportRow, export_rows, import_rows

COLUMNS = ("email", "name", "rules", "cadence", "weekday", "send_time", "timezone", "status")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RULES = 20
#: Statuses an import may ask for (``active`` becomes ``pending`` without --confirmed).
_STATUSES = {s.value for s in SubscriberStatus}


class ImportProblems(DigestError):
    """The rows of an import file that cannot be imported, one ``FILE:LINE: problem`` per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:200]
        more = len(self.problems) - len(shown)
        tail = [f"... and {more} more"] if more else []
        super().__init__("\n".join([*shown, *tail, "nothing was imported"]))


class _Checker:
    """Checks many rows, remembering what repeats: each distinct rule is parsed once, and each domain is
    validated once (an address whose local part is plain dot-atom ASCII on a domain already validated has
    the verdict ``normalize_email`` would give it, without running it again)."""

    _PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._+-")

    def __init__(self) -> None:
        self.rules: dict[str, str | None] = {}  # rule -> its problem (None: it parses)
        self.domains: dict[str, str] = {}  # domain as typed (lower case) -> its normalised form

    def email(self, raw: str) -> str:
        local, at, domain = raw.strip(" ").rpartition("@")
        local, key = local.lower(), domain.lower()
        known = self.domains.get(key)
        if at and known and len(local) <= 64 and len(local) + len(known) < 254 and self._plain(local):
            return f"{local}@{known}"
        address = normalize_email(raw)
        self.domains.setdefault(key, address.rpartition("@")[2])
        return address

    def _plain(self, local: str) -> bool:
        return (
            bool(local)
            and set(local) <= self._PLAIN
            and local[0] != "."
            and local[-1] != "."
            and ".." not in local
        )

    def rule(self, query: str) -> None:
        if query not in self.rules:
            try:
                parse_rule(query)
                self.rules[query] = None
            except RuleError as exc:
                self.rules[query] = str(exc)
        problem = self.rules[query]
        if problem is not None:
            raise SubscriberError(problem)


@dataclass(frozen=True)
class _Line:
    number: int
    fields: dict[str, str]


def read_csv(path: Path) -> tuple[list[_Line], list[str]]:
    """The data lines of the file (with the line each starts on) and any problem with the file itself."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscriberError(f"{path}: cannot read it as UTF-8 text ({exc.__class__.__name__})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("email", "rules") if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    if missing or unknown:
        why = (
            f"missing column(s) {', '.join(missing)}"
            if missing
            else f"unknown column(s) {', '.join(unknown)}"
        )
        return [], [f"{path}:1: {why}; the columns are {', '.join(COLUMNS)}"]
    lines: list[_Line] = []
    last = reader.line_num
    for record in reader:
        start, last = last + 1, reader.line_num
        if not any(v.strip() for v in record):
            continue
        if len(record) > len(header):
            return [], [f"{path}:{start}: {len(record)} fields but the header names {len(header)}"]
        lines.append(_Line(start, dict(zip(header, record, strict=False))))
    return lines, []


def check_row(line: _Line, confirmed: bool, checker: _Checker | None = None) -> ImportRow:
    """One line as an ImportRow; SubscriberError says what is wrong with it."""
    check = checker or _Checker()
    get = line.fields.get
    email = check.email(get("email", ""))
    name = " ".join((get("name") or "").split()) or None
    if name is not None and (len(name) > 100 or any(ord(c) < 32 for c in name)):
        raise SubscriberError("name: one line of at most 100 characters")
    rules = tuple(q.strip() for q in (get("rules") or "").split(";") if q.strip())
    if not rules or len(rules) > MAX_RULES:
        raise SubscriberError(f"rules: give 1 to {MAX_RULES} rules separated by ';'")
    for number, query in enumerate(rules, 1):
        try:
            check.rule(query)
        except SubscriberError as exc:
            raise SubscriberError(f"rules: rule {number}: {exc}") from None
    cadence = (get("cadence") or "daily").strip().lower()
    if cadence not in ("daily", "weekly"):
        raise SubscriberError(f"cadence: daily or weekly, got {cadence!r}")
    send_time = parse_send_time(get("send_time") or "") if (get("send_time") or "").strip() else None
    zone = (get("timezone") or "").strip()
    timezone = parse_timezone(zone) if zone and send_time else None
    return ImportRow(
        email,
        name,
        rules,
        cadence,
        _weekday(get("weekday") or ""),
        send_time,
        timezone,
        _status(get("status") or "", confirmed),
    )


def _weekday(text: str) -> int:
    value = text.strip().lower()
    if not value:
        return 0
    if value.isdigit() and int(value) <= 6:
        return int(value)
    if value[:3] in WEEKDAYS:
        return WEEKDAYS.index(value[:3])
    raise SubscriberError(f"weekday: 0 (Monday) to 6 (Sunday) or mon..sun, got {text!r}")


def _status(text: str, confirmed: bool) -> str:
    value = text.strip().lower() or SubscriberStatus.ACTIVE.value
    if value not in _STATUSES:
        raise SubscriberError(f"status: one of {', '.join(sorted(_STATUSES))}, got {value!r}")
    if value in (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value):
        return SubscriberStatus.ACTIVE.value if confirmed else SubscriberStatus.PENDING.value
    return value


def check_file(path: Path, confirmed: bool) -> list[ImportRow]:
    """Every row of the file, checked; ImportProblems lists every bad row (nothing is written)."""
    lines, problems = read_csv(path)
    rows: list[ImportRow] = []
    first_line: dict[str, int] = {}
    checker = _Checker()
    for line in lines:
        try:
            row = check_row(line, confirmed, checker)
        except SubscriberError as exc:
            problems.append(f"{path}:{line.number}: {exc}")
            continue
        if row.email in first_line:
            problems.append(f"{path}:{line.number}: {row.email} is already on line {first_line[row.email]}")
            continue
        first_line[row.email] = line.number
        rows.append(row)
    if problems:
        raise ImportProblems(problems)
    if not rows:
        raise SubscriberError(f"{path}: no subscribers in the file (a header line, then one row each)")
    return rows


def import_file(
    engine: Engine, path: Path, *, confirmed: bool = False, clock: Clock = utc_now
) -> ImportResult:
    """`digest import`: check every row, then write them all in one transaction."""
    return import_rows(engine, check_file(path, confirmed), clock())


def export_subscribers(engine: Engine, fmt: str = "csv") -> str:
    """`digest export`: every subscriber as CSV (the import's columns) or a JSON array."""
    rows = export_rows(engine)
    if fmt == "json":
        return json.dumps([_as_dict(r) for r in rows], ensure_ascii=False, indent=2) + "\n"
    if fmt != "csv":
        raise SubscriberError(f"--format: csv or json, got {fmt!r}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_as_csv(rows))
    return out.getvalue()


def _as_dict(r: ImportRow) -> dict[str, object]:
    return {
        "email": r.email,
        "name": r.name,
        "rules": list(r.rules),
        "cadence": r.cadence,
        "weekday": r.weekday,
        "send_time": r.send_time,
        "timezone": r.timezone,
        "status": r.status,
    }


def _as_csv(rows: Iterable[ImportRow]) -> Iterable[list[str]]:
    for r in rows:
        yield [
            r.email,
            r.name or "",
            "; ".join(r.rules),
            r.cadence,
            WEEKDAYS[r.weekday % 7],
            r.send_time or "",
            r.timezone or "",
            r.status,
        ]
