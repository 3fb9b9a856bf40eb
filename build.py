#!/usr/bin/env python3
"""Builds the edgeclassifier Greengrass components: GDK's custom build command (`gdk component build`).

    python3 build.py [--out DIR] [--version X.Y.Z] [--project-root DIR] [--thing-group-arn ARN]
    python3 build.py --component NAME        # from gdk/NAME/: that component alone, as `gdk component
                                             # publish` reads it (greengrass-build/recipes/NAME.json)

Output, cleaned first as GDK does (a folder holding anything but recipes/, artifacts/ and
deployment.json is refused)::

    greengrass-build/recipes/<name>-<version>.json        (the file names nucleus lite requires)
    greengrass-build/artifacts/<name>/<version>/<zip>
    greengrass-build/deployment.json                      (for aws greengrassv2 create-deployment)

Four components, each from its JSON template recipes/<name>.json, all at the version in gdk-config.json
(or --version): the model, the open agent, the inference component, and its variant for AWS's Edge Manager
agent. Placeholders filled here:

    @VERSION@, @AUTHOR@        the version, and gdk-config.json's author (GDK's ComponentPublisher)
    @VERSION_RANGE@            ">=<version> <<major + 1>.0.0", for dependencies on our own components
    @DIGEST@                   base64 SHA-256 of the zip the artifact URI names (the cores check it)
    @SHA256:<zip>@             hex SHA-256 of that zip, for the install step, which checks it itself
                               where the core does not (local deployments on nucleus lite)
    "architecture": "@ARCH@"   repeats that manifest for linux amd64 and aarch64 (and fills @ARCH@ in it)

Each zip that holds Python (and the model zip) carries recipes/installer.py as its `__main__.py`: the
install step runs the zip itself (see installer.py). The model component ships
edgeclassifier.Model.EfficientNetLite0.zip (ONNX FP32 and INT8) on every platform, plus the Neo-format folder
compiled for the device's architecture, edgeclassifier.Model.EfficientNetLite0.Neo-<amd64|aarch64>.zip.

Zips are deterministic: sorted entries dated 1980-01-01, modes 0644 (files) and 0755 (folders), no caches or
hidden files, safe relative names; symlinks may point inside the project only. Every recipe is checked
against the rules of both Greengrass cores (ggrules/cores.py: nucleus lite and the Java nucleus, with
room to grow under lite's recipe size limit) and the project's own (recipes/validate.py) before it is
written; any problem exits 1 naming the component, the field and the rule. Standard library only: GDK runs
this with the system python3.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_client.errors import RecipeError
from ggrules.cores import CORES, LITE_RECIPE_BYTES, check_recipe
from ggrules.semver import SEMVER
from recipes.validate import ARCHITECTURES, artifacts_of, digest, file_of, validate

ROOT = Path(__file__).resolve().parent
MODEL = "edgeclassifier.Model.EfficientNetLite0"
AGENT = "edgeclassifier.Agent"
INFERENCE = "edgeclassifier.ImageClassification"
INFERENCE_SME = "edgeclassifier.ImageClassification.SageMakerEdgeManager"
COMPONENTS = (MODEL, AGENT, INFERENCE, INFERENCE_SME)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
DEPLOYMENT = "deployment.json"
THING_GROUP_ARN = "arn:aws:iot:REGION:ACCOUNT_ID:thinggroup/THING_GROUP"
RECIPE_BUDGET = LITE_RECIPE_BYTES - 1024  # room to grow: a recipe over this fails the build

Files = list[tuple[str, Path]]  # (name inside the zip, source file)


class BuildError(Exception):
    """A problem with the project's sources or configuration; the message says what to fix."""


@dataclass(frozen=True)
class Project:
    version: str
    author: str


def check_gdk_project(config: Path, root: Path, name: str) -> None:
    """A gdk/<name>/ project must publish what build.py builds: the same version and author as the root's
    gdk-config.json (GDK takes the published version from the project's own file)."""
    ours = read_project(root / "gdk-config.json")
    try:
        component = json.loads(config.read_text(encoding="utf-8"))["component"][name]
        theirs = Project(version=component["version"], author=component["author"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{config}: needs component.{name}.author and .version ({exc!r})") from exc
    if theirs != ours:
        raise BuildError(
            f"{config} says version {theirs.version!r}, author {theirs.author!r}; "
            f"{root / 'gdk-config.json'} says {ours.version!r}, {ours.author!r}: set the same in both (GDK "
            f"publishes the first, build.py builds the second; NEXT_PATCH cannot work here: the version is "
            f"in the recipes' install steps)"
        )


def read_project(path: Path, version: str | None = None) -> Project:
    """Version and author from gdk-config.json, the one source of truth (`version` overrides)."""
    try:
        component = json.loads(path.read_text(encoding="utf-8"))["component"][INFERENCE]
        author, version = component["author"], version or component["version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{path}: needs component.{INFERENCE}.author and .version ({exc!r})") from exc
    if not isinstance(version, str) or not SEMVER.match(version) or len(version) > 64:
        raise BuildError(
            f"version {version!r} is not a concrete semantic version x.y.z; set one in {path.name} "
            "(greengrass-cli cannot deploy NEXT_PATCH) or pass --version"
        )
    if not isinstance(author, str) or not author.strip():
        raise BuildError(f"{path}: author must be a non-empty string")
    return Project(version=version, author=author)


# ------------------------------------------------------------------------------------------ zip contents


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith((".pyc", ".pyo"))


def _inside(root: Path, path: Path) -> Path:
    """The regular file behind path; a symlink may point anywhere inside the project, nowhere else."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise BuildError(f"{path} is a symlink leaving the project (to {resolved}); refusing to package it")
    if not resolved.is_file():
        raise BuildError(f"{path} is missing or not a regular file")
    return resolved


def tree(root: Path, folder: Path, prefix: str) -> Files:
    """Every file under folder, named prefix/<relative path>; no caches, hidden files or folder symlinks."""
    if not folder.is_dir():
        raise BuildError(f"{folder} is missing")
    files: Files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in list(dirnames):
            if _skipped(name):
                dirnames.remove(name)
            elif (here / name).is_symlink():
                raise BuildError(f"{here / name} is a symlinked folder; replace it with a real one")
        for name in filenames:
            if not _skipped(name):
                path = here / name
                files.append((f"{prefix}/{path.relative_to(folder).as_posix()}", _inside(root, path)))
    return files


def package(root: Path, name: str) -> Files:
    if not (root / name / "__init__.py").is_file():
        raise BuildError(f"{root / name} is not a Python package (no __init__.py)")
    return tree(root, root / name, name)


def installer(root: Path) -> Files:
    """recipes/installer.py as the zip's __main__.py: the install step runs the zip itself."""
    return [("__main__.py", _inside(root, root / "recipes" / "installer.py"))]


def inference_files(root: Path) -> Files:
    """component/, ggrules/, agent_client/, modelpkg/, images/ (sample *.jpg and their SOURCES.md),
    requirements.txt, __main__.py (the installer)."""
    images = root / "artifacts" / "images"
    jpgs = sorted(images.glob("*.jpg"))
    if not jpgs:
        raise BuildError(f"no *.jpg in {images}: the inference component ships sample images")
    return [
        *package(root, "component"),
        *package(root, "ggrules"),
        *package(root, "agent_client"),
        *package(root, "modelpkg"),
        *[(f"images/{path.name}", _inside(root, path)) for path in [*jpgs, images / "SOURCES.md"]],
        ("requirements.txt", _inside(root, root / "requirements" / "component.txt")),
        *installer(root),
    ]


def agent_files(root: Path) -> Files:
    """agent/, agent_client/, modelpkg/, requirements.txt, __main__.py (the installer)."""
    return [
        *package(root, "agent"),
        *package(root, "agent_client"),
        *package(root, "modelpkg"),
        ("requirements.txt", _inside(root, root / "requirements" / "agent.txt")),
        *installer(root),
    ]


MODELS = Path("artifacts", "models")
# Greengrass architecture -> the folder `python -m modelprep neo --target` writes for it.
NEO_TARGETS = {"amd64": "x86_64", "aarch64": "aarch64"}


def _model_folder(root: Path, source: str, prefix: str, required: tuple[str, ...]) -> Files:
    folder = root / MODELS / source
    for name in (*required, "manifest.json", "labels.txt"):
        _inside(root, folder / name)
    return tree(root, folder, prefix)


def model_files(root: Path) -> Files:
    """The platform-neutral ONNX packages: efficientnet-lite0/ (FP32, the default the inference component
    runs) and efficientnet-lite0-int8/ (static QDQ INT8), each with model.onnx, manifest.json, labels.txt."""
    return [
        *_model_folder(root, "efficientnet-lite0", "efficientnet-lite0", ("model.onnx",)),
        *_model_folder(root, "efficientnet-lite0-int8", "efficientnet-lite0-int8", ("model.onnx",)),
        *installer(root),
    ]


def neo_files(root: Path, architecture: str) -> Files:
    """efficientnet-lite0-neo/: the Neo-format folder compiled for architecture (for the DLR backend)."""
    source = f"efficientnet-lite0-neo-{NEO_TARGETS[architecture]}"
    required = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")
    return _model_folder(root, source, "efficientnet-lite0-neo", required)


# The zip an artifact URI names -> what goes in it. A zip unpacks to {artifacts:decompressedPath}/<name>/.
# The model's Neo zip differs per platform: its manifest for each architecture names its own.
ZIPS: dict[str, Callable[[Path], Files]] = {
    f"{INFERENCE}.zip": inference_files,
    f"{AGENT}.zip": agent_files,
    f"{MODEL}.zip": model_files,
    **{f"{MODEL}.Neo-{arch}.zip": functools.partial(neo_files, architecture=arch) for arch in NEO_TARGETS},
}


def check_entry_name(name: str) -> None:
    """Zip-slip guard: relative POSIX names only, without '', '.' or '..' parts."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ":" in name or any(p in ("", ".", "..") for p in parts):
        raise BuildError(f"unsafe zip entry name {name!r}")


def zip_bytes(files: Files) -> bytes:
    """A deterministic zip of files, with an entry for every folder."""
    sources: dict[str, Path] = {}
    for name, source in files:
        check_entry_name(name)
        if name in sources:
            raise BuildError(f"zip entry {name} would come from both {sources[name]} and {source}")
        sources[name] = source
    folders = {name.rsplit("/", n)[0] for name in sources for n in range(1, name.count("/") + 1)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted([*folders, *sources], key=lambda entry: entry.split("/")):
            info = zipfile.ZipInfo(name if name in sources else name + "/", ZIP_EPOCH)
            info.create_system = 3  # unix, so that unzip honours the modes
            if name in sources:
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, sources[name].read_bytes(), compresslevel=9)
            else:
                info.external_attr = (0o40755 << 16) | 0x10  # the 0x10 bit: MS-DOS directory
                archive.writestr(info, b"")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ recipes


def load_template(path: Path) -> dict[str, Any]:
    try:
        template = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BuildError(f"recipe template {path} cannot be read ({exc.strerror})") from exc
    except ValueError as exc:
        raise BuildError(f"recipe template {path} is not valid JSON: {exc}") from exc
    if not isinstance(template, dict):
        raise BuildError(f"recipe template {path} must hold a JSON object")
    return template


def _fill(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
        return node
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    return node


def render(template: dict[str, Any], project: Project) -> dict[str, Any]:
    """The template with @ARCH@ manifests repeated per architecture, placeholders but the digests filled."""
    manifests = []
    for manifest in template.get("Manifests") or []:
        platform = manifest.get("Platform") if isinstance(manifest, dict) else None
        if isinstance(platform, dict) and platform.get("architecture") == "@ARCH@":
            manifests += [_fill(copy.deepcopy(manifest), {"@ARCH@": arch}) for arch in ARCHITECTURES]
        else:
            manifests.append(manifest)
    major = int(project.version.split(".")[0])
    values = {
        "@VERSION_RANGE@": f">={project.version} <{major + 1}.0.0",
        "@VERSION@": project.version,
        "@AUTHOR@": project.author,
    }
    return _fill({**template, "Manifests": manifests}, values)


def fill_digests(recipe: dict[str, Any], zips: dict[str, bytes]) -> dict[str, Any]:
    """@DIGEST@ of each artifact (base64, for the core) and every @SHA256:<zip>@ (hex, for the installer)."""
    for _, artifact in artifacts_of(recipe):
        file = file_of(artifact.get("URI"))
        if file in zips and artifact.get("Digest") == "@DIGEST@":
            artifact["Digest"] = digest(zips[file])
    hexes = {f"@SHA256:{name}@": hashlib.sha256(data).hexdigest() for name, data in zips.items()}
    filled: dict[str, Any] = _fill(recipe, hexes)
    return filled


def as_published(recipe: dict[str, Any]) -> str:
    """The recipe as `gdk component publish` makes it: artifact URIs in the longest bucket name S3 allows
    (63 characters), re-indented by 4 (measured on GDK 1.6.2); the cloud's copy is what a core downloads."""
    published = copy.deepcopy(recipe)
    for _, artifact in artifacts_of(published):
        file = file_of(artifact.get("URI"))
        if file is not None:
            artifact["URI"] = f"s3://{'b' * 63}/{recipe['ComponentName']}/{recipe['ComponentVersion']}/{file}"
    return json.dumps(published, indent=4) + "\n"


def check_cores(name: str, text: str) -> None:
    """The rules of both cores (ggrules/cores.py), on the recipe as built and as GDK publishes it, with room
    to grow under lite's recipe size limit."""
    recipe = json.loads(text)
    published = as_published(recipe)
    problems = [
        f"{name}: {violation}"
        for core in CORES
        for violation in check_recipe(recipe, max(len(text), len(published)), core)
    ]
    size = max(len(text.encode()), len(published.encode()))
    if size > RECIPE_BUDGET:
        problems.append(
            f"{name}: recipe: is {size} bytes (as GDK publishes it); this project keeps recipes under "
            f"{RECIPE_BUDGET} bytes to leave room under nucleus lite's {LITE_RECIPE_BYTES} "
            "[lite: lite-recipe-size]"
        )
    if problems:
        raise RecipeError("recipes a Greengrass core would refuse:\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------------------------------ build


OUTPUTS = ("recipes", "artifacts", DEPLOYMENT)


def clean(out: Path, root: Path) -> None:
    """Deletes and recreates out, as GDK does, once it is sure out is a build folder."""
    out, root = out.resolve(), root.resolve()
    if root.is_relative_to(out):
        raise BuildError(f"refusing to use {out} as the output folder: it holds the project")
    if out.exists():
        if not out.is_dir():
            raise BuildError(f"refusing to use {out} as the output folder: it is a file")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS)
        if foreign:
            raise BuildError(
                f"refusing to clean {out}: it holds {', '.join(foreign)}, not only what build.py writes "
                f"({', '.join(OUTPUTS)})"
            )
        shutil.rmtree(out)
    (out / "recipes").mkdir(parents=True)
    (out / "artifacts").mkdir()


def deployment(project: Project, target_arn: str) -> dict[str, Any]:
    """The document of a cloud deployment of the components to a thing group (aws greengrassv2
    create-deployment --cli-input-json file://greengrass-build/deployment.json)."""
    return {
        "targetArn": target_arn,
        "deploymentName": f"edgeclassifier-{project.version}",
        "components": {name: {"componentVersion": project.version} for name in (INFERENCE, AGENT, MODEL)},
        "deploymentPolicies": {
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
            "configurationValidationPolicy": {"timeoutInSeconds": 30},
        },
    }


def build(
    root: Path = ROOT,
    out: Path | None = None,
    version: str | None = None,
    only: str | None = None,
    target_arn: str = THING_GROUP_ARN,
) -> list[Path]:
    """Builds every component from root into out (default root/greengrass-build); returns the recipe files.
    With `only`, writes that component alone, its recipe as recipes/<name>.json (the name GDK publish reads:
    the project recipe.json's, a link to recipes/<name>.json)."""
    out = out if out is not None else root / "greengrass-build"
    project = read_project(root / "gdk-config.json", version)
    if only is not None and only not in COMPONENTS:
        raise BuildError(f"unknown component {only!r}; build.py builds {', '.join(COMPONENTS)}")
    recipes = {name: render(load_template(root / "recipes" / f"{name}.json"), project) for name in COMPONENTS}
    zips: dict[str, bytes] = {}  # each built once: the variant ships the inference zip too
    artifacts: dict[Path, bytes] = {}
    for name, recipe in recipes.items():
        for _, artifact in artifacts_of(recipe):
            file = file_of(artifact.get("URI"))
            if file is None:
                continue  # validate() names it
            if file not in ZIPS:
                raise BuildError(
                    f"{name}: no build rule for artifact {file}; build.py builds {', '.join(ZIPS)}"
                )
            if file not in zips:
                zips[file] = zip_bytes(ZIPS[file](root))
            if only in (None, name):
                artifacts[Path("artifacts", name, project.version, file)] = zips[file]
    recipes = {name: fill_digests(recipe, zips) for name, recipe in recipes.items()}
    texts = {name: json.dumps(recipe, indent=2) + "\n" for name, recipe in recipes.items()}
    for name, text in texts.items():
        check_cores(name, text)
    clean(out, root)
    for name in recipes:
        if only in (None, name):
            (out / "artifacts" / name / project.version).mkdir(parents=True)
    for path, data in artifacts.items():
        (out / path).write_bytes(data)
    validate(recipes, out / "artifacts", only)
    written = []
    for name, text in texts.items():
        if only not in (None, name):
            continue
        path = out / "recipes" / (f"{name}.json" if only else f"{name}-{project.version}.json")
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if only is None:
        document = json.dumps(deployment(project, target_arn), indent=2) + "\n"
        (out / DEPLOYMENT).write_text(document, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=(__doc__ or "").split("\n")[1])
    parser.add_argument(
        "--out", type=Path, help="output folder, deleted first (default: <project>/greengrass-build)"
    )
    parser.add_argument("--version", help="component version (default: gdk-config.json's)")
    parser.add_argument(
        "--project-root", type=Path, default=ROOT, help="the sources (default: beside build.py)"
    )
    parser.add_argument(
        "--component", help="build this component alone into ./greengrass-build, as GDK publish expects it"
    )
    parser.add_argument(
        "--thing-group-arn", default=THING_GROUP_ARN, help="the target of greengrass-build/deployment.json"
    )
    args = parser.parse_args(argv)
    out = args.out if args.out is not None or args.component is None else Path.cwd() / "greengrass-build"
    try:
        if args.component is not None and args.out is None:
            check_gdk_project(Path.cwd() / "gdk-config.json", args.project_root.resolve(), args.component)
        recipes = build(args.project_root.resolve(), out, args.version, args.component, args.thing_group_arn)
    except (BuildError, RecipeError) as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    for recipe in recipes:
        print(f"wrote {recipe}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
