"""Recipes: the pydantic schema, YAML loading with file:line errors, validation against the
registered plugins and the machine, expansion of the grid into cells with content-hash ids,
and `select:`'s dev-split candidates."""
