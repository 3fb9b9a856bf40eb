"""A model package's manifest.json: what the model takes, how to preprocess for it, what it returns, and
the digest of every file of the package.

Schema (version 2); every key is required, unknown keys are rejected:

    {"schema_version": 2, "name": str, "version": str, "format": "onnx" | "neo", "file": str, "sha256": hex,
     "files": {file name: hex, ...},                     # every file of the folder but manifest.json
     "input": {"name": str, "dtype": "uint8"|"float32"|..., "shape": [int], "layout": "NCHW"|"NHWC",
               "color_order": "RGB"|"BGR"},
     "preprocess": {"resize_shorter": int, "crop": [h, w], "resample": "nearest"|"bilinear"|"bicubic",
                    "mean": [r, g, b], "std": [r, g, b],   # on 0..255 values: (x - mean) / std
                    "in_model": bool},                      # true: the model's graph applies mean/std itself
     "output": {"name": str, "kind": "logits"|"probabilities", "classes": int},
     "labels": "labels.txt",                                # one name per line, in output order
     "provenance": {...}}                                   # free-form, for people

`file` is the model file and `sha256` its digest, the model's identity in every result: model.onnx for
"onnx" folders; for "neo" folders (Neo or `python -m modelprep neo` output: compiled.so,
compiled_model.json, compiled.params, compiled.meta) it is compiled.so, the compiled kernels. `files` lists
every file of the package, `file` and the labels included; `verify_files` refuses a package with a file it
does not list, a listed file that is missing, not a regular file, a symlink, writable by other users, or
whose digest differs.

With `in_model` false the component sends (x - mean) / std as `input.dtype` (a float type); with `in_model`
true it sends the 0..255 pixels as they are (typically uint8, a quarter of the bytes) and the model's first
nodes normalise them.

Standard library only: the agent and the component both read packages with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from agent_client.errors import ManifestError

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 2
HASH_BLOCK = 64 * 1024  # one buffer, reused for every block of a file
DTYPES = ("uint8", "int16", "int32", "int64", "float16", "float32", "float64")
_KEYS = {
    "schema_version",
    "name",
    "version",
    "format",
    "file",
    "sha256",
    "files",
    "input",
    "preprocess",
    "output",
    "labels",
    "provenance",
}
_INPUT_KEYS = {"name", "dtype", "shape", "layout", "color_order"}
_PREPROCESS_KEYS = {"resize_shorter", "crop", "resample", "mean", "std", "in_model"}
_OUTPUT_KEYS = {"name", "kind", "classes"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PreprocessSpec:
    """Resize the shorter side to resize_shorter, centre-crop to crop (h, w), (x - mean) / std per channel
    on 0..255 values in color_order (unless in_model: the model does that), then arrange as layout with a
    batch dimension, as dtype."""

    resize_shorter: int
    crop: tuple[int, int]
    resample: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str
    color_order: str
    dtype: str
    in_model: bool = False


@dataclass(frozen=True)
class ModelManifest:
    folder: Path
    name: str
    version: str
    format: str
    file: str
    sha256: str
    input: TensorSpec
    output_name: str
    output_kind: str
    num_classes: int
    labels_file: str
    preprocess: PreprocessSpec
    files: tuple[tuple[str, str], ...] = ()  # (file name, sha256) of every file but manifest.json

    @property
    def model_path(self) -> Path:
        return self.folder / self.file


class _Reader:
    """Typed access to one JSON object, with errors that name the file and the key."""

    def __init__(self, path: Path, data: Any, where: str, keys: set[str]) -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self.fail(where or "manifest", "must be a JSON object")
        unknown, missing = set(data) - keys, keys - set(data)
        if unknown:
            self.fail(where or "manifest", f"unknown key(s) {sorted(unknown)}; allowed: {sorted(keys)}")
        if missing:
            self.fail(where or "manifest", f"missing key(s) {sorted(missing)}")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ManifestError(
            f"{self.path}: {key}: {problem}; fix the manifest or re-run `python -m modelprep` for it"
        )

    def key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def text(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value:
            self.fail(self.key(key), f"must be a non-empty string, got {value!r}")
        if choices and value not in choices:
            self.fail(self.key(key), f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def integers(self, key: str, length: int | None = None) -> tuple[int, ...]:
        value = self.data[key]
        if (
            not isinstance(value, list)
            or not value
            or (length and len(value) != length)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            self.fail(self.key(key), f"must be a list of {length or 'some'} positive integers, got {value!r}")
        return tuple(value)

    def triple(self, key: str, positive: bool = False) -> tuple[float, float, float]:
        value = self.data[key]
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
            )
            or (positive and not all(v > 0 for v in value))
        ):
            self.fail(
                self.key(key), f"must be a list of 3 {'positive ' if positive else ''}numbers, got {value!r}"
            )
        return (float(value[0]), float(value[1]), float(value[2]))

    def integer(self, key: str) -> int:
        value = self.data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            self.fail(self.key(key), f"must be a positive integer, got {value!r}")
        return int(value)

    def child(self, key: str, keys: set[str]) -> _Reader:
        return _Reader(self.path, self.data[key], self.key(key), keys)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key(s) {repeated} given more than once")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _is_file_name(name: str) -> bool:
    return Path(name).name == name and name not in (".", "..", MANIFEST_FILE)


def _files(top: _Reader, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not value:
        top.fail("files", f"must be an object of file name -> sha256, got {value!r}")
    for name, digest in value.items():
        if not _is_file_name(name):
            top.fail("files", f"{name!r} is not a file name inside the model folder")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            top.fail("files", f"the digest of {name!r} must be 64 lower-case hex digits")
    return tuple(sorted(value.items()))


def load_manifest(folder: Path) -> ModelManifest:
    """Reads and validates folder/manifest.json; ManifestError says which key is wrong and how."""
    path = folder / MANIFEST_FILE
    try:
        data = json.loads(
            path.read_text(encoding="utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constant,
        )
    except FileNotFoundError:
        raise ManifestError(
            f"{path} does not exist; ModelPath must be a model folder with a manifest.json"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ManifestError(f"{path} cannot be read as JSON: {exc}") from exc
    top = _Reader(path, data, "", _KEYS)
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version != SCHEMA_VERSION:
        top.fail(
            "schema_version",
            f"must be {SCHEMA_VERSION}, got {version!r}; schema 1 manifests lack the digests of every file: "
            f"write one with `python -m modelprep manifest FOLDER`",
        )
    sha256 = top.text("sha256")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        top.fail("sha256", "must be 64 lower-case hex digits")
    for key in ("file", "labels"):
        if not _is_file_name(top.text(key)):
            top.fail(key, "must be a file name inside the model folder, not a path")
    files = _files(top, data["files"])
    for key in ("file", "labels"):
        if data[key] not in dict(files):
            top.fail("files", f"does not list {data[key]!r} (the {key}); every file must have its digest")
    if dict(files)[data["file"]] != sha256:
        top.fail("sha256", f"differs from files[{data['file']!r}]")
    if not isinstance(data["provenance"], dict):
        top.fail("provenance", f"must be a JSON object (free-form, for people), got {data['provenance']!r}")
    inp = top.child("input", _INPUT_KEYS)
    pre = top.child("preprocess", _PREPROCESS_KEYS)
    out = top.child("output", _OUTPUT_KEYS)
    shape = inp.integers("shape", 4)
    layout = inp.text("layout", ("NCHW", "NHWC"))
    crop = pre.integers("crop", 2)
    spatial = shape[2:] if layout == "NCHW" else shape[1:3]
    channels = shape[1] if layout == "NCHW" else shape[3]
    if tuple(spatial) != crop or channels != 3:
        inp.fail("input.shape", f"{list(shape)} does not fit a {layout} RGB image cropped to {list(crop)}")
    resize_shorter = pre.integer("resize_shorter")
    if resize_shorter < max(crop):
        pre.fail("preprocess.resize_shorter", f"{resize_shorter} is smaller than the crop {list(crop)}")
    dtype = inp.text("dtype", DTYPES)
    in_model = pre.data["in_model"]
    if not isinstance(in_model, bool):
        pre.fail("preprocess.in_model", f"must be true or false, got {in_model!r}")
    if not in_model and not dtype.startswith("float"):
        pre.fail(
            "preprocess.in_model",
            f"is false, so the component normalises and needs a float input, but input.dtype is {dtype}",
        )
    return ModelManifest(
        folder=folder.resolve(),
        name=top.text("name"),
        version=top.text("version"),
        format=top.text("format", ("onnx", "neo")),
        file=data["file"],
        sha256=sha256,
        input=TensorSpec(name=inp.text("name"), dtype=dtype, shape=shape),
        output_name=out.text("name"),
        output_kind=out.text("kind", ("logits", "probabilities")),
        num_classes=out.integer("classes"),
        labels_file=data["labels"],
        preprocess=PreprocessSpec(
            resize_shorter=resize_shorter,
            crop=(crop[0], crop[1]),
            resample=pre.text("resample", ("nearest", "bilinear", "bicubic")),
            mean=pre.triple("mean"),
            std=pre.triple("std", positive=True),
            layout=layout,
            color_order=inp.text("color_order", ("RGB", "BGR")),
            dtype=dtype,
            in_model=in_model,
        ),
        files=files,
    )


def load_labels(manifest: ModelManifest) -> tuple[str, ...]:
    """The class names, one per line of the labels file (UTF-8, no blank lines, class id = line number - 1);
    their count must equal output.classes."""
    path = manifest.folder / manifest.labels_file
    try:
        labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the labels file {path} (UTF-8 text): {exc}") from exc
    if "" in labels:  # a blank line would shift every later class id onto the wrong name
        raise ManifestError(
            f"{path}: line {labels.index('') + 1} is blank; give every class a name, one per line"
        )
    if len(labels) != manifest.num_classes:
        raise ManifestError(
            f"{path} has {len(labels)} labels but the model has {manifest.num_classes} classes; "
            f"use the labels file made for this model"
        )
    return labels


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file; OSError as it comes."""
    with path.open("rb", buffering=0) as f:
        return sha256_of_fd(f.fileno())


def sha256_of_fd(fd: int) -> str:
    """Hex SHA-256 of an open file from its start (positional reads: the file offset is left alone), read
    through one buffer (no allocation per block); OSError as it comes."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_BLOCK)
    view = memoryview(buffer)
    offset = 0
    while True:
        count = os.preadv(fd, [buffer], offset)
        if count == 0:
            return digest.hexdigest()
        digest.update(view[:count])
        offset += count


def verify_sha256(manifest: ModelManifest) -> None:
    """Hashes the model file and compares it with the manifest (a half-copied or swapped model fails here)."""
    try:
        found = sha256_of(manifest.model_path)
    except OSError as exc:
        raise ManifestError(f"cannot read the model file {manifest.model_path}: {exc}") from exc
    if found != manifest.sha256:
        raise ManifestError(
            f"{manifest.model_path} has SHA-256 {found}, the manifest says {manifest.sha256}; "
            f"the model file is damaged or does not belong to this manifest: redeploy the model"
        )


def write_manifest(folder: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Writes folder/manifest.json from data with schema_version, `files` (the digest of every other file of
    the folder) and `sha256` (of data["file"]) filled in; returns what was written."""
    files = {
        entry.name: sha256_of(entry)
        for entry in sorted(folder.iterdir())
        if entry.name != MANIFEST_FILE and entry.is_file()
    }
    written = {**data, "schema_version": SCHEMA_VERSION, "sha256": files[data["file"]], "files": files}
    order = ["schema_version", "name", "version", "format", "file", "sha256", "files"]
    written = {key: written[key] for key in order} | {k: v for k, v in written.items() if k not in order}
    (folder / MANIFEST_FILE).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    return written


def package_problems(manifest: ModelManifest) -> list[str]:
    """What makes the package untrustworthy, without reading file contents: files the manifest does not list,
    listed files that are missing, symlinks, not regular files, or writable by users other than the owner."""
    folder = manifest.folder
    listed = dict(manifest.files)
    problems = []
    try:
        present = {entry.name for entry in folder.iterdir()}
    except OSError as exc:
        return [f"cannot list {folder}: {exc.strerror}"]
    for name in sorted(present - set(listed) - {MANIFEST_FILE}):
        problems.append(f"{name} is not listed in the manifest's files")
    for name in sorted(set(listed) | {MANIFEST_FILE}):
        path = folder / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            problems.append(f"{name} is listed but missing")
            continue
        if stat.S_ISLNK(info.st_mode):
            problems.append(f"{name} is a symbolic link; a package holds its files itself")
        elif not stat.S_ISREG(info.st_mode):
            problems.append(f"{name} is not a regular file")
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problems.append(
                f"{name} is writable by other users (mode {stat.filemode(info.st_mode)}: chmod go-w)"
            )
    return problems


def verify_files(manifest: ModelManifest, digests: Mapping[str, str] | None = None) -> None:
    """Checks every file of the package against the manifest (see package_problems) and its digest;
    ManifestError naming each problem. `digests`: the listed files' SHA-256 as the caller found them in the
    files it holds open, instead of hashing the files the paths name now (the agent loads from those open
    files)."""
    problems = package_problems(manifest)
    for name, want in manifest.files:
        path = manifest.folder / name
        if digests is not None:
            found = digests[name]
        elif not path.is_file() or path.is_symlink():
            continue  # already named above
        else:
            try:
                found = sha256_of(path)
            except OSError as exc:
                problems.append(f"{name} cannot be read: {exc.strerror}")
                continue
        if found != want:
            problems.append(f"{name} has SHA-256 {found}, the manifest says {want}")
    if problems:
        raise package_error(manifest, problems)


def package_error(manifest: ModelManifest, problems: list[str]) -> ManifestError:
    """The error naming every problem of a package (from package_problems or verify_files)."""
    return ManifestError(
        f"model package {manifest.folder} fails its manifest: {'; '.join(problems)}; "
        f"redeploy the package (or rewrite its manifest with `python -m modelprep manifest`)"
    )
