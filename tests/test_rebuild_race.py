"""A silver rebuild computed from an older bronze snapshot must not overwrite one
already built from a newer snapshot."""

from __future__ import annotations

from lakehouse.tables.rebuilds import superseded_by


def test_older_rebuild_sees_it_is_superseded(page_views_rebuilds):
    t = page_views_rebuilds
    older, newer = t.bronze_commit(), t.bronze_commit()
    assert superseded_by(t.silver, t.bronze, older) is None  # never built: go ahead

    t.rebuild(newer)
    assert superseded_by(t.silver, t.bronze, older) == newer.snapshot_id
    assert superseded_by(t.silver, t.bronze, newer) is None  # same input: idempotent rewrite

    later = t.bronze_commit()
    assert superseded_by(t.silver, t.bronze, later) is None


def test_a_rebuild_whose_bronze_snapshot_expired_is_superseded_by_a_kept_one(
    page_views_rebuilds,
):
    """Bronze keeps less history than silver (a source's snapshot_retention_hours): a
    rebuild that read a snapshot expired since must not overwrite one built later."""
    t = page_views_rebuilds
    older, newer = t.bronze_commit(), t.bronze_commit()
    t.rebuild(newer)
    t.bronze.maintenance.expire_snapshots().by_id(older.snapshot_id).commit()
    assert superseded_by(t.silver, t.bronze, older) == newer.snapshot_id


def test_a_rebuild_from_an_expired_snapshot_does_not_hold_back_a_newer_one(page_views_rebuilds):
    t = page_views_rebuilds
    older, newer = t.bronze_commit(), t.bronze_commit()
    t.rebuild(older)
    t.bronze.maintenance.expire_snapshots().by_id(older.snapshot_id).commit()
    assert superseded_by(t.silver, t.bronze, newer) is None
