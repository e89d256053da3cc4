"""A mirror adds contacts through a second SQLite engine of its own (store/directory_apply.py,
``_new_contacts``): it must open the store's own file, whatever characters its folder has."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from syncd.domain.directory_file import RowReader, text_stream
from syncd.schema.tables import contacts
from syncd.store.database import open_database
from syncd.store.directory_mirror import mirror_directory

CSV = (
    "customer,domains,contact_name,contact_email\n"
    "Acme,acme.com,Ann,ann@acme.com\n"
    "Acme,acme.com,Bob,bob@acme.com\n"
    "Beta,beta.org,Cy,cy@beta.org\n"
)


@pytest.mark.parametrize("folder", ["q?d", "%41", "a#b"])
def test_a_mirror_writes_the_database_its_url_names(tmp_path: Path, folder: str) -> None:
    database = tmp_path / folder / "syncd.db"
    database.parent.mkdir()
    # The URL as a user writes one: its path percent-encoded ("%3F" for "?").
    engine = open_database(f"sqlite:///{quote(str(database))}")
    try:
        done = mirror_directory(
            engine, RowReader(text_stream(CSV.encode()), "crm.csv"), mirror=True, source="test"
        )
        assert done is not None
        assert done.counts["contacts"]["added"] == 3
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(contacts)) == 3
    finally:
        engine.dispose()
    # Nothing beside the folder: a path cut at "?" or decoded twice would have made a file.
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]
    assert sorted(p.name for p in database.parent.iterdir() if "syncd.db" not in p.name) == []
