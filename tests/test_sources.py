"""sources.yml: validated with clear errors; declared types checked value by value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lakehouse.declarations.sources import load_sources, sources
from lakehouse.ingest.values import value_error


def test_the_shipped_sources_file_declares_the_demo_sources():
    declared = sources()
    assert [s.name for s in declared.kafka] == ["clickstream"]
    assert [s.name for s in declared.landing] == ["marketing_spend"]
    assert [s.name for s in declared.cdc] == ["customers", "orders", "order_items"]
    assert [s.name for s in declared.database] == ["products"]
    clickstream = declared.kafka_source("clickstream")
    assert clickstream.resolved_topic("staging.") == "staging.events.clickstream"
    assert dict(clickstream.layout.properties)["history.expire.max-snapshot-age-ms"] == str(
        24 * 3_600_000
    )
    assert [f.name for f in clickstream.layout.schema.fields][:5] == [
        "event_id",
        "event_type",
        "user_id",
        "event_ts",
        "payload",
    ]


def test_a_sources_snapshot_retention_becomes_its_bronze_tables_property(tmp_path: Path):
    path = tmp_path / "sources.yml"
    path.write_text(
        "kafka: [{name: busy, topic: t, columns: {}, snapshot_retention_hours: 24}]\n"
        "landing: [{name: calm, format: csv, columns: {a: string}}]"
    )
    declared = load_sources(path)
    busy = dict(declared.kafka_source("busy").layout.properties)
    assert busy["history.expire.max-snapshot-age-ms"] == str(24 * 3_600_000)
    assert busy["write.parquet.dict-size-bytes"] == "262144"  # the bronze layout's own
    calm = dict(declared.landing_source("calm").layout.properties)
    assert "history.expire.max-snapshot-age-ms" not in calm  # the settings' default applies


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("landing: [{name: Bad-Name, format: csv, columns: {a: string}}]", "lower_snake_case"),
        ("landing: [{name: x, format: xml, columns: {a: string}}]", "format"),
        ("landing: [{name: x, format: csv, columns: {a: money}}]", "unknown column types"),
        (
            "kafka: [{name: x, topic: t, columns: {}}]\n"
            "landing: [{name: x, format: csv, columns: {a: string}}]",
            "unique",
        ),
        ("kafka: [{name: x, topic: t, columns: {}, typo_key: 1}]", "typo_key"),
        ("landing: []\nkafka: []\nlanding: []", "duplicate key"),
        (
            "kafka: [{name: x, topic: t, columns: {}, snapshot_retention_hours: 0}]",
            "snapshot_retention_hours",
        ),
        (
            "kafka: [{name: x, topic: t, columns: {}, snapshot_retention_hours: 100000000}]",
            "snapshot_retention_hours",
        ),
    ],
)
def test_a_bad_sources_file_names_the_file_and_the_problem(tmp_path: Path, text, message):
    path = tmp_path / "sources.yml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_sources(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("declared", "value", "ok"),
    [
        ("int", "42", True),
        ("int", "4.2", False),
        ("int", str(2**31), False),
        ("long", str(2**40), True),
        ("double", "1e3", True),
        ("double", "abc", False),
        ("boolean", "true", True),
        ("boolean", "yes", False),
        ("date", "2026-11-01", True),
        ("date", "01/11/2026", False),
        ("timestamp", "2026-11-01T10:00:00Z", True),
        ("timestamp", "yesterday", False),
        ("decimal(5,2)", "123.45", True),
        ("decimal(5,2)", "1.234", False),
        ("decimal(5,2)", "1234.5", False),
        ("decimal(5,2)", "NaN", False),
        # past decimal's default 28-digit context: the declared precision decides
        ("decimal(38,10)", "1" * 28 + ".5", True),
        ("decimal(38,10)", "1" * 29, False),
        ("decimal(38,0)", "9" * 38, True),
        ("decimal(38,0)", "-" + "9" * 38, True),
        ("decimal(38,0)", "1" + "0" * 38, False),
        ("decimal(12,2)", "1E+3", True),
        ("decimal(12,2)", "1E+999999999", False),  # refused without a billion digits
        ("decimal(2,2)", "0", True),
        ("string", "anything", True),
        ("int", "", True),  # empty is null; required-ness is a silver rule
        ("int", None, True),
    ],
)
def test_value_checks_follow_the_declared_type(declared, value, ok):
    assert (value_error(declared, value) is None) is ok


CDC = "cdc: [{name: shop_items, topic: s.public.items, keys: [id], columns: {id: string}%s}]"


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        ("{time.precision: connect}", "'shop_items': unknown connector option 'time.precision'"),
        (
            "{decimal.handling.mode: exact}",
            "'shop_items': connector option 'decimal.handling.mode' is 'exact', "
            "expected one of precise, double, string",
        ),
        ("{binary.handling.mode: base32}", "'binary.handling.mode' is 'base32'"),
        ("{interval.handling.mode: iso}", "'interval.handling.mode' is 'iso'"),
        ("{time.precision.mode: isostring}", "'time.precision.mode' is 'isostring'"),
    ],
)
def test_a_cdc_sources_connector_options_are_checked_naming_source_and_key(
    tmp_path: Path, connector, message
):
    path = tmp_path / "sources.yml"
    path.write_text(CDC % f", connector: {connector}")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_sources(path)


def test_connector_modes_shape_silver_only_when_declared(tmp_path: Path):
    """Modes change what a change decodes to, so declaring them rebuilds silver; a source
    that declares none keeps the shape it had before the option existed."""
    from lakehouse.defs.silver.builds import silver_shape

    path = tmp_path / "sources.yml"
    path.write_text(CDC % "")
    plain = load_sources(path).cdc_source("shop_items")
    path.write_text(CDC % ", connector: {decimal.handling.mode: precise}")
    defaults = load_sources(path).cdc_source("shop_items")
    path.write_text(CDC % ", connector: {time.precision.mode: connect}")
    connect = load_sources(path).cdc_source("shop_items")
    assert connect.connector.time_precision_mode == "connect"
    assert silver_shape(plain, None) == silver_shape(defaults, None)
    assert silver_shape(plain, None)["source"] != silver_shape(connect, None)["source"]
