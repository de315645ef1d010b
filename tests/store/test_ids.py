"""Row ids are random version-4 UUIDs, as text the uuid module reads back unchanged."""

from __future__ import annotations

import uuid

from lifecycle.store.ids import new_id


def test_new_ids_are_distinct_version_4_uuids_in_canonical_text() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    # All four variant digits occur (8, 9, a, b): the variant bits are set, the rest stays random.
    assert {text[19] for text in ids} == set("89ab")
