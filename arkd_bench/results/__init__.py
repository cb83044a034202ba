"""The run folder: layout, atomic writes, locks, resume and provenance of each cell."""
