"""``context.consent`` shapes read into consent changes, and keyed hashes of identifiers."""

from __future__ import annotations

from personify.privacy.hashing import hash_normalized, subject_hash
from personify.privacy.tracking import changes


def test_segment_category_preferences() -> None:
    got = changes({"categoryPreferences": {"email_marketing": True, "profiling": False}})
    assert [(c.purpose, c.channel, c.status) for c in got] == [
        ("email_marketing", "email", "granted"),
        ("profiling", "email", "revoked"),
    ]


def test_mapping_and_list_shapes_with_proof() -> None:
    got = changes({"email_marketing": "granted", "sms": {"status": "revoked", "channel": "sms"}})
    assert [(c.purpose, c.channel, c.status) for c in got] == [
        ("email_marketing", "email", "granted"),
        ("sms", "sms", "revoked"),
    ]
    (one,) = changes(
        [
            {
                "purpose": "email_marketing",
                "status": "opt_in",
                "form": "footer",
                "confirmedAt": "2026-01-02T10:00:00Z",
            }
        ]
    )
    assert one.status == "granted"
    assert one.proof == {"form": "footer", "confirmed_at": "2026-01-02T10:00:00Z"}


def test_unreadable_entries_are_ignored() -> None:
    assert changes(None) == []
    assert changes("granted") == []
    assert changes({"email_marketing": "maybe", "": True, "x": 3}) == []
    assert changes([{"status": "granted"}, "junk"]) == []


def test_subject_hash_normalizes_and_is_keyed() -> None:
    a = subject_hash(b"k", "email", "  Ann@Example.ORG ")
    assert a == subject_hash(b"k", "email", "ann@example.org")
    assert a == hash_normalized(b"k", "email", "ann@example.org")
    assert a != subject_hash(b"other", "email", "ann@example.org")
    assert a != subject_hash(b"k", "phone", "ann@example.org")
    assert "ann" not in a
