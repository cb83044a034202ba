"""The builtin plugins: one module per kind, each registering its package's `BUILTIN_*` table
through the same hook a third-party plugin implements (a new builtin is one entry in that
table, e.g. `arkd_bench.weighting.BUILTIN_WEIGHTINGS`)."""
