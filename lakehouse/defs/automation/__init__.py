"""What spans the whole graph: the demo's whole-graph job, eager automation, freshness."""
