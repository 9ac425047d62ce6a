"""The code location's graph is what the snapshot says: a change to it shows as a diff.

After an intended change to assets, checks, jobs, schedules or sensors, rewrite the
snapshot with ``python -m tests.graph_snapshot`` and review ``tests/snapshots/graph.json``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import dagster as dg

from tests.graph_snapshot import SNAPSHOT, graph_snapshot, render


def test_the_graph_matches_its_snapshot(defs):
    actual = render(graph_snapshot(defs))
    expected = SNAPSHOT.read_text()
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            "tests/snapshots/graph.json",
            "the code location now",
        )
    )
    assert not diff, f"the graph changed; if intended, run python -m tests.graph_snapshot\n{diff}"


def test_every_asset_links_to_the_file_that_defines_it(defs):
    graph = defs.resolve_asset_graph()
    missing = []
    for key in graph.get_all_asset_keys():
        references = graph.get(key).metadata.get("dagster/code_references")
        paths = [Path(r.file_path) for r in references.code_references] if references else []
        if not paths or not all(p.is_file() for p in paths):
            missing.append(key.to_user_string())
    assert not missing, f"assets without a code reference to an existing file: {missing}"

    def files(key: str) -> set[str]:
        references = graph.get(dg.AssetKey.from_user_string(key)).metadata[
            "dagster/code_references"
        ]
        return {Path(r.file_path).as_posix() for r in references.code_references}

    assert any(
        f.endswith("lakehouse/defs/silver/page_views.py") for f in files("silver/page_views")
    )
    assert any(f.endswith("lakehouse/defs/bronze/assets.py") for f in files("bronze/clickstream"))
    assert any(f.endswith("models/marts/daily_revenue.sql") for f in files("gold/daily_revenue"))
