"""Table maintenance: snapshot expiry and orphan-file removal, and when they run."""
