"""The run folder: layout, atomic writes, locks, integrity manifests, resume, provenance of each
cell and copies of the plugin files a run loaded.

(Named `rundir` so it is not confused with `report/`, which turns run folders into results.)
"""
