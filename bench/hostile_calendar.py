"""Hostile recurrence inputs: what one calendar object costs to read, before and after limits.

    .venv/bin/python bench/hostile_calendar.py                 # this tree
    .venv/bin/python bench/hostile_calendar.py --old /tmp/old  # another tree's syncd/ too
    .venv/bin/python bench/hostile_calendar.py --write-corpus  # (re)write tests/corpus/calendar

Each input (tests/corpus/calendar/*.ics) is read by ``read_object`` in a child process
of its own, with a wall-clock timeout and an address-space limit, over the corpus window
(the default 90 days back, 30 ahead, around 2026-11-25).  Reported per input: CPU
seconds, the child's peak resident memory, occurrences, participant rows they would make
(occurrences x (attendees + organizer)) and the outcome.  An ordinary weekly series is
measured in the same run as the reference.  ``--old DIR`` runs the same inputs against
the syncd package found in DIR (e.g. ``git archive <rev> syncd | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "calendar"
WINDOW_START = datetime(2026, 8, 27, tzinfo=UTC)
WINDOW_END = datetime(2026, 12, 25, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _ics(uid: str, start: datetime, *lines: str, extra_events: str = "") -> str:
    body = [
        f"UID:{uid}",
        "DTSTAMP:20240101T000000Z",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(start + timedelta(minutes=30))}",
        "SUMMARY:Hostile",
        "ORGANIZER;CN=Wile:mailto:wile@acme.com",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com",
        *lines,
    ]
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//syncd hostile corpus//EN\r\n"
        "BEGIN:VEVENT\r\n"
        + "".join(f"{line}\r\n" for line in body)
        + "END:VEVENT\r\n"
        + extra_events
        + "END:VCALENDAR\r\n"
    )


def _override(uid: str, original: datetime) -> str:
    """A second VEVENT overriding one occurrence: sends the object to icalendar's path."""
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n"
        f"RECURRENCE-ID:{_stamp(original)}\r\nDTSTART:{_stamp(original + timedelta(hours=1))}\r\n"
        f"DTEND:{_stamp(original + timedelta(hours=2))}\r\nSUMMARY:Moved\r\nEND:VEVENT\r\n"
    )


def corpus() -> dict[str, str]:
    """file name -> object, each the worst of its kind."""
    at = WINDOW_START
    exdates = [
        f"EXDATE:{_stamp(datetime(1900, 1, 2, 9, tzinfo=UTC) + timedelta(days=n))}"
        for n in range(1000)
    ]
    # EXDATEs right after the window: the first start after it lies 1,000 steps on.
    beyond = [
        f"EXDATE:{_stamp(datetime(WINDOW_END.year, WINDOW_END.month, WINDOW_END.day, 9, tzinfo=UTC) + timedelta(days=n))}"
        for n in range(1000)
    ]
    crowd = [f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:p{n}@acme.com" for n in range(2000)]
    nine = datetime(1900, 1, 1, 9, tzinfo=UTC)
    return {
        "reference-weekly.ics": _ics("weekly", datetime(2024, 1, 1, 9, tzinfo=UTC), "RRULE:FREQ=WEEKLY"),
        "minutely.ics": _ics("minutely", at, "RRULE:FREQ=MINUTELY"),
        "minutely-override.ics": _ics(
            "minutely-o", at, "RRULE:FREQ=MINUTELY", extra_events=_override("minutely-o", at)
        ),
        "minutely-count-3000.ics": _ics("minutely-3000", at + timedelta(days=60), "RRULE:FREQ=MINUTELY;COUNT=3000"),
        "secondly.ics": _ics("secondly", at, "RRULE:FREQ=SECONDLY"),
        "secondly-1970.ics": _ics("secondly-1970", datetime(1970, 1, 1, tzinfo=UTC), "RRULE:FREQ=SECONDLY"),
        "daily-1900-exdates.ics": _ics("daily-1900", nine, "RRULE:FREQ=DAILY", *exdates),
        "daily-1900-exdates-override.ics": _ics(
            "daily-1900-o", nine, "RRULE:FREQ=DAILY", *exdates,
            extra_events=_override("daily-1900-o", datetime(2026, 10, 1, 9, tzinfo=UTC)),
        ),
        "daily-1900-exdates-after-window.ics": _ics("daily-1900-a", nine, "RRULE:FREQ=DAILY", *beyond),
        "daily-1900-exdates-after-window-override.ics": _ics(
            "daily-1900-ao", nine, "RRULE:FREQ=DAILY", *beyond,
            extra_events=_override("daily-1900-ao", datetime(2026, 10, 1, 9, tzinfo=UTC)),
        ),
        "crowd-2000-daily.ics": _ics("crowd", at, "RRULE:FREQ=DAILY", *crowd),
        "yearly-every-second.ics": _ics(
            "yearly-s", datetime(2026, 1, 1, tzinfo=UTC),
            "RRULE:FREQ=YEARLY;BYMONTH=" + ",".join(map(str, range(1, 13)))
            + ";BYMONTHDAY=" + ",".join(map(str, range(1, 32)))
            + ";BYHOUR=" + ",".join(map(str, range(24)))
            + ";BYMINUTE=" + ",".join(map(str, range(60)))
            + ";BYSECOND=" + ",".join(map(str, range(60))),
        ),
        "daily-every-minute-override.ics": _ics(
            "daily-m", at, "RRULE:FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24)))
            + ";BYMINUTE=" + ",".join(map(str, range(60))),
            extra_events=_override("daily-m", at),
        ),
        "sequence-abc.ics": _ics("seq", at + timedelta(days=60), "SEQUENCE:abc"),
        "duration-bogus.ics": _ics("dur", at + timedelta(days=60), "DURATION:bogus").replace(
            f"DTEND:{_stamp(at + timedelta(days=60, minutes=30))}\r\n", ""
        ),
        "rule-bogus.ics": _ics("rule", at + timedelta(days=60), "RRULE:FREQ=SOMETIMES"),
        "long-uid.ics": _ics("u" * 1200, at + timedelta(days=60)),
        "long-organizer.ics": _ics("long-org", at + timedelta(days=60)).replace(
            "ORGANIZER;CN=Wile:mailto:wile@acme.com",
            "ORGANIZER;CN=" + "M" * 1000 + ":mailto:" + "o" * 1200 + "@acme.com",
        ),
        "nul-summary.ics": _ics("nul", at + timedelta(days=60)).replace(
            "SUMMARY:Hostile", "SUMMARY:before\x00after"
        ),
        # 107 bytes a nested-list line regex took 4.65 s of CPU on (x3 per extra ";A=,,").
        "attendee-param-backtracking.ics": _ics(
            "attendee-params", at + timedelta(days=60),
            "ATTENDEE" + ";A=,," * 15 + ';B=x"y:mailto:p@acme.com',
        ),
    }  # fmt: skip


_CHILD = """
import json, os, resource, sys, time
from datetime import datetime
tree = os.environ.get("HOSTILE_BENCH_TREE")
if tree:  # that tree's syncd, not the editable install's
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, tree)
import syncd.domain.meetings as meetings
assert not tree or meetings.__file__.startswith(tree), meetings.__file__
read_object = getattr(meetings, "read_object")
text = open(sys.argv[1], newline="").read()
start, end = datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF)
cpu = time.process_time()
try:
    view = read_object(text, window_start=start, window_end=end)
    found = view.occurrences if hasattr(view, "occurrences") else view
    rows = sum(len(o.attendees) + (o.organizer is not None) for o in found)
    cut = getattr(view, "cut", None)
    outcome = cut.reason() if cut else "read"
    count = len(found)
except Exception as err:
    count, rows, outcome = 0, 0, f"{type(err).__name__}: {str(err)[:90]}"
seconds = time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"cpu": seconds, "peak_mb": peak, "occurrences": count, "rows": rows, "outcome": outcome}))
"""


def measure(path: Path, tree: Path | None, timeout: float, memory_mb: int) -> dict[str, object]:
    env = dict(os.environ)
    if tree is not None:
        env["HOSTILE_BENCH_TREE"] = str(tree)
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", limit + _CHILD, str(path), WINDOW_START.isoformat(), WINDOW_END.isoformat()],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"cpu": None, "peak_mb": None, "occurrences": None, "rows": None,
                "outcome": f"killed after {timeout:g} s"}  # fmt: skip
    if done.returncode != 0 or not done.stdout.strip():
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"cpu": None, "peak_mb": None, "occurrences": None, "rows": None,
                "outcome": f"died: {tail[:80]}"}  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, help="a tree holding the syncd package to compare")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--write-corpus", action="store_true")
    args = parser.parse_args()
    if args.write_corpus:
        CORPUS.mkdir(parents=True, exist_ok=True)
        for name, text in corpus().items():
            (CORPUS / name).write_text(text, newline="")
        print(f"wrote {len(corpus())} objects to {CORPUS}")
        return
    trees: list[tuple[str, Path | None]] = [("now", None)]
    if args.old:
        trees.insert(0, ("old", args.old))
    print(f"{'input':46} {'code':4} {'cpu s':>7} {'peak MB':>8} {'occ':>7} {'rows':>8}  outcome")
    for path in sorted(CORPUS.glob("*.ics"), key=lambda p: (not p.name.startswith("ref"), p.name)):
        for label, tree in trees:
            m = measure(path, tree, args.timeout, args.memory_mb)
            cpu = "-" if m["cpu"] is None else f"{m['cpu']:.3f}"
            peak = "-" if m["peak_mb"] is None else f"{m['peak_mb']:.0f}"
            print(
                f"{path.name:46} {label:4} {cpu:>7} {peak:>8} {m['occurrences'] if m['occurrences'] is not None else '-':>7} "
                f"{m['rows'] if m['rows'] is not None else '-':>8}  {m['outcome']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
