"""Operations: run history as Iceberg tables in an ``ops`` group, written by run status sensors."""
