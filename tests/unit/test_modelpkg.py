from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent_client.errors import ManifestError
from modelpkg.manifest import (
    HASH_BLOCK,
    load_labels,
    load_manifest,
    sha256_of,
    sha256_of_fd,
    verify_files,
    verify_sha256,
    write_manifest,
)

from ..helpers import MODEL_DIR


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small model folder with a valid manifest (the model file is a few stand-in bytes)."""
    (tmp_path / "model.onnx").write_bytes(b"stand-in model bytes")
    (tmp_path / "labels.txt").write_text("cat\ndog\ncup\n")
    for name in ("model.onnx", "labels.txt"):
        (tmp_path / name).chmod(0o644)
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    manifest["output"]["classes"] = 3
    # the float contract (the component normalises), which the cases below edit; the bundled packages
    # take uint8 NHWC pixels instead (in_model)
    manifest["input"].update(dtype="float32", shape=[1, 3, 224, 224], layout="NCHW")
    manifest["preprocess"]["in_model"] = False
    write_manifest(tmp_path, manifest)
    return tmp_path


def edit(folder: Path, change: Any) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    change(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_the_bundled_manifest_loads_and_matches_its_model() -> None:
    manifest = load_manifest(MODEL_DIR)
    verify_sha256(manifest)
    assert manifest.input.shape == (1, 224, 224, 3) and manifest.preprocess.layout == "NHWC"
    assert manifest.input.dtype == "uint8" and manifest.preprocess.in_model
    assert manifest.preprocess.mean == (127.0, 127.0, 127.0) and manifest.preprocess.std == (
        128.0,
        128.0,
        128.0,
    )
    labels = load_labels(manifest)
    assert (labels[281], labels[282], labels[967]) == ("tabby", "tiger cat", "espresso")


def test_a_valid_manifest_loads(folder: Path) -> None:
    manifest = load_manifest(folder)
    verify_sha256(manifest)
    assert load_labels(manifest) == ("cat", "dog", "cup")
    assert manifest.model_path == folder.resolve() / "model.onnx"


def test_digests_of_files_already_open_are_checked_instead_of_the_files_on_disk(folder: Path) -> None:
    manifest = load_manifest(folder)
    digests = {name: sha256_of(folder / name) for name, _ in manifest.files}
    verify_files(manifest, digests)
    (folder / "labels.txt").write_text("cat\ndog\ncow\n")  # the disk changed after the files were hashed
    verify_files(manifest, digests)  # what the caller hashed (and holds open) is what counts
    with pytest.raises(ManifestError, match=r"model\.onnx has SHA-256 .*, the manifest says"):
        verify_files(manifest, {**digests, "model.onnx": hashlib.sha256(b"another model").hexdigest()})


@pytest.mark.parametrize("size", [0, 1, HASH_BLOCK - 1, HASH_BLOCK, 3 * HASH_BLOCK + 7])
def test_an_open_file_is_hashed_whole_from_its_start_whatever_its_offset(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    (tmp_path / "f").write_bytes(data)
    with (tmp_path / "f").open("rb") as f:
        f.seek(size // 2)
        assert sha256_of_fd(f.fileno()) == hashlib.sha256(data).hexdigest()
        assert f.tell() == size // 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
        (lambda d: d.pop("labels"), r"missing key\(s\) \['labels'\]"),
        (lambda d: d["input"].update(layout="CHWN"), "input.layout: must be one of NCHW, NHWC"),
        (lambda d: d["input"].update(color_order="RGBA"), "input.color_order"),
        (lambda d: d["input"].update(shape=[1, 3, 200, 224]), "does not fit a NCHW RGB image cropped to"),
        (lambda d: d["preprocess"].update(std=[128, 0, 128]), "preprocess.std: must be a list of 3 positive"),
        (lambda d: d["preprocess"].update(resize_shorter=100), "smaller than the crop"),
        (lambda d: d["output"].update(kind="scores"), "output.kind: must be one of logits, probabilities"),
        (lambda d: d.update(file="../model.onnx"), "file: must be a file name inside the model folder"),
        (lambda d: d.update(sha256="XYZ"), "sha256: must be 64 lower-case hex digits"),
        (lambda d: d.update(schema_version=1), "schema_version: must be 2, got 1; schema 1 manifests lack"),
        (lambda d: d.update(schema_version=True), "schema_version: must be 2"),
        (lambda d: d.update(files={}), "files: must be an object of file name -> sha256"),
        (lambda d: d["files"].pop("labels.txt"), "files: does not list 'labels.txt'"),
        (lambda d: d["files"].update({"../x": "0" * 64}), "files: '../x' is not a file name"),
        (lambda d: d["files"].update({"model.onnx": "X"}), "the digest of 'model.onnx' must be 64"),
        (lambda d: d.update(sha256="0" * 64), r"sha256: differs from files\['model.onnx'\]"),
        (lambda d: d["preprocess"].update(in_model="yes"), "preprocess.in_model: must be true or false"),
        (
            lambda d: d["input"].update(dtype="uint8"),
            "in_model: is false, so the component normalises and needs a float input",
        ),
        (lambda d: d["input"].update(extra=1), r"input: unknown key\(s\) \['extra'\]"),
        (lambda d: d["input"].update(shape=[1, 224, 224, 3]), "does not fit a NCHW RGB image"),
        (lambda d: d["input"].update(dtype="float128"), "input.dtype: must be one of"),
        (lambda d: d["preprocess"].update(resample="lanczos"), "preprocess.resample: must be one of"),
        (lambda d: d["preprocess"].update(mean=[127, 127]), "preprocess.mean: must be a list of 3 numbers"),
        (
            lambda d: d["preprocess"].update(crop=[224, "224"]),
            "preprocess.crop: must be a list of 2 positive",
        ),
        (lambda d: d["output"].update(classes=0), "output.classes: must be a positive integer"),
        (lambda d: d.update(format="tflite"), "format: must be one of onnx, neo"),
        (lambda d: d.update(labels=".."), "labels: must be a file name inside the model folder"),
        (lambda d: d.update(provenance="exported by hand"), "provenance: must be a JSON object"),
        (lambda d: d.update(input=[1, 3, 224, 224]), "input: must be a JSON object"),
    ],
)
def test_bad_manifests_name_the_key(folder: Path, change: Any, message: str) -> None:
    edit(folder, change)
    with pytest.raises(ManifestError, match=message) as raised:
        load_manifest(folder)
    # every message names the file and says what to do
    assert str(folder / "manifest.json") in str(raised.value)
    assert "fix the manifest or re-run `python -m modelprep` for it" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', r"key\(s\) \['a'\] given more than once"),
        ('{"mean": [NaN, 0, 0]}', "NaN is not a number JSON allows"),
        ("[1, 2]", "manifest: must be a JSON object"),
    ],
)
def test_json_that_is_not_a_plain_object_is_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path)


def test_missing_and_malformed_manifests_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="ModelPath must be a model folder"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot be read as JSON"):
        load_manifest(tmp_path)


def test_a_changed_model_file_fails_the_digest(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"another model")
    digest = hashlib.sha256(b"another model").hexdigest()
    with pytest.raises(ManifestError, match=f"has SHA-256 {digest}, the manifest says .*redeploy the model"):
        verify_sha256(load_manifest(folder))


def test_the_digest_is_streamed_over_files_larger_than_one_block(folder: Path) -> None:
    data = bytes(range(256)) * 9000  # 2.2 MiB: three 1 MiB blocks
    (folder / "model.onnx").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    edit(folder, lambda d: (d.update(sha256=digest), d["files"].update({"model.onnx": digest})))
    verify_sha256(load_manifest(folder))
    verify_files(load_manifest(folder))


def test_every_file_of_the_package_is_checked_against_its_digest(folder: Path) -> None:
    verify_files(load_manifest(folder))
    (folder / "labels.txt").write_text("cat\ndog\ncow\n")  # same count, another class: only a digest sees it
    with pytest.raises(ManifestError, match=r"labels\.txt has SHA-256 .*, the manifest says"):
        verify_files(load_manifest(folder))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / "extra.so").write_bytes(b"x"), "extra.so is not listed in the manifest's files"),
        (lambda f: (f / "labels.txt").unlink(), "labels.txt is listed but missing"),
        (
            lambda f: (f / "model.onnx").chmod(0o666),
            r"model\.onnx is writable by other users \(mode -rw-rw-rw-: chmod go-w\)",
        ),
        (lambda f: (f / "model.onnx").chmod(0o664), "model.onnx is writable by other users"),
        (
            lambda f: ((f / "labels.txt").unlink(), (f / "labels.txt").mkdir()),
            "labels.txt is not a regular file",
        ),
    ],
)
def test_a_package_with_foreign_missing_or_writable_files_is_refused(
    folder: Path, change: Any, message: str
) -> None:
    change(folder)
    with pytest.raises(ManifestError, match=message):
        verify_files(load_manifest(folder))


def test_a_model_file_that_is_a_symlink_out_of_the_package_is_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.onnx"
    outside.write_bytes(b"stand-in model bytes")  # the same bytes: only the link gives it away
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(outside)
    with pytest.raises(ManifestError, match=r"model\.onnx is a symbolic link"):
        verify_files(load_manifest(folder))


def test_a_label_count_that_does_not_fit_the_model_is_refused(folder: Path) -> None:
    (folder / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(ManifestError, match="has 2 labels but the model has 3 classes"):
        load_labels(load_manifest(folder))


def test_a_blank_label_line_is_refused_rather_than_shifting_the_classes(folder: Path) -> None:
    (folder / "labels.txt").write_text("cat\n\ndog\ncup\n")
    with pytest.raises(ManifestError, match="line 2 is blank"):
        load_labels(load_manifest(folder))


def test_labels_are_utf8_with_or_without_a_final_newline(folder: Path) -> None:
    (folder / "labels.txt").write_bytes("café\r\ndog\r\nçup".encode())
    assert load_labels(load_manifest(folder)) == ("café", "dog", "çup")
    (folder / "labels.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="UTF-8"):
        load_labels(load_manifest(folder))


def test_a_missing_labels_or_model_file_is_explained(folder: Path) -> None:
    manifest = load_manifest(folder)
    (folder / "labels.txt").unlink()
    (folder / "model.onnx").unlink()
    with pytest.raises(ManifestError, match="cannot read the labels file"):
        load_labels(manifest)
    with pytest.raises(ManifestError, match="cannot read the model file"):
        verify_sha256(manifest)


def test_the_bundled_model_folder_copies_cleanly(tmp_path: Path) -> None:
    copy = shutil.copytree(MODEL_DIR, tmp_path / "m")
    verify_files(load_manifest(copy))
