#!/usr/bin/env bash
# System prerequisites the Python install cannot provide: Java 17 (Spark) and the
# Debian packages Spark needs on these machines (jarjar + asm to rebuild Iceberg's
# shaded Jackson classes, the SQLite and PostgreSQL JDBC drivers).
# Installs them with apt-get when run as root; otherwise prints the command and stops.
set -euo pipefail

packages=(libjarjar-java libasm-java libxerial-sqlite-jdbc-java libpostgresql-jdbc-java)
missing=()

java_ok=false
if command -v java >/dev/null 2>&1; then
  version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2}')
  major=${version%%.*}
  if [ "${major:-0}" -ge 17 ] 2>/dev/null; then java_ok=true; fi
fi
$java_ok || missing+=(openjdk-17-jre-headless)

for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "prerequisites: Java ${version:-?} and ${packages[*]} present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${missing[*]} and no apt-get here; install their equivalents (Java 17," >&2
  echo "jarjar, asm, sqlite-jdbc, postgresql-jdbc) and re-run." >&2
  exit 1
fi

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "prerequisites: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "error: missing system packages: ${missing[*]}" >&2
  echo "run as root:  sudo sh -c '$cmd'" >&2
  exit 1
fi
