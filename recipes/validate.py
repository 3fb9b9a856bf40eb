"""Validation of built recipes, run by build.py before it writes anything (standard library only).

`validate(recipes, artifacts)` checks a set of recipes built together, with their artifacts under
artifacts/<name>/<version>/, and raises RecipeError listing every problem as `<component>: <field>: <what
is wrong>`. What it checks, beyond the recipe format (shared/reference/greengrass-recipes.md C1-C3):

- required keys, no unknown top-level keys, ComponentName and semver ComponentVersion;
- a manifest for each of linux amd64 and aarch64; lifecycle steps and their fields; no RequiresPrivilege;
- every `{namespace:key}` and `{Component:namespace:key}` in a lifecycle: a namespace the nucleus knows,
  cross-component forms only for declared dependencies, `{configuration:/x}` naming a DefaultConfiguration
  key, `{artifacts:decompressedPath}/<folder>` naming the folder a ZIP artifact unpacks to;
- DefaultConfiguration values are strings without recipe variables (only nucleus >= 2.6 with
  interpolateComponentConfiguration interpolates them);
- accessControl shape (IPC service -> policy id -> operations, resources), policy ids unique;
- dependency ranges (plain comparators) admit the versions built alongside;
- artifacts: GDK's s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/<file> URIs, the file present,
  Digest = base64 SHA-256 of it with Algorithm SHA-256, Unarchive and Permission set deliberately, and no
  file in the artifact folder that no artifact names.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_client.errors import RecipeError
from ggrules.cores import LITE_LIFECYCLE_KEYS, strings_in
from ggrules.semver import SEMVER, Version, VersionRange
from ggrules.variables import CROSS_NAMESPACES, NAMESPACES, Variable, pointer_parts, variables_in

Recipe = dict[str, Any]

ARCHITECTURES = ("amd64", "aarch64")
S3_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"
COMPONENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
PLACEHOLDER = re.compile(r"@[A-Z_0-9]+(?::[^@\s]+)?@")
DECOMPRESSED = re.compile(r"\{(?:([.\w]+):)?artifacts:decompressedPath\}/([^/'\"\s]+)")
REQUIRED = (
    "RecipeFormatVersion",
    "ComponentName",
    "ComponentVersion",
    "ComponentDescription",
    "ComponentPublisher",
)
TOP_LEVEL = {*REQUIRED, "ComponentType", "ComponentSource", "ComponentConfiguration", "ComponentDependencies"}
TOP_LEVEL |= {"Manifests", "Lifecycle"}
STEPS = set(LITE_LIFECYCLE_KEYS)  # the spelling both cores read (lite reads no other)
STEP_KEYS = {"Script", "RequiresPrivilege", "Skipif", "Timeout", "Setenv"}
POLICY_KEYS = {"policyDescription", "operations", "resources"}
PERMISSIONS = ("NONE", "OWNER", "ALL")
NOT_INTERPOLATED = (
    "recipe variables in configuration are interpolated only by nucleus >= 2.6 "
    "with interpolateComponentConfiguration"
)


def digest(data: bytes) -> str:
    """A recipe artifact Digest: base64 of the SHA-256 of the file."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def artifacts_of(recipe: Recipe) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, artifact) of every artifact in every manifest."""
    for i, manifest in enumerate(recipe.get("Manifests") or []):
        artifacts = manifest.get("Artifacts") if isinstance(manifest, dict) else None
        for j, artifact in enumerate(artifacts or []):
            if isinstance(artifact, dict):
                yield f"Manifests[{i}].Artifacts[{j}]", artifact


def file_of(uri: Any) -> str | None:
    """The file an artifact URI names, when it has GDK's s3://BUCKET_NAME/... placeholder form."""
    if isinstance(uri, str) and uri.startswith(S3_PREFIX):
        name = uri[len(S3_PREFIX) :]
        if name and "/" not in name and name not in (".", ".."):
            return name
    return None


def default_configuration(recipe: Recipe) -> dict[str, Any]:
    configuration = recipe.get("ComponentConfiguration")
    config = configuration.get("DefaultConfiguration") if isinstance(configuration, dict) else None
    return config if isinstance(config, dict) else {}


def _zip_folders(recipe: Recipe) -> set[str]:
    files = (file_of(a.get("URI")) for _, a in artifacts_of(recipe) if a.get("Unarchive") == "ZIP")
    return {file.removesuffix(".zip") for file in files if file}


def _has_pointer(config: Any, pointer: str) -> bool:
    try:
        parts = pointer_parts(pointer)
    except ValueError:
        return False
    for part in parts:
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


def validate(recipes: dict[str, Recipe], artifacts: Path, only: str | None = None) -> None:
    """Raises RecipeError listing every problem of recipes built together (component name -> recipe); with
    `only`, of that recipe alone (the others are still what its dependencies are checked against)."""
    checker = _Checker(recipes, artifacts)
    problems = [
        f"{name}: {problem}"
        for name, recipe in recipes.items()
        if only in (None, name)
        for problem in checker.recipe(name, recipe)
    ]
    owners: dict[str, str] = {}
    for name, recipe in recipes.items():
        access = default_configuration(recipe).get("accessControl")
        for policies in access.values() if isinstance(access, dict) else []:
            for policy in policies if isinstance(policies, dict) else []:
                if policy in owners:
                    problems.append(
                        f"{name}: accessControl: policy id {policy} is also used by {owners[policy]}"
                    )
                owners[policy] = name
    if problems:
        raise RecipeError("invalid recipes:\n  " + "\n  ".join(problems))


class _Checker:
    """Each method yields '<field>: <problem>' strings for one recipe."""

    def __init__(self, recipes: dict[str, Recipe], artifacts: Path) -> None:
        self.recipes = recipes
        self.artifacts = artifacts
        self.digests: dict[Path, str] = {}

    def recipe(self, name: str, recipe: Recipe) -> Iterator[str]:
        for key in REQUIRED:
            if not recipe.get(key):
                yield f"{key}: missing"
        for key in sorted(recipe.keys() - TOP_LEVEL):
            yield f"{key}: unknown recipe key; known: {', '.join(sorted(TOP_LEVEL))}"
        if recipe.get("RecipeFormatVersion") != "2020-01-25":
            yield "RecipeFormatVersion: must be 2020-01-25"
        if recipe.get("ComponentName") != name or not COMPONENT_NAME.match(name):
            yield f"ComponentName: must be {name}, matching ^[a-zA-Z0-9-_.]+$ with 128 characters at most"
        version = recipe.get("ComponentVersion")
        if not isinstance(version, str) or not SEMVER.match(version) or len(version) > 64:
            yield f"ComponentVersion: {version!r} is not a semantic version of 64 characters at most"
            return
        for where, text in strings_in(recipe, "recipe"):
            if found := PLACEHOLDER.search(text):
                yield f"{where.removeprefix('recipe.')}: unfilled placeholder {found[0]}"
        yield from self.configuration(recipe)
        yield from self.dependencies(name, recipe)
        manifests = recipe.get("Manifests")
        if not isinstance(manifests, list) or not manifests:
            yield "Manifests: must be a non-empty list"
            return
        platforms = set()
        for i, manifest in enumerate(manifests):
            platform = manifest.get("Platform") if isinstance(manifest, dict) else None
            if not isinstance(platform, dict) or not platform.get("os"):
                yield f"Manifests[{i}].Platform: needs at least os"
                continue
            platforms.add((platform.get("os"), platform.get("architecture")))
            yield from self.lifecycle(recipe, f"Manifests[{i}].Lifecycle", manifest.get("Lifecycle", {}))
        for arch in ARCHITECTURES:
            if ("linux", arch) not in platforms:
                yield f"Manifests: no manifest for linux {arch}"
        yield from self.artifact_files(recipe, self.artifacts / name / version)

    def configuration(self, recipe: Recipe) -> Iterator[str]:
        for key, value in default_configuration(recipe).items():
            where = f"DefaultConfiguration.{key}"
            if key == "accessControl":
                yield from self.access_control(value)
            elif not isinstance(value, str):
                yield f"{where}: store every value as a string (JSON numbers come back as floats)"
            elif any(True for _ in variables_in(value)):
                yield f"{where}: {value!r}: {NOT_INTERPOLATED}; use a literal value"

    def access_control(self, access: Any) -> Iterator[str]:
        where = "DefaultConfiguration.accessControl"
        if not isinstance(access, dict):
            yield f"{where}: must be an object of IPC services"
            return
        for service, policies in access.items():
            if (
                not service.startswith("aws.greengrass.ipc.")
                or not isinstance(policies, dict)
                or not policies
            ):
                yield f"{where}.{service}: must be an aws.greengrass.ipc.* service holding policies"
                continue
            for policy_id, policy in policies.items():
                here = f"{where}.{service}.{policy_id}"
                if not isinstance(policy, dict) or policy.keys() - POLICY_KEYS:
                    yield f"{here}: a policy has only {', '.join(sorted(POLICY_KEYS))}"
                    continue
                for key in ("operations", "resources"):
                    items = policy.get(key)
                    if (
                        not isinstance(items, list)
                        or not items
                        or not all(isinstance(i, str) and i for i in items)
                    ):
                        yield f"{here}.{key}: must be a non-empty list of strings"
                for operation in policy.get("operations") or []:
                    if operation != "*" and not str(operation).startswith("aws.greengrass#"):
                        yield f"{here}.operations: {operation!r} is not aws.greengrass#<Operation>"
                for resource in policy.get("resources") or []:
                    if any(True for _ in variables_in(str(resource))):
                        yield f"{here}.resources: {resource!r}: {NOT_INTERPOLATED}; use an MQTT wildcard"

    def dependencies(self, name: str, recipe: Recipe) -> Iterator[str]:
        dependencies = recipe.get("ComponentDependencies") or {}
        if not isinstance(dependencies, dict):
            yield "ComponentDependencies: must be an object"
            return
        for dependency, spec in dependencies.items():
            where = f"ComponentDependencies.{dependency}"
            if not COMPONENT_NAME.match(dependency) or dependency == name:
                yield f"{where}: not a valid dependency name"
            if not isinstance(spec, dict) or spec.get("DependencyType", "HARD") not in ("HARD", "SOFT"):
                yield f"{where}: needs VersionRequirement, and DependencyType HARD or SOFT"
                continue
            built = self.recipes.get(dependency, {}).get("ComponentVersion")
            try:
                requirement = VersionRange.parse(str(spec.get("VersionRequirement", "")))
                admitted = built is None or requirement.matches(Version.parse(built))
            except RecipeError as exc:
                yield f"{where}: {exc}"
                continue
            if not admitted:
                yield f"{where}: {spec['VersionRequirement']!r} excludes {dependency} {built}, built here"

    def lifecycle(self, recipe: Recipe, where: str, lifecycle: Any) -> Iterator[str]:
        if not isinstance(lifecycle, dict):
            yield f"{where}: must be an object of steps"
            return
        for step in sorted(lifecycle.keys() - STEPS):
            yield f"{where}.{step}: unknown step; known: {', '.join(sorted(STEPS))}"
        if "run" in lifecycle and "startup" in lifecycle:
            yield f"{where}: has both run and startup; only one is allowed"
        for step, body in lifecycle.items():
            if step == "Setenv" or isinstance(body, str):
                continue
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("Script"), str)
                or body.keys() - STEP_KEYS
            ):
                yield f"{where}.{step}: a script, or an object with Script and {', '.join(sorted(STEP_KEYS))}"
                continue
            if body.get("RequiresPrivilege") not in (None, False, "false"):
                yield f"{where}.{step}.RequiresPrivilege: the components run as the component user"
            timeout = body.get("Timeout", 1)
            if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
                yield f"{where}.{step}.Timeout: must be a positive number of seconds"
        for here, text in strings_in(lifecycle, where):
            yield from self.variables(recipe, here, text)

    def variables(self, recipe: Recipe, where: str, text: str) -> Iterator[str]:
        dependencies = recipe.get("ComponentDependencies") or {}
        for variable in variables_in(text):
            if variable.component is not None and variable.component not in dependencies:
                yield (
                    f"{where}: {variable.text} names {variable.component}, which is not a dependency of this "
                    "component"
                )
            elif variable.component is not None and variable.namespace not in CROSS_NAMESPACES:
                namespaces = ", ".join(sorted(CROSS_NAMESPACES))
                yield f"{where}: {variable.text}: the namespace must be one of {namespaces}"
            elif variable.namespace not in NAMESPACES:
                yield (
                    f"{where}: unknown recipe variable {variable.text}; namespaces: {', '.join(NAMESPACES)} "
                    "(a shell ${VAR:-default} looks like one to the nucleus: use if/then)"
                )
            else:
                owner = recipe if variable.component is None else self.recipes.get(variable.component)
                yield from self.key(where, variable, owner)
        for match in DECOMPRESSED.finditer(text):
            owner = self.recipes.get(match[1]) if match[1] else recipe
            if owner is not None and match[2] not in _zip_folders(owner):
                folders = ", ".join(sorted(_zip_folders(owner))) or "none"
                yield f"{where}: {match[0]}: no ZIP artifact unpacks to {match[2]}/ (ZIP folders: {folders})"

    def key(self, where: str, variable: Variable, owner: Recipe | None) -> Iterator[str]:
        keys = NAMESPACES[variable.namespace]
        if keys is not None and variable.key not in keys:
            yield f"{where}: {variable.text}: {variable.namespace} has only {', '.join(sorted(keys))}"
        elif (
            keys is None
            and owner is not None
            and not _has_pointer(default_configuration(owner), variable.key)
        ):
            yield f"{where}: {variable.text}: no such key in the DefaultConfiguration"

    def artifact_files(self, recipe: Recipe, folder: Path) -> Iterator[str]:
        named = set()
        for where, artifact in artifacts_of(recipe):
            file = file_of(artifact.get("URI"))
            if file is None:
                yield f"{where}.URI: must be {S3_PREFIX}<file>, not {artifact.get('URI')!r}"
                continue
            named.add(file)
            path = folder / file
            if not path.is_file():
                yield f"{where}: artifact {file} is missing from {folder}"
            elif artifact.get("Digest") != self.digest(path):
                yield f"{where}.Digest: does not match {path} (base64 SHA-256 {self.digest(path)})"
            if artifact.get("Algorithm") != "SHA-256":
                yield f"{where}.Algorithm: must be SHA-256"
            if artifact.get("Unarchive", "NONE") not in ("NONE", "ZIP"):
                yield f"{where}.Unarchive: must be NONE or ZIP"
            permission = artifact.get("Permission")
            if not isinstance(permission, dict) or any(
                permission.get(k) not in PERMISSIONS for k in ("Read", "Execute")
            ):
                yield f"{where}.Permission: set Read and Execute deliberately, to {', '.join(PERMISSIONS)}"
        extra = sorted(p.name for p in folder.iterdir() if p.name not in named) if folder.is_dir() else []
        if extra:
            yield f"Manifests: {folder} holds files that no artifact names: {', '.join(extra)}"

    def digest(self, path: Path) -> str:
        if path not in self.digests:
            self.digests[path] = digest(path.read_bytes())
        return self.digests[path]
