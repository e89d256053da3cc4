"""Coverage-guided fuzzing of the mail readers with atheris (libFuzzer).

    .venv/bin/python bench/fuzz_mail.py -runs=100000 -max_len=65536
    mkdir /tmp/seeds && cp tests/corpus/mail/*.eml /tmp/seeds/
    .venv/bin/python bench/fuzz_mail.py /tmp/seeds -runs=5000   # seeded; libFuzzer adds to it

Every input goes to one reader chosen by its first byte: the whole message, the header
section, the address list, encoded words, HTML-to-text or the snippet.  A reader may
refuse a message (UnparseableMessage) but never raise anything else, never return a
value over its cap, and never take more than ``MAX_SECONDS`` of CPU on one input; libFuzzer
saves any input that breaks these rules as ``crash-*`` or ``timeout-*``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports():
    from syncd.domain.addrlist import split_addresses
    from syncd.domain.encoded_words import decode_words
    from syncd.domain.headers import read_header_section
    from syncd.domain.html_text import html_to_text
    from syncd.domain.limits import MAX_ADDRESSES, MAX_SUBJECT_CHARS
    from syncd.domain.message import UnparseableMessage, parse_message
    from syncd.domain.snippet import SNIPPET_MAX, snippet

MAX_SECONDS = 0.5
WHEN = datetime(2024, 6, 3, tzinfo=UTC)


def _message(data: bytes) -> None:
    try:
        msg = parse_message(data, internal_date=WHEN, keep="full")
    except UnparseableMessage:
        return
    assert len(msg.subject) <= MAX_SUBJECT_CHARS
    assert len(msg.senders) + len(msg.to) + len(msg.cc) + len(msg.bcc) <= MAX_ADDRESSES
    assert msg.snippet is not None and len(msg.snippet) <= SNIPPET_MAX
    assert "\x00" not in msg.subject


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


READERS = [
    _message,
    lambda data: read_header_section(data),
    lambda data: split_addresses(_text(data)),
    lambda data: decode_words(_text(data)),
    lambda data: html_to_text(_text(data)),
    lambda data: snippet(_text(data)),
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    reader = READERS[data[0] % len(READERS)]
    # CPU time, not wall: the cap is about how the readers scale with their input, and a
    # busy machine (the test suite runs beside servers) must not trip it.
    started = time.process_time()
    reader(data[1:])
    took = time.process_time() - started
    if took > MAX_SECONDS:
        raise AssertionError(f"{len(data)} bytes took {took:.2f}s")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
