"""Recipes: the pydantic schema, YAML loading with file:line errors, validation against the
registered plugins, and expansion of the grid into cells with content-hash ids."""
