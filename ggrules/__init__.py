"""What the real Greengrass cores accept, written down once: semantic versions and ranges (`semver`), recipe
variables (`variables`), and the recipe rules of each core, nucleus lite and the Java nucleus (`cores`).

build.py checks every recipe it writes against both cores; gglocal refuses, per profile, what its core
refuses. Standard library only (build.py runs with the system python3); errors are the project's own
(`agent_client.errors.RecipeError`).
"""
