"""The builtin plugins: one module per kind, each registering that kind's `BUILTIN_*` table
through the same hook a third-party plugin uses."""
