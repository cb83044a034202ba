"""Running a recipe's grid: the cell loop with its locks, signals and resume rules (grid), what
cells share within a run (artifacts, data, files), the on-disk cache grids and reruns share
(cache), and one function per cell kind (cell)."""
