"""Debezium PostgreSQL's documented type mapping, in every connector mode, with and without
the schema wrapper: decoded into the declared types, and through the real broker, bronze
and silver. The events are written here from the connector's documentation ("Data type
mappings", ``decimal.handling.mode``, ``time.precision.mode``, ``binary.handling.mode``,
``interval.handling.mode``), not by the demo's generator."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest

from lakehouse.declarations.layouts import iceberg_type
from lakehouse.declarations.sources import CdcSource, ConnectorModes
from lakehouse.ingest.debezium import (
    TOAST_PLACEHOLDER,
    UNAVAILABLE,
    decode_value,
    parse_change,
)
from lakehouse.ingest.records import RecordRejected
from lakehouse.tables.evolution import SchemaBreak, fits, plan

# --- the encodings, as the connector documents them --------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unscaled(n: int) -> str:
    """A Kafka Connect Decimal's value: the unscaled number, big-endian two's complement."""
    return b64(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


def bits(text: str) -> str:
    """io.debezium.data.Bits: the bits little-endian, sized to hold them."""
    return b64(int(text, 2).to_bytes((len(text) + 7) // 8, "little"))


def named(kind: str, name: str, **parameters: str) -> dict:
    schema = {"type": kind, "optional": True, "name": name, "version": 1}
    if parameters:
        schema["parameters"] = parameters
    return schema


def decimal_schema(scale: int, precision: int = 10) -> dict:
    return named(
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        scale=str(scale),
        **{"connect.decimal.precision": str(precision)},
    )


VARIABLE_SCALE = {
    "type": "struct",
    "optional": True,
    "name": "io.debezium.data.VariableScaleDecimal",
    "fields": [
        {"field": "scale", "type": "int32", "optional": False},
        {"field": "value", "type": "bytes", "optional": False},
    ],
}
DEBEZIUM_DATE = named("int32", "io.debezium.time.Date")
CONNECT_DATE = named("int32", "org.apache.kafka.connect.data.Date")
TIME = named("int32", "io.debezium.time.Time")
MICRO_TIME = named("int64", "io.debezium.time.MicroTime")
NANO_TIME = named("int64", "io.debezium.time.NanoTime")
CONNECT_TIME = named("int64", "org.apache.kafka.connect.data.Time")
TIMESTAMP = named("int64", "io.debezium.time.Timestamp")
MICRO_TIMESTAMP = named("int64", "io.debezium.time.MicroTimestamp")
NANO_TIMESTAMP = named("int64", "io.debezium.time.NanoTimestamp")
CONNECT_TIMESTAMP = named("int64", "org.apache.kafka.connect.data.Timestamp")
ZONED_TIMESTAMP = named("string", "io.debezium.time.ZonedTimestamp")
ZONED_TIME = named("string", "io.debezium.time.ZonedTime")
MICRO_DURATION = named("int64", "io.debezium.time.MicroDuration")
INTERVAL = named("string", "io.debezium.time.Interval")
UUID = named("string", "io.debezium.data.Uuid")
JSON = named("string", "io.debezium.data.Json")
XML = named("string", "io.debezium.data.Xml")
ENUM = named("string", "io.debezium.data.Enum", allowed="new,gold")
ENUM_SET = named("string", "io.debezium.data.EnumSet", allowed="a,b,c")
BITS_10 = named("bytes", "io.debezium.data.Bits", length="10")
BYTES = {"type": "bytes", "optional": True}
STRING = {"type": "string", "optional": True}
DOUBLE = {"type": "double", "optional": True}
BOOLEAN = {"type": "boolean", "optional": True}
TEXT_ARRAY = {"type": "array", "optional": True, "items": STRING}
DATE_ARRAY = {"type": "array", "optional": True, "items": DEBEZIUM_DATE}

# 2018-06-20 15:13:16.945104, the documentation's own TIMESTAMP example
AT = datetime(2018, 6, 20, 15, 13, 16, 945104, tzinfo=UTC)
AT_MS = AT.replace(microsecond=945000)
CLOCK_US = 37_230_123_456  # 10:20:30.123456

DEFAULT = ConnectorModes()
SECOND = ConnectorModes.model_validate(
    {
        "decimal.handling.mode": "double",
        "time.precision.mode": "connect",
        "binary.handling.mode": "hex",
        "interval.handling.mode": "string",
    }
)
THIRD = ConnectorModes.model_validate(
    {
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "binary.handling.mode": "base64-url-safe",
    }
)
FOURTH = ConnectorModes.model_validate({"binary.handling.mode": "base64"})


@dataclass(frozen=True)
class Case:
    """One documented encoding: the value the connector sends, the field schema the
    wrapper carries (None: an event without it), and what the declared column stores."""

    id: str
    declared: str
    schema: dict | None
    raw: Any
    expected: Any
    modes: ConnectorModes = DEFAULT


CASES = [
    # decimal.handling.mode=precise: Decimal, VariableScaleDecimal, MONEY (scale from
    # money.fraction.digits)
    Case("decimal", "decimal(10,2)", decimal_schema(2), unscaled(-1234), Decimal("-12.34")),
    Case("decimal-nowrap", "decimal(10,2)", None, unscaled(-1234), Decimal("-12.34")),
    Case("decimal-wider", "decimal(12,3)", decimal_schema(2), unscaled(5), Decimal("0.050")),
    Case(
        "decimal-38",
        "decimal(38,2)",
        decimal_schema(2, 38),
        unscaled(10**37 + 1),
        Decimal("1" + "0" * 35 + ".01"),
    ),
    Case(
        "varscale",
        "decimal(10,3)",
        VARIABLE_SCALE,
        {"scale": 3, "value": unscaled(12345)},
        Decimal("12.345"),
    ),
    Case(
        "varscale-nowrap",
        "decimal(10,3)",
        None,
        {"scale": 1, "value": unscaled(5)},
        Decimal("0.500"),
    ),
    Case(
        "varscale-text",
        "string",
        VARIABLE_SCALE,
        {"scale": 40, "value": unscaled(1)},
        "0." + "0" * 39 + "1",
    ),
    Case("varscale-long", "long", VARIABLE_SCALE, {"scale": 0, "value": unscaled(-7)}, -7),
    Case("money", "decimal(12,2)", decimal_schema(2), unscaled(123456), Decimal("1234.56")),
    # decimal.handling.mode=double / string
    Case("double", "decimal(10,2)", DOUBLE, 12.5, Decimal("12.50"), SECOND),
    Case("double-nowrap", "decimal(10,2)", None, 12.5, Decimal("12.50"), SECOND),
    Case("double-money", "decimal(12,2)", None, 1234.56, Decimal("1234.56"), SECOND),
    Case("double-integral-long", "long", DOUBLE, 42.0, 42, SECOND),
    Case("double-column", "double", DOUBLE, 0.25, 0.25, SECOND),
    Case("decimal-string", "decimal(10,3)", STRING, "-0.125", Decimal("-0.125"), THIRD),
    Case("decimal-string-nowrap", "decimal(10,2)", None, "1234", Decimal("1234.00"), THIRD),
    # beyond a double: exact through the decoder, the contract frame and Iceberg
    Case("decimal-string-long", "long", STRING, "-9007199254740993", -(2**53) - 1, THIRD),
    Case("decimal-string-long-nowrap", "long", None, "42", 42, THIRD),
    # DATE, in every time.precision.mode
    Case("date", "date", DEBEZIUM_DATE, 20000, date(2024, 10, 4)),
    Case("date-connect", "date", CONNECT_DATE, 20000, date(2024, 10, 4), SECOND),
    Case("date-nowrap", "date", None, 20000, date(2024, 10, 4)),
    Case("date-text", "string", DEBEZIUM_DATE, -1, "1969-12-31"),
    # TIME: adaptive (Time, MicroTime), adaptive_time_microseconds, connect; NanoTime
    Case("time", "long", TIME, 37_230_123, 37_230_123_000),
    Case("micro-time", "long", MICRO_TIME, CLOCK_US, CLOCK_US, THIRD),
    Case("nano-time", "long", NANO_TIME, CLOCK_US * 1000, CLOCK_US),
    Case("connect-time", "long", CONNECT_TIME, 37_230_123, 37_230_123_000, SECOND),
    Case("time-text", "string", MICRO_TIME, CLOCK_US, "10:20:30.123456"),
    Case("time-text-whole", "string", TIME, 3_600_000, "01:00:00"),
    Case("time-end-of-day", "string", MICRO_TIME, 86_400_000_000, "24:00:00"),
    # TIMESTAMP: Timestamp, MicroTimestamp, NanoTimestamp, Kafka Connect's; infinity
    Case("timestamp", "timestamp", TIMESTAMP, 1529507596945, AT_MS),
    Case("micro-timestamp", "timestamp", MICRO_TIMESTAMP, 1529507596945104, AT),
    Case("nano-timestamp", "timestamp", NANO_TIMESTAMP, 1529507596945104000, AT),
    Case("connect-timestamp", "timestamp", CONNECT_TIMESTAMP, 1529507596945, AT_MS, SECOND),
    Case("timestamp-nowrap", "timestamp", None, 1529507596945104, AT),
    Case("timestamp-nowrap-us", "timestamp", None, 1529507596945104, AT, THIRD),
    Case("timestamp-nowrap-connect", "timestamp", None, 1529507596945, AT_MS, SECOND),
    Case(
        "timestamp-text",
        "string",
        MICRO_TIMESTAMP,
        1529507596945104,
        "2018-06-20T15:13:16.945104+00:00",
    ),
    Case("timestamp-infinity", "string", MICRO_TIMESTAMP, 9223372036825200000, "infinity"),
    Case("timestamp-minus-infinity", "string", TIMESTAMP, -9223372036832400000, "-infinity"),
    # TIMESTAMPTZ: ZonedTimestamp (UTC; an offset is honoured), TIMETZ: ZonedTime
    Case("zoned", "timestamp", ZONED_TIMESTAMP, "2018-06-20T15:13:16.945104Z", AT),
    Case("zoned-offset", "timestamp", ZONED_TIMESTAMP, "2018-06-20T17:13:16.945104+02:00", AT),
    Case("zoned-nanos", "timestamp", ZONED_TIMESTAMP, "2018-06-20T15:13:16.945104000Z", AT),
    Case("zoned-nowrap", "timestamp", None, "2018-06-20T15:13:16.945104Z", AT),
    Case("zoned-infinity", "string", ZONED_TIMESTAMP, "infinity", "infinity"),
    Case("zoned-time", "string", ZONED_TIME, "10:15:30.5Z", "10:15:30.5Z"),
    Case("zoned-time-offset", "string", ZONED_TIME, "10:15:30+01:00", "10:15:30+01:00"),
    # INTERVAL: MicroDuration (numeric) or ISO-8601 text (string)
    Case("micro-duration", "long", MICRO_DURATION, 93_784_000_005, 93_784_000_005),
    Case("micro-duration-nowrap", "long", None, -1_000_000, -1_000_000),
    Case("micro-duration-text", "string", MICRO_DURATION, 93_784_000_005, "PT93784.000005S"),
    Case("interval", "string", INTERVAL, "P1Y2M3DT4H5M6.78S", "P1Y2M3DT4H5M6.78S", SECOND),
    Case(
        "interval-negative", "string", INTERVAL, "P-1Y0M0DT0H0M-0.5S", "P-1Y0M0DT0H0M-0.5S", SECOND
    ),
    Case("interval-nowrap", "string", None, "P0Y0M3DT0H0M0S", "P0Y0M3DT0H0M0S", SECOND),
    # UUID, JSON/JSONB, XML, ENUM, EnumSet, LTREE: the database's text
    Case(
        "uuid",
        "string",
        UUID,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ),
    Case("json", "string", JSON, '{"b": [1, 2], "a": null}', '{"b": [1, 2], "a": null}'),
    Case("json-nowrap", "string", None, '{"a": 1}', '{"a": 1}'),
    Case("xml", "string", XML, "<a>1</a>", "<a>1</a>"),
    Case("enum", "string", ENUM, "gold", "gold"),
    Case("enum-set", "string", ENUM_SET, "a,c", "a,c"),
    Case("ltree", "string", named("string", "io.debezium.data.Ltree"), "a.b", "a.b"),
    # arrays: JSON text
    Case("array", "string", TEXT_ARRAY, ["x", None, "y"], '["x", null, "y"]'),
    Case("array-of-dates", "string", DATE_ARRAY, [20000, -1], '["2024-10-04", "1969-12-31"]'),
    Case("array-nowrap", "string", None, [3, 1, 2], "[3, 1, 2]"),
    Case(
        "map-pairs",
        "string",
        {"type": "map", "keys": {"type": "int32"}, "values": STRING},
        [[2, "b"], [1, "a"]],
        '{"1": "a", "2": "b"}',
    ),
    Case(
        "map",
        "string",
        {"type": "map", "keys": STRING, "values": STRING},
        {"b": "1", "a": "2"},
        '{"a": "2", "b": "1"}',
    ),
    # BIT(1) is a boolean; BIT(n) / BIT VARYING: Bits
    Case("bit", "boolean", BOOLEAN, True, True),
    Case("bits", "long", BITS_10, bits("1000000001"), 513),
    Case("bits-text", "string", BITS_10, bits("0000000101"), "0000000101"),
    Case(
        "varbits-text",
        "string",
        named("bytes", "io.debezium.data.Bits", length="2147483647"),
        bits("101"),
        "101",
    ),
    # BYTEA: bytes (base64 in JSON), base64, base64-url-safe, hex
    Case("bytea", "string", BYTES, b64(b"\x00\xffdebezium"), b64(b"\x00\xffdebezium")),
    Case("bytea-nowrap", "string", None, b64(b"\x00\xff"), b64(b"\x00\xff")),
    Case("bytea-base64", "string", STRING, b64(b"\xfb\xff"), "+/8=", FOURTH),
    Case("bytea-base64-url-safe", "string", STRING, "-_8=", "-_8=", THIRD),
    Case("bytea-hex", "string", STRING, "00ff6465", "00ff6465", SECOND),
    Case("bytea-hex-nowrap", "string", None, "00FF", "00FF", SECOND),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_documented_encoding_fits_its_declared_type(case: Case):
    value = decode_value(case.raw, case.schema, case.declared, case.modes)
    assert value == case.expected and type(value) is type(case.expected)
    assert fits(value, iceberg_type(case.declared))


@pytest.mark.parametrize(
    ("schema", "raw", "declared", "modes"),
    [
        (BYTES, TOAST_PLACEHOLDER, "string", DEFAULT),
        (BYTES, b64(TOAST_PLACEHOLDER.encode()), "string", DEFAULT),
        (None, b64(TOAST_PLACEHOLDER.encode()), "string", DEFAULT),
        (STRING, TOAST_PLACEHOLDER.encode().hex(), "string", SECOND),
        (None, TOAST_PLACEHOLDER.encode().hex().upper(), "string", SECOND),
        (STRING, base64.urlsafe_b64encode(TOAST_PLACEHOLDER.encode()).decode(), "string", THIRD),
        (TEXT_ARRAY, [TOAST_PLACEHOLDER], "string", DEFAULT),
        (
            {"type": "array", "items": {"type": "int32"}},
            list(TOAST_PLACEHOLDER.encode()),
            "string",
            DEFAULT,
        ),
        (JSON, TOAST_PLACEHOLDER, "string", DEFAULT),
    ],
)
def test_the_unchanged_toast_placeholder_in_every_encoding_is_unavailable(
    schema, raw, declared, modes
):
    assert decode_value(raw, schema, declared, modes) is UNAVAILABLE


def test_a_text_column_in_bytes_mode_is_not_mistaken_for_a_placeholder():
    text = b64(TOAST_PLACEHOLDER.encode())
    assert decode_value(text, STRING, "string", DEFAULT) == text


@pytest.mark.parametrize(
    ("schema", "raw", "declared", "modes"),
    [
        (NANO_TIMESTAMP, 1529507596945104001, "timestamp", DEFAULT),  # would lose 1 ns
        (NANO_TIME, CLOCK_US * 1000 + 1, "long", DEFAULT),
        (ZONED_TIMESTAMP, "2018-06-20T15:13:16.945104001Z", "timestamp", DEFAULT),
        (ZONED_TIMESTAMP, "yesterday", "timestamp", DEFAULT),
        (ZONED_TIME, "25:00:00Z", "string", DEFAULT),
        (MICRO_TIME, -1, "long", DEFAULT),
        (MICRO_TIME, 86_400_000_001, "long", DEFAULT),
        (MICRO_TIMESTAMP, "1529507596945104", "timestamp", DEFAULT),  # not an integer
        (decimal_schema(2), "%%%", "decimal(10,2)", DEFAULT),
        (None, "%%%", "decimal(10,2)", DEFAULT),
        (VARIABLE_SCALE, "12.5", "decimal(10,2)", DEFAULT),
        (BYTES, "not base64!", "string", DEFAULT),
        (BITS_10, "***", "long", DEFAULT),
        (UUID, "not-a-uuid", "string", DEFAULT),
        (INTERVAL, "1 day", "string", SECOND),
        (TEXT_ARRAY, "x", "string", DEFAULT),
        (None, "2025-13-01", "date", DEFAULT),
    ],
)
def test_a_value_its_encoding_cannot_produce_is_a_decode_error(schema, raw, declared, modes):
    with pytest.raises((ValueError, TypeError, ArithmeticError)):
        decode_value(raw, schema, declared, modes)


@pytest.mark.parametrize(
    ("schema", "raw", "declared", "modes"),
    [
        (None, "abc", "long", DEFAULT),  # a string into a long column
        (STRING, "abc", "long", THIRD),
        (None, "1234", "long", DEFAULT),  # digits are a number only in decimal string mode
        (None, 7, "string", DEFAULT),  # a number into a text column: a type change
        (DOUBLE, 0.1 + 0.2, "decimal(10,2)", SECOND),  # a double that is not 0.30
        (decimal_schema(3), unscaled(12345), "decimal(10,2)", DEFAULT),  # 12.345
        (decimal_schema(0), unscaled(10**9), "decimal(10,2)", DEFAULT),  # too many digits
        (STRING, "NAN", "decimal(10,2)", THIRD),
        (DOUBLE, float("nan"), "decimal(10,2)", SECOND),
        (MICRO_TIMESTAMP, 9223372036825200000, "timestamp", DEFAULT),  # infinity
        (ZONED_TIMESTAMP, "-infinity", "timestamp", DEFAULT),
        (MICRO_TIME, CLOCK_US, "timestamp", DEFAULT),
        (MICRO_TIME, CLOCK_US, "int", DEFAULT),  # more than 32 bits of microseconds
        (ZONED_TIME, "10:15:30Z", "long", DEFAULT),
        (INTERVAL, "P1D", "long", SECOND),
        (JSON, "{}", "long", DEFAULT),
        (BYTES, b64(b"\x01"), "long", DEFAULT),
        (DEBEZIUM_DATE, 1, "timestamp", DEFAULT),
        (BOOLEAN, True, "long", DEFAULT),
    ],
)
def test_a_value_that_cannot_fit_its_declared_type_is_still_a_schema_break(
    schema, raw, declared, modes
):
    value = decode_value(raw, schema, declared, modes)
    assert not fits(value, iceberg_type(declared))
    with pytest.raises(SchemaBreak, match=r"column 'c' is .* but the source sent"):
        plan("silver.t", {"c": declared}, None, [("LSN 1", {"c": value})])


def test_an_undeclared_column_keeps_the_values_it_always_had():
    """Columns that evolved into silver before the declared types took part keep their
    type: only the encodings decoded then are decoded without a declaration."""
    assert decode_value(unscaled(5), decimal_schema(1), None) == Decimal("0.5")
    assert decode_value(CLOCK_US, MICRO_TIME, None) == CLOCK_US
    assert decode_value(b64(b"\x01"), BYTES, None) == b64(b"\x01")
    assert decode_value([1, 2], TEXT_ARRAY, None) == [1, 2]


def test_without_the_wrapper_the_connector_modes_decide():
    """The same integer is microseconds in the adaptive modes and milliseconds in connect
    mode; the same text is base64 in precise mode and digits in string mode."""
    assert decode_value(1529507596945, None, "timestamp", DEFAULT).year == 1970
    assert decode_value(1529507596945, None, "timestamp", SECOND) == AT_MS
    assert decode_value("1234", None, "decimal(10,2)", DEFAULT) == Decimal("-26588.24")
    assert decode_value("1234", None, "decimal(10,2)", THIRD) == Decimal("1234.00")


def test_decoding_is_exact_beyond_a_double_and_beyond_28_digits():
    """A NUMERIC text above 2**53 is not read through a float, and a Decimal's digits
    are not rounded to the decimal module's default 28."""
    assert decode_value("9007199254740993", STRING, "long", THIRD) == 2**53 + 1
    assert decode_value("9007199254740993", None, "long", THIRD) == 2**53 + 1
    huge = decode_value(unscaled(10**37 + 1), decimal_schema(0, 38), "decimal(38,0)")
    assert huge == 10**37 + 1


def test_a_whole_event_decodes_with_its_source_modes():
    value = {
        "op": "c",
        "after": {"id": "k", "at": 1529507596945, "amount": 12.5, "blob": "00ff"},
        "source": {"lsn": 5, "ts_ms": 1, "txId": 2},
    }
    declared = {"id": "string", "at": "timestamp", "amount": "decimal(10,2)", "blob": "string"}
    change = parse_change(json.dumps(value).encode(), declared, SECOND)
    assert change.after == {"id": "k", "at": AT_MS, "amount": Decimal("12.50"), "blob": "00ff"}
    bad = {**value, "after": {**value["after"], "at": "never"}}
    with pytest.raises(RecordRejected, match=r"after\.at: cannot decode 'never'") as rejected:
        parse_change(json.dumps(bad).encode(), declared, SECOND)
    assert rejected.value.rule == "decode"


# --- through the broker, bronze and silver -----------------------------------------------

MODES = {"default": DEFAULT, "second": SECOND, "third": THIRD, "fourth": FOURTH}


def _column(declared: str) -> str:
    return "c_" + "".join(ch if ch.isalnum() else "_" for ch in declared).strip("_")


E2E_COLUMNS = {"id": "string", **{_column(c.declared): c.declared for c in CASES}}


def _source(label: str, modes: ConnectorModes) -> CdcSource:
    return CdcSource(
        name=f"dbz_types_{label}",
        topic=f"dbz.public.types_{label}",
        keys=("id",),
        columns=E2E_COLUMNS,
        connector=modes.model_dump(by_alias=True),
    )


def _event(key: str, after: dict | None, lsn: int, fields: dict[str, dict] | None, op="c"):
    """A change event as the connector writes it; ``fields``: the schema wrapper's row
    fields (None: an event without the wrapper)."""
    payload = {
        "before": None,
        "after": after,
        "source": {"connector": "postgresql", "name": "dbz", "lsn": lsn, "ts_ms": lsn, "txId": lsn},
        "op": op,
        "ts_ms": lsn + 1,
    }
    if fields is None:
        return key, payload
    row = {
        "type": "struct",
        "optional": True,
        "fields": [{**fields.get(c, STRING), "field": c} for c in E2E_COLUMNS],
    }
    schema = {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "string", "field": "op", "optional": False},
        ],
    }
    return key, {"schema": schema, "payload": payload}


def _case_events(cases: list[Case]) -> list[tuple[str, dict]]:
    events = []
    for lsn, case in enumerate(cases, start=100):
        column = _column(case.declared)
        after = {c: None for c in E2E_COLUMNS} | {"id": case.id, column: case.raw}
        fields = None if case.schema is None else {"id": STRING, column: case.schema}
        events.append(_event(case.id, after, lsn, fields))
    return events


def _toast_events(modes: ConnectorModes) -> list[tuple[str, dict]]:
    """A row whose bytea-like text column stays unchanged (TOASTed) in an update, the
    placeholder written in the source's binary mode, with and without the wrapper."""
    placeholder = TOAST_PLACEHOLDER.encode()
    encoded = {
        "bytes": b64(placeholder),
        "base64": b64(placeholder),
        "base64-url-safe": base64.urlsafe_b64encode(placeholder).decode(),
        "hex": placeholder.hex(),
    }[modes.binary_handling_mode]
    schema = BYTES if modes.binary_handling_mode == "bytes" else STRING
    events = []
    for n, fields in enumerate((None, {"id": STRING, "c_string": schema})):
        key = f"toast-{n}"
        row = {c: None for c in E2E_COLUMNS} | {"id": key, "c_long": 1, "c_string": "kept"}
        events.append(_event(key, row, 10 + 2 * n, fields))
        events.append(
            _event(key, row | {"c_long": 2, "c_string": encoded}, 11 + 2 * n, fields, "u")
        )
    return events


def _publish(settings, source: CdcSource, events: list[tuple[str, dict]]) -> str:
    from resources.kafka import KafkaResource

    topic = source.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    try:
        for key, value in events:
            producer.send(topic, key=key.encode(), value=json.dumps(value).encode())
        producer.flush()
    finally:
        producer.close()
    return topic


@pytest.fixture
def declared_sources(monkeypatch):
    """The test's CDC sources, one per set of connector modes, known to the contracts as
    if sources.yml declared them."""
    from lakehouse.quality import contracts

    declared = {label: _source(label, modes) for label, modes in MODES.items()}
    shipped = contracts._table_sources
    monkeypatch.setattr(contracts, "_table_sources", lambda: [*shipped(), *declared.values()])
    return declared


def _build_silver(sources: list[CdcSource], instance=None, raise_on_error=True):
    from lakehouse.defs.silver.cdc import cdc_silver_asset
    from resources.iceberg import IcebergCatalogResource
    from resources.spark import SparkResource

    return dg.materialize(
        [cdc_silver_asset(s) for s in sources],
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def _ingest(settings, source: CdcSource, events, run_id: str, undecodable: int = 0) -> None:
    from lakehouse.ingest.kafka.reader import ingest_kafka_batch
    from resources.iceberg import IcebergCatalogResource
    from resources.kafka import KafkaResource

    topic = _publish(settings, source, events)
    batch = ingest_kafka_batch(
        IcebergCatalogResource().load(), KafkaResource(), source, topic, run_id
    )
    assert batch.landed == len(events) - undecodable
    assert batch.quarantine_rules == ({"decode": undecodable} if undecodable else {})


@pytest.mark.timeout(900)
def test_every_encoding_and_mode_lands_in_silver_typed(lakehouse_env, declared_sources):
    from resources.iceberg import IcebergCatalogResource

    for label, source in declared_sources.items():
        cases = [c for c in CASES if c.modes == MODES[label]]
        _ingest(
            lakehouse_env, source, [*_case_events(cases), *_toast_events(source.connector)], "r1"
        )
    with dg.instance_for_test() as instance:
        assert _build_silver(list(declared_sources.values()), instance).success

        catalog = IcebergCatalogResource().load()
        for label, source in declared_sources.items():
            rows = {
                r["id"]: r
                for r in catalog.load_table(f"silver.{source.name}").scan().to_arrow().to_pylist()
            }
            for case in (c for c in CASES if c.modes == MODES[label]):
                stored = rows[case.id][_column(case.declared)]
                assert stored == case.expected, (label, case.id, stored)
                others = {k: v for k, v in rows[case.id].items() if k.startswith("c_")}
                assert sum(v is not None for v in others.values()) == 1, (label, case.id)
            # the unchanged TOAST value is carried forward, in every binary mode
            for key in ("toast-0", "toast-1"):
                assert (rows[key]["c_long"], rows[key]["c_string"]) == (2, "kept"), (label, key)

        # a value its encoding cannot produce (a nanosecond Iceberg would drop) is
        # quarantined at bronze; a value that truly cannot fit its declared type still
        # stops the source
        source = declared_sources["default"]
        nanos = {c: None for c in E2E_COLUMNS} | {"id": "ns", "c_timestamp": 1529507596945104001}
        after = {c: None for c in E2E_COLUMNS} | {"id": "bad", "c_long": "not a number"}
        events = [
            _event("ns", nanos, 499, {"id": STRING, "c_timestamp": NANO_TIMESTAMP}),
            _event("bad", after, 500, None),
        ]
        _ingest(lakehouse_env, source, events, "r2", undecodable=1)
        failed = _build_silver([source], instance, raise_on_error=False)
        assert not failed.success
        errors = [
            e.event_specific_data.error.to_string()
            for e in failed.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
        assert any(
            "column 'c_long' is long but the source sent str 'not a number' at LSN 500" in m
            for m in errors
        ), errors
