from __future__ import annotations

import json


def schema() -> None:
    """Print the recipe JSON Schema (every field described), for editors and validators."""
    from arkd_bench.recipe.schema import Recipe

    print(json.dumps(Recipe.model_json_schema(), indent=2))
