"""The jars a local Spark session needs for Iceberg, built from what these machines reach.

Spark's ``--packages`` needs Maven, which is out of reach. Instead:
- the Iceberg Spark runtime jar comes from the PyPI wheel ``snowpark-connect-deps-iceberg``;
- that jar lacks Iceberg's relocated Jackson classes, so they are rebuilt with jarjar
  (Debian ``libjarjar-java`` + ``libasm-java``) from pyspark's own Jackson jars;
- the SQLite and PostgreSQL JDBC drivers are Debian's, put on the driver class path
  (``java.sql.DriverManager`` only sees drivers on the system class loader).

``build_spark_jars`` fills a cache under the state directory and is idempotent: a
manifest of the inputs decides whether anything needs rebuilding. ``spark_jars``
only checks, and says what is missing, so a run never builds jars as a side effect.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lakehouse.settings import LakehouseSettings

RECIPE_VERSION = "1"
# The one Iceberg version of every Spark: the local jar cache's (from the wheel) and the
# production image's (ARG ICEBERG_VERSION in deploy/docker/Dockerfile, downloaded from
# Maven); tests/test_spark_image.py fails when the two differ. Tables written by one are
# read by the other, so a version skew would surface as a production-only behaviour.
ICEBERG_VERSION = "1.10.2"
ICEBERG_RUNTIME = f"iceberg-spark-runtime-3.5_2.12-{ICEBERG_VERSION}.jar"
JACKSON_JARS = (
    "jackson-core-2.15.2.jar",
    "jackson-databind-2.15.2.jar",
    "jackson-annotations-2.15.2.jar",
    "jackson-datatype-jsr310-2.15.2.jar",
)
SHADED_JACKSON = "iceberg-shaded-jackson-2.15.2.jar"
JARJAR_RULE = "rule com.fasterxml.jackson.** org.apache.iceberg.shaded.com.fasterxml.jackson.@1\n"
DEBIAN_JAVA = Path("/usr/share/java")
JARJAR_CLASSPATH = ("jarjar.jar", "asm.jar", "asm-commons.jar", "asm-tree.jar")
JDBC_DRIVERS = {
    "sqlite-jdbc.jar": "libxerial-sqlite-jdbc-java",
    "postgresql.jar": "libpostgresql-jdbc-java",
}
DEBIAN_PACKAGES = {
    "jarjar.jar": "libjarjar-java",
    "asm.jar": "libasm-java",
    "asm-commons.jar": "libasm-java",
    "asm-tree.jar": "libasm-java",
    **JDBC_DRIVERS,
}
LOG4J2_CONFIG = "log4j2.properties"
# Spark's own INFO chatter would bury the run log; warnings still reach stderr.
LOG4J2_PROPERTIES = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
logger.hadoop_native.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop_native.level = error
logger.truncated_plan.name = org.apache.spark.sql.catalyst.util.SparkStringUtils
logger.truncated_plan.level = error
logger.iceberg_metrics.name = org.apache.iceberg.metrics.LoggingMetricsReporter
logger.iceberg_metrics.level = warn
"""


class SparkJarsMissing(RuntimeError):
    """The Spark jar cache or one of its inputs is not there; the message says which."""


@dataclass(frozen=True)
class SparkJars:
    jars: tuple[Path, ...]  # spark.jars (Iceberg runtime + relocated Jackson)
    driver_classpath: tuple[Path, ...]  # JDBC drivers
    log4j2_config: Path | None


def provided_runtime() -> Path | None:
    """A complete Iceberg runtime already on pyspark's classpath (the production image
    copies Maven's into ``pyspark/jars``): then no cache is needed or built."""
    found = sorted(_pyspark_jars_dir().glob("iceberg-spark-runtime-3.5_2.12-*.jar"))
    return found[-1] if found else None


def cache_dir(settings: LakehouseSettings) -> Path:
    return settings.spark_jars_path


def spark_jars(settings: LakehouseSettings) -> SparkJars:
    """The built jars, or ``SparkJarsMissing`` naming each missing file and its remedy."""
    if provided_runtime() is not None:
        return SparkJars((), (), None)
    cache = cache_dir(settings)
    jars = (cache / ICEBERG_RUNTIME, cache / SHADED_JACKSON)
    drivers = tuple(DEBIAN_JAVA / name for name in JDBC_DRIVERS)
    log4j2 = cache / LOG4J2_CONFIG
    missing = [str(p) for p in (*jars, log4j2) if not p.is_file()]
    if missing:
        raise SparkJarsMissing(
            f"Spark jar cache incomplete, missing {', '.join(missing)}: "
            "run `lakehouse prepare` (or `make install`) to build it"
        )
    absent = [p for p in drivers if not p.is_file()]
    if absent:
        packages = sorted({JDBC_DRIVERS[p.name] for p in absent})
        raise SparkJarsMissing(
            f"JDBC drivers missing: {', '.join(map(str, absent))}; "
            f"install the Debian packages {' '.join(packages)} (scripts/check-prereqs.sh)"
        )
    return SparkJars(jars, drivers, log4j2)


def build_spark_jars(settings: LakehouseSettings) -> tuple[SparkJars, bool]:
    """Build the cache if its inputs changed; return the jars and whether anything was built."""
    if provided_runtime() is not None:
        return SparkJars((), (), None), False
    cache = cache_dir(settings)
    runtime, jackson_dir = _wheel_runtime_jar(), _pyspark_jars_dir()
    inputs = [runtime, *(jackson_dir / name for name in JACKSON_JARS)]
    missing_debian = [
        f"{DEBIAN_JAVA / name} (Debian package {package})"
        for name, package in DEBIAN_PACKAGES.items()
        if not (DEBIAN_JAVA / name).is_file()
    ]
    missing = [str(p) for p in inputs if not p.is_file()] + missing_debian
    if missing:
        raise SparkJarsMissing(
            "cannot build the Spark jar cache, missing: "
            + "; ".join(missing)
            + ". Python inputs come from `make install`, Debian ones from "
            "scripts/check-prereqs.sh"
        )
    manifest = {
        "recipe": RECIPE_VERSION,
        "inputs": {str(p): p.stat().st_size for p in inputs},
        "rule": JARJAR_RULE,
    }
    manifest_path = cache / "manifest.json"
    try:
        current = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        current = None
    if current == manifest:
        try:
            return spark_jars(settings), False
        except SparkJarsMissing:
            pass  # a file was removed by hand: rebuild
    cache.mkdir(parents=True, exist_ok=True)
    _place(runtime, cache / ICEBERG_RUNTIME)
    _relocate_jackson(jackson_dir, cache / SHADED_JACKSON)
    (cache / LOG4J2_CONFIG).write_text(LOG4J2_PROPERTIES)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return spark_jars(settings), True


def _wheel_runtime_jar() -> Path:
    spec = importlib.util.find_spec("snowpark_connect_deps_iceberg")
    if spec is None or not spec.submodule_search_locations:
        raise SparkJarsMissing(
            "the PyPI package snowpark-connect-deps-iceberg (Iceberg's Spark runtime jar) "
            "is not installed: run `make install`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "jars" / ICEBERG_RUNTIME


def _pyspark_jars_dir() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise SparkJarsMissing("pyspark is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "jars"


def _place(source: Path, target: Path) -> None:
    """Hard-link when on the same filesystem (42 MB saved), copy otherwise; atomically."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    partial.replace(target)


def _relocate_jackson(jackson_dir: Path, target: Path) -> None:
    """One jar of pyspark's Jackson classes, moved to Iceberg's shaded package.

    Only the base ``com/fasterxml/jackson`` classes are taken: the multi-release
    ``META-INF/versions`` copies and module descriptors would be relocated onto the
    same names, and Java 17 runs the base classes fine.
    """
    with tempfile.TemporaryDirectory(prefix="spark-jars-") as tmp:
        merged, rules = Path(tmp) / "jackson.jar", Path(tmp) / "rules.txt"
        seen: set[str] = set()
        with zipfile.ZipFile(merged, "w", zipfile.ZIP_DEFLATED) as out:
            for name in JACKSON_JARS:
                with zipfile.ZipFile(jackson_dir / name) as jar:
                    for entry in jar.infolist():
                        path = entry.filename
                        if (
                            path.startswith("com/fasterxml/jackson/")
                            and path.endswith(".class")
                            and path not in seen
                        ):
                            seen.add(path)
                            out.writestr(path, jar.read(entry))
        rules.write_text(JARJAR_RULE)
        partial = target.with_name(target.name + ".partial")
        classpath = os.pathsep.join(str(DEBIAN_JAVA / name) for name in JARJAR_CLASSPATH)
        java = shutil.which("java")
        if java is None:
            raise SparkJarsMissing(
                "java is not on PATH: install Java 17 (scripts/check-prereqs.sh)"
            )
        done = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "com.tonicsystems.jarjar.Main",
                "process",
                str(rules),
                str(merged),
                str(partial),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not partial.is_file():
            raise SparkJarsMissing(f"jarjar failed to relocate Jackson: {done.stderr.strip()}")
        partial.replace(target)
