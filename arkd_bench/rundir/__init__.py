"""The run folder: layout, atomic writes, locks, resume and provenance of each cell.

(Named `rundir` so it is not confused with `report/`, which turns run folders into results.)
"""
