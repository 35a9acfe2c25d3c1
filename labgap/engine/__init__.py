"""The weak-to-strong experiment engine: teacher, ceiling and student training, scored as PGR."""
