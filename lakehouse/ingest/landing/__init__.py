"""Landing-bucket ingestion: the reader (listing, fetching, commits) and the file parsers."""
