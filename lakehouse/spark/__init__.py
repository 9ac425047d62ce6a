"""The Spark engine: its jars (no Maven here), run statistics, and the Spark side of the
silver transforms (sessions, the CDC MERGE). The session itself is ``resources.spark``.
"""
