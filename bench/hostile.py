"""Hostile mail benchmark: parse time of each worst-case input next to a same-size reference.

    .venv/bin/python bench/hostile.py                 # every case at its worst size
    .venv/bin/python bench/hostile.py --scale 4       # every input 4x larger (should cost ~4x)
    .venv/bin/python bench/hostile.py --write-corpus tests/corpus/mail

Each case runs in a child process under a time limit, so a parser that backtracks
(the bug this guards against) shows up as "timeout" instead of hanging the bench.  In
the same child, two references are measured on inputs of the same byte size: the parse
of an ordinary ~3 KB message grown to that size, and a plain ``bytes.find`` over the
hostile input (the floor: touching every byte once).  The ratio is hostile parse time
over ordinary parse time; a linear parser keeps it small whatever the size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CRLF = b"\r\n"
_BASE = (
    b"From: Wile Coyote <wile@acme.com>\r\n"
    b"Date: Mon, 03 Jun 2024 09:00:00 +0000\r\n"
    b"Message-ID: <hostile@acme.com>\r\n"
    b"Subject: hostile input\r\n"
)


def _plain(headers: bytes, body: bytes = b"Could you send the quote?\r\n") -> bytes:
    return _BASE + headers + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body


def _html(body: bytes) -> bytes:
    return _BASE + b"To: alice@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body


def address_spaces(n: int) -> bytes:
    """Issue #11 case 1: `To: x@y.example,` + spaces + `!` (2,000 spaces took 5 s)."""
    return _plain(b"To: x@y.example," + b" " * n + b"!\r\n")


def address_folded_spaces(n: int) -> bytes:
    """Issue #11 case 1: the same run of white space folded over lines (3,600 stalled 25 s)."""
    lines, left = [], n
    while left > 0:
        lines.append(b" " * min(76, left))
        left -= 76
    return _plain(b"To: x@y.example," + CRLF.join(lines) + b"!\r\n")


def address_name_spaces(n: int) -> bytes:
    """White space inside an unquoted display name, before the angle address."""
    return _plain(b"To: Wile" + b" " * n + b"x <wile@acme.com" + b"\r\n")


def address_comments(n: int) -> bytes:
    """Nested comments: the stdlib address parser recurses once per parenthesis."""
    return _plain(b"To: " + b"(" * n + b"x@y.example\r\n")


def address_open_quote(n: int) -> bytes:
    """A quoted display name that never closes, full of escapes."""
    return _plain(b'To: "Wile' + b"\\ " * n + b"<wile@acme.com>\r\n")


def many_addresses(n: int) -> bytes:
    """Thousands of recipients in one field: capped, the cut counted."""
    return _plain(b"To: " + b", ".join(b"r%d@acme.com" % i for i in range(n)) + b"\r\n")


def many_fields(n: int) -> bytes:
    """One address field repeated thousands of times."""
    return _plain(b"".join(b"Cc: r%d@acme.com\r\n" % i for i in range(n)))


def encoded_words(n: int) -> bytes:
    """Encoded-word openers that never close: the stdlib's decoder rescans the rest of the line."""
    return _plain(b"To: alice@example.com\r\nSubject: " + b"=?utf-8?q?a" * n + b"\r\n")


def long_ids(n: int) -> bytes:
    """Issue #11 case 2: a 1,200-character Message-ID and References id, a 400-character From."""
    mid = b"<" + b"m" * n + b"@acme.com>"
    return (
        b"From: " + b"w" * (n // 3) + b"@acme.com\r\nTo: alice@example.com\r\n"
        b"Subject: long ids\r\nMessage-ID: " + mid + b"\r\nReferences: <"
        + b"r" * n + b"@acme.com> " + mid + b"\r\nIn-Reply-To: " + mid + b"\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n"
    )  # fmt: skip


def nul_bytes(n: int) -> bytes:
    """NUL and other control bytes in header values and names (PostgreSQL text refuses NUL)."""
    return _plain(
        b"To: ali\x00ce <alice@example.com>\r\nX-Junk: " + b"\x00\x01" * n + b"\r\n",
        body=b"body with \x00 NUL\r\n",
    ).replace(b"Subject: hostile input", b"Subject: hos\x00tile")


def header_no_end(n: int) -> bytes:
    """Issue #11 case 12: a header section that never ends (no blank line)."""
    filler = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"f" * 60) for i in range(n // 76))
    return _BASE + b"To: alice@example.com\r\n" + filler


def html_style(n: int) -> bytes:
    """Issue #11 case 12: `<style` x 10,000 took 2.6 s per message (quadratic HTML-to-text)."""
    return _html(b"<p>Hello</p>" + b"<style" * n)


def html_comments(n: int) -> bytes:
    """Unclosed comments and tags: every opener must cost one look, not a rescan."""
    return _html(b"<p>Hello</p>" + b"<!--<a " * n)


def html_charref(n: int) -> bytes:
    """A numeric character reference thousands of digits long (int() refuses > 4,300 digits)."""
    return _html(b"<p>Hello &#" + b"9" * n + b"; &#x" + b"f" * n + b";</p>")


def deep_multipart(n: int) -> bytes:
    """Multipart nested thousands of levels deep around one text part."""
    head = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(n)
    )
    return (
        _BASE + b"To: alice@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        + head + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep hello\r\n" % n
    )  # fmt: skip


def mime_params(n: int) -> bytes:
    """A MIME part whose Content-Type has thousands of parameters and an unclosed quote."""
    return (
        _BASE + b"To: alice@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n--b0\r\n'
        b'Content-Type: text/plain; charset="' + b";a" * n + b"\r\n\r\nparams hello\r\n--b0--\r\n"
    )  # fmt: skip


def snippet_history(n: int) -> bytes:
    """Lines that almost start quoted history ("On ... wrote:"), to test the snippet's patterns."""
    return _plain(b"To: alice@example.com\r\n", body=b"On " + b"x" * 150 + b"\r\n" * n)


# name -> (builder, worst size used by the bench and the corpus)
CASES: dict[str, tuple[Callable[[int], bytes], int]] = {
    "address_spaces": (address_spaces, 2_000),
    "address_folded_spaces": (address_folded_spaces, 3_600),
    "address_name_spaces": (address_name_spaces, 3_600),
    "address_comments": (address_comments, 5_000),
    "address_open_quote": (address_open_quote, 10_000),
    "many_addresses": (many_addresses, 4_000),
    "many_fields": (many_fields, 3_000),
    "encoded_words": (encoded_words, 5_000),
    "long_ids": (long_ids, 1_200),
    "nul_bytes": (nul_bytes, 500),
    "header_no_end": (header_no_end, 60_000),
    "html_style": (html_style, 10_000),
    "html_comments": (html_comments, 8_000),
    "html_charref": (html_charref, 5_000),
    "deep_multipart": (deep_multipart, 1_000),
    "mime_params": (mime_params, 30_000),
    "snippet_history": (snippet_history, 8_000),
}


def ordinary(size: int) -> bytes:
    """An ordinary ~3 KB sample message grown to ``size`` bytes of plain text."""
    from tests.servers.sample import generate

    raw = generate(1, size=3300)[0].raw
    while len(raw) < size:
        raw += b"> " + b"lorem ipsum dolor sit amet " * 3 + CRLF
    return raw[:size]


def _timed(fn: Callable[[], object]) -> tuple[float, float, str]:
    """Seconds, peak MB (tracemalloc, a second run) and the outcome of ``fn``."""
    started = time.perf_counter()
    try:
        result = fn()
        outcome = result if isinstance(result, str) else "ok"
    except Exception as err:  # the bench reports crashes, it does not stop at them
        outcome = f"{type(err).__name__}: {str(err)[:60]}"
    seconds = time.perf_counter() - started
    tracemalloc.start()
    with contextlib.suppress(Exception):  # already reported above
        fn()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak, outcome


def _parse(raw: bytes) -> str:
    from syncd.domain.message import UnparseableMessage, parse_message

    try:
        msg = parse_message(raw, internal_date=datetime(2024, 6, 3, tzinfo=UTC), keep="full")
    except UnparseableMessage as err:
        return f"quarantined: {err}"
    n = len(msg.senders) + len(msg.to) + len(msg.cc) + len(msg.bcc)
    return f"captured: {n} addresses, snippet {len(msg.snippet or '')} chars"


def run_one(name: str, scale: float) -> dict[str, object]:
    build, worst = CASES[name]
    raw = build(max(1, int(worst * scale)))
    _parse(ordinary(3300))  # imports and lazy tables load here, outside the measurement
    seconds, peak, outcome = _timed(lambda: _parse(raw))
    reference = ordinary(len(raw))
    ref_seconds, _, _ = _timed(lambda: _parse(reference))
    find_started = time.perf_counter()
    raw.find(b"\x00never\x00")
    find_seconds = time.perf_counter() - find_started
    return {
        "case": name,
        "bytes": len(raw),
        "seconds": seconds,
        "peak_mb": peak,
        "reference_seconds": ref_seconds,
        "find_seconds": find_seconds,
        "outcome": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every input size")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--write-corpus", type=Path, help="write each worst case as NAME.eml")
    parser.add_argument("cases", nargs="*", help="only these cases")
    args = parser.parse_args()
    if args.one:
        from syncd.logs import configure

        configure("WARNING", json=True)  # cut notices go to stderr, the result to stdout
        print(json.dumps(run_one(args.one, args.scale)))
        return
    names = args.cases or list(CASES)
    if args.write_corpus:
        args.write_corpus.mkdir(parents=True, exist_ok=True)
        for name in names:
            build, worst = CASES[name]
            (args.write_corpus / f"{name}.eml").write_bytes(build(worst))
        return
    print(
        f"{'case':24} {'bytes':>9} {'parse s':>9} {'peak MB':>8} {'ordinary s':>10} "
        f"{'find s':>9} {'ratio':>7}  outcome"
    )
    for name in names:
        try:
            child = subprocess.run(
                [sys.executable, __file__, "--one", name, "--scale", str(args.scale)],
                capture_output=True,
                text=True,
                timeout=args.timeout,
                check=True,
            )
        except subprocess.TimeoutExpired:
            print(f"{name:24} {'':>9} {'>' + str(int(args.timeout)):>9}  timeout")
            continue
        except subprocess.CalledProcessError as err:
            print(f"{name:24} child failed: {err.stderr.strip()[-200:]}")
            continue
        r = json.loads(child.stdout)
        ratio = float(r["seconds"]) / max(float(r["reference_seconds"]), 1e-6)
        print(
            f"{name:24} {r['bytes']:>9} {r['seconds']:>9.4f} {r['peak_mb']:>8.2f} "
            f"{r['reference_seconds']:>10.4f} {r['find_seconds']:>9.6f} {ratio:>7.1f}  "
            f"{r['outcome']}"
        )


if __name__ == "__main__":
    main()
