"""The sources declared in ``sources.yml``: what to read, its schema, keys and PII columns.

The file shapes the Dagster definitions (one bronze asset, job and sensor per
source), so it is read when the code location loads; hosts, topic prefixes and
buckets stay run-time settings.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from datetime import UTC, tzinfo
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakehouse.declarations.layouts import (
    MAX_SNAPSHOT_AGE_MS,
    TableLayout,
    cdc_bronze_layout,
    database_bronze_layout,
    kafka_bronze_layout,
    landing_bronze_layout,
)
from lakehouse.declarations.pii import PiiPolicy
from lakehouse.settings import PROJECT_ROOT

SOURCES_FILE = PROJECT_ROOT / "sources.yml"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TYPE = re.compile(r"^(string|int|long|double|boolean|date|timestamp|decimal\(\d+,\s*\d+\))$")


def _check_types(columns: dict[str, str]) -> dict[str, str]:
    bad = {c: t for c, t in columns.items() if not TYPE.match(t.strip())}
    if bad:
        raise ValueError(f"unknown column types {bad}; see the header of sources.yml")
    return columns


class NewColumns(StrEnum):
    WITHHOLD = "withhold"
    ALLOW = "allow"


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    keys: tuple[str, ...] = ()
    # column -> masking policy; the plain list form ``[a, b]`` means ``hash`` for each
    pii: dict[str, PiiPolicy] = Field(default_factory=dict)
    # columns the source starts sending that sources.yml does not name: withheld (null
    # in silver until classified) or allowed; None = withhold when the source has PII
    new_columns: NewColumns | None = None
    # columns reviewed as not personal: they flow to silver as they arrive
    plain: tuple[str, ...] = ()
    # how long the bronze table keeps snapshots (its Iceberg property
    # history.expire.max-snapshot-age-ms); None: LAKEHOUSE_SNAPSHOT_RETENTION_HOURS
    snapshot_retention_hours: int | None = Field(default=None, gt=0, le=876_000)  # 100 years

    @field_validator("pii", mode="before")
    @classmethod
    def _pii_policies(cls, value):
        if isinstance(value, list | tuple):
            return {column: PiiPolicy.HASH for column in value}
        return value

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"source name {value!r} must be lower_snake_case (it names tables)")
        return value

    @property
    def new_column_policy(self) -> NewColumns:
        """Withhold by default where a source carries PII: an unreviewed column might too."""
        if self.new_columns is not None:
            return self.new_columns
        return NewColumns.WITHHOLD if self.pii else NewColumns.ALLOW

    @property
    def classified(self) -> frozenset[str]:
        """Columns sources.yml names: declared, under ``pii`` or under ``plain``."""
        declared = getattr(self, "columns", {})
        # a Kafka source maps bronze columns to event fields: both are names it knows
        fields = declared.values() if isinstance(self, KafkaSource) else ()
        return frozenset((*declared, *fields, *self.pii, *self.plain))

    def withheld(self, columns) -> list[str]:
        """Of ``columns`` (evolved into silver), those that must stay null there."""
        if self.new_column_policy is NewColumns.ALLOW:
            return []
        return sorted(c for c in columns if c not in self.classified)

    @property
    def layout(self) -> TableLayout:
        """The bronze table's layout, with the source's snapshot retention if it sets one."""
        layout = self._bronze_layout()
        if self.snapshot_retention_hours is None:
            return layout
        age_ms = str(self.snapshot_retention_hours * 3_600_000)
        return layout.with_properties({MAX_SNAPSHOT_AGE_MS: age_ms})

    @abstractmethod
    def _bronze_layout(self) -> TableLayout: ...

    @property
    def bronze_name(self) -> str:
        return self.name

    @property
    def bronze_table(self) -> str:
        return f"bronze.{self.bronze_name}"

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.bronze_name}"


class KafkaSource(_Source):
    """JSON events on a Kafka topic."""

    topic: str
    format: Literal["json"] = "json"
    required: tuple[str, ...] = ()
    columns: dict[str, str] = Field(description="bronze column -> event field")

    def resolved_topic(self, prefix: str) -> str:
        return f"{prefix}{self.topic}"

    def _bronze_layout(self) -> TableLayout:
        return kafka_bronze_layout(list(self.columns))


class _TableSource(_Source):
    """A source with declared, typed columns and a primary key among them."""

    columns: dict[str, str] = Field(description="column -> declared type")

    @field_validator("columns")
    @classmethod
    def _types(cls, columns: dict[str, str]) -> dict[str, str]:
        return _check_types(columns)

    @model_validator(mode="after")
    def _keys_declared(self) -> _TableSource:
        if not self.keys or any(k not in self.columns for k in self.keys):
            raise ValueError(f"source {self.name!r} needs keys that are among its columns")
        return self


class ConnectorModes(BaseModel):
    """How the source's Debezium PostgreSQL connector is configured (``connector:`` of a CDC
    source, the connector's own option names and defaults).

    An event with the ``schema`` wrapper names each value's encoding itself; these say
    what an event without it means (is an integer timestamp milli- or microseconds? is
    a decimal's text base64 or digits?), and how a ``bytea`` column's unchanged-TOAST
    placeholder is written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    decimal_handling_mode: Literal["precise", "double", "string"] = Field(
        "precise", alias="decimal.handling.mode"
    )
    time_precision_mode: Literal["adaptive", "adaptive_time_microseconds", "connect"] = Field(
        "adaptive", alias="time.precision.mode"
    )
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] = Field(
        "bytes", alias="binary.handling.mode"
    )
    interval_handling_mode: Literal["numeric", "string"] = Field(
        "numeric", alias="interval.handling.mode"
    )


class CdcSource(_TableSource):
    """Debezium change events of one database table (``<server>.<schema>.<table>``).

    Bronze keeps the raw changelog (``bronze.cdc_<name>``); silver keeps the current
    state (``silver.<name>``) and its SCD2 history (``silver.<name>_history``).
    ``columns`` are the table's declared types: every documented Debezium encoding that
    fits one losslessly is stored as it (``lakehouse.ingest.debezium``); ``connector``
    says how events without Debezium's ``schema`` wrapper are encoded.
    """

    topic: str
    connector: ConnectorModes = Field(default_factory=ConnectorModes)

    @field_validator("connector", mode="before")
    @classmethod
    def _known_options(cls, value, info):
        """Errors name the source and the option (pydantic's would give only an index)."""
        if not isinstance(value, dict):
            return value
        name = info.data.get("name", "?")
        fields = {f.alias: f for f in ConnectorModes.model_fields.values()}
        for option, given in value.items():
            if option not in fields:
                raise ValueError(
                    f"cdc source {name!r}: unknown connector option {option!r} "
                    f"(known: {', '.join(sorted(fields))})"
                )
            allowed = get_args(fields[option].annotation)
            if given not in allowed:
                raise ValueError(
                    f"cdc source {name!r}: connector option {option!r} is {given!r}, "
                    f"expected one of {', '.join(allowed)}"
                )
        return value

    @property
    def bronze_name(self) -> str:
        return f"cdc_{self.name}"

    def resolved_topic(self, prefix: str) -> str:
        return f"{prefix}{self.topic}"

    def _bronze_layout(self) -> TableLayout:
        return cdc_bronze_layout()


class DatabaseSource(_TableSource):
    """A table of the OLTP database read incrementally by a watermark column.

    The position is (watermark, key) of the last row read, committed with the rows;
    rows are read in (watermark, key) order, so equal timestamps are never split or
    re-read. Deletes are invisible to a watermark: they reach silver through CDC.
    """

    table: str
    watermark: str

    @model_validator(mode="after")
    def _watermark_declared(self) -> DatabaseSource:
        if self.watermark not in self.columns:
            raise ValueError(f"watermark {self.watermark!r} of {self.name!r} is not a column")
        return self

    def _bronze_layout(self) -> TableLayout:
        return database_bronze_layout(list(self.columns))

    @property
    def zone(self) -> tzinfo:
        """Where a naive timestamp is wall time: a row's text carries its offset
        (timestamptz) or is UTC."""
        return UTC


_CSV_ONLY = ("delimiter", "quote", "escape", "header", "null_values")
_PARQUET_DIALECT = ("time_zone",)  # a Parquet file states the rest itself


class LandingDialect(BaseModel):
    """How a partner writes its files (``dialect:`` of a landing source). The defaults are
    RFC 4180 CSV with a header, UTF-8 (a BOM allowed), compression by the key's suffix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = ","
    quote: str | None = '"'  # None: fields are never quoted
    escape: str | None = None  # None: a quote inside a quoted field is doubled
    header: bool = True  # False: the fields come in the declared columns' order
    null_values: tuple[str, ...] = ()  # field texts that mean null, e.g. ["NA", "\\N", ""]
    encoding: str = "utf-8"
    compression: Literal["auto", "none", "gzip", "zstd"] = "auto"  # auto: .gz / .zst
    # IANA zone of timestamps written without an offset (CSV, JSON lines, naive Parquet);
    # checked by LandingSource so that an unknown name fails naming the source
    time_zone: str = "UTC"

    @field_validator("delimiter", "quote", "escape")
    @classmethod
    def _one_character(cls, value: str | None, info) -> str | None:
        if value is not None and (len(value) != 1 or value in "\r\n"):
            raise ValueError(f"{info.field_name} must be one character, not a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _distinct_characters(self) -> LandingDialect:
        used = [c for c in (self.delimiter, self.quote, self.escape) if c is not None]
        if len(set(used)) != len(used):
            raise ValueError("delimiter, quote and escape must be different characters")
        return self

    @property
    def zone(self) -> tzinfo:
        """``time_zone`` as a tzinfo (the name was checked when the sources loaded)."""
        return ZoneInfo(self.time_zone)

    @property
    def plain_csv(self) -> bool:
        """RFC 4180 with a header and no null markers: the fast CSV readers apply."""
        return (self.delimiter, self.quote, self.escape, self.header, self.null_values) == (
            ",",
            '"',
            None,
            True,
            (),
        )


class LandingSource(_Source):
    """Files under ``s3://<landing bucket>/<prefix>``."""

    format: Literal["csv", "jsonl", "parquet"]
    columns: dict[str, str] = Field(description="column -> declared type")
    prefix: str | None = None
    dialect: LandingDialect = Field(default_factory=LandingDialect)

    @property
    def zone(self) -> tzinfo:
        """Where a naive timestamp is wall time: the dialect's ``time_zone``."""
        return self.dialect.zone

    @model_validator(mode="after")
    def _dialect_fits_the_format(self) -> LandingSource:
        given = self.dialect.model_fields_set
        if self.format != "csv" and (wrong := [k for k in _CSV_ONLY if k in given]):
            raise ValueError(
                f"landing source {self.name!r}: dialect.{wrong[0]} applies to csv files, "
                f"not {self.format}"
            )
        try:
            self.dialect.zone  # noqa: B018 (the lookup is the check)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(
                f"landing source {self.name!r}: dialect.time_zone {self.dialect.time_zone!r} "
                "is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
            ) from None
        if self.format == "parquet" and (wrong := sorted(given - {*_PARQUET_DIALECT})):
            raise ValueError(
                f"landing source {self.name!r}: dialect.{wrong[0]} does not apply to parquet "
                "(its encoding and compression are in the file)"
            )
        return self

    @field_validator("columns")
    @classmethod
    def _types(cls, columns: dict[str, str]) -> dict[str, str]:
        return _check_types(columns)

    @property
    def key_prefix(self) -> str:
        return self.prefix or f"{self.name}/"

    def _bronze_layout(self) -> TableLayout:
        return landing_bronze_layout(list(self.columns))


class Sources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kafka: tuple[KafkaSource, ...] = ()
    cdc: tuple[CdcSource, ...] = ()
    database: tuple[DatabaseSource, ...] = ()
    landing: tuple[LandingSource, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Sources:
        names = [s.bronze_name for s in (*self.kafka, *self.cdc, *self.database, *self.landing)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique (they name tables): {duplicates}")
        return self

    def kafka_source(self, name: str) -> KafkaSource:
        return next(s for s in self.kafka if s.name == name)

    def cdc_source(self, name: str) -> CdcSource:
        return next(s for s in self.cdc if s.name == name)

    def database_source(self, name: str) -> DatabaseSource:
        return next(s for s in self.database if s.name == name)

    def landing_source(self, name: str) -> LandingSource:
        return next(s for s in self.landing if s.name == name)


Source = KafkaSource | CdcSource | DatabaseSource | LandingSource


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key(s) {duplicates}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def load_sources(path: Path = SOURCES_FILE) -> Sources:
    """Parse and validate the sources file; errors name the file and the offending entry."""
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    try:
        return Sources.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


@cache
def sources() -> Sources:
    return load_sources()
