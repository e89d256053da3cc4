"""The system's CA bundle as PEM text, for HTTP clients that take the certificates themselves.

The bundle is the one OpenSSL loads by default (``SSL_CERT_FILE``, else the distribution's
file, such as Debian's /etc/ssl/certs/ca-certificates.crt): the same CAs the IMAP, OAuth2 and
webhook connections trust.  Not every PEM file that lies around /etc/ssl: Debian's ssl-cert
package puts a self-signed "snakeoil" certificate there for local services, and a client that
trusted it would take that certificate as a CA.
"""

from __future__ import annotations

import functools
import re
import ssl
from pathlib import Path

# OpenSSL's names for the certificates of a hashed directory: subject hash, dot, a number.
_HASHED = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def system_ca_bundle() -> str:
    """The PEM text of every CA in the system's default bundle."""
    paths = ssl.get_default_verify_paths()
    # Read again only when the bundle changed: loading it costs about 60 ms, and every
    # calendar pass opens a session.
    return _bundle(_stamp(paths.cafile), _stamp(paths.capath))


def _stamp(path: str | None) -> tuple[str, int, int] | None:
    try:
        found = Path(path).stat() if path else None
    except OSError:
        return None
    return (str(path), found.st_mtime_ns, found.st_size) if found else None


@functools.lru_cache(maxsize=4)
def _bundle(cafile: tuple[str, int, int] | None, capath: tuple[str, int, int] | None) -> str:
    # The default context loads the bundle file at once (a hashed directory only on demand).
    loaded = ssl.create_default_context().get_ca_certs(binary_form=True)
    if loaded:
        return "".join(ssl.DER_cert_to_PEM_cert(der) for der in loaded)
    return _hashed_directory(capath[0] if capath else None)


def _hashed_directory(capath: str | None) -> str:
    """A system with only a hashed directory (no bundle file): the certificates OpenSSL would
    look up in it, the only files of that directory it ever reads."""
    if not capath or not Path(capath).is_dir():
        return ""
    texts = []
    for path in sorted(Path(capath).iterdir()):
        if _HASHED.fullmatch(path.name):
            text = path.read_text(encoding="ascii", errors="replace")
            if "-----BEGIN CERTIFICATE-----" in text:
                texts.append(text if text.endswith("\n") else text + "\n")
    return "".join(texts)


def with_private_ca(ca_file: str) -> str:
    """The system's bundle plus the certificates of ``ca_file``, as one PEM text."""
    private = Path(ca_file).read_text(encoding="ascii", errors="replace")
    return system_ca_bundle() + "\n" + private
