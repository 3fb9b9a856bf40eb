"""The install step of every edgeclassifier component, on both Greengrass cores (standard library only).

build.py puts this file into each component's zip as `__main__.py`, so the recipe's install step runs the
zip itself: `python3 -I {artifacts:path}/<zip> install ...` (own-component recipe variables only, which both
cores substitute; nothing from the configuration, which nucleus lite would escape).

1. The component's files: where the core unpacked each ZIP artifact (`{artifacts:decompressedPath}/<zip
   name>`; cloud deployments, and local ones on the Java nucleus), or, when it did not (local deployments on
   nucleus lite: "Assuming recipe artifacts are found on-disk."), unpacked here into the work folder, after
   the zip's SHA-256 is checked against the digest the recipe carries (lite checks none on local
   deployments). Safe names only, a bound on the bytes written, files 0644 and folders 0755.
2. `--link NAME`: `<work>/NAME` points at the first zip's folder (the run step's PYTHONPATH), replaced
   atomically once the virtualenv (3) is ready, so that a failed step leaves the old code with its venv.
   That folder is always the work folder's own (copied from the core's unpacked files when there are
   some), and its Python files are compiled there by the virtualenv's Python, so that a start (a restart
   after a configuration-only deployment, a reboot) does not compile every module again.
3. `--requirements`: a virtualenv `<work>/venv` with the pinned requirements.txt of that folder. It is made
   again only when the pins, the device's Python version or its interpreter changed (a stamp records
   them), built beside the old one and swapped in only once pip succeeded; a missing requirements file
   stops the step first, with a message, and touches nothing.
4. `--packages`: the model component publishes `<work>/current/<variant>` (symlinks to the package
   folders: fp32, int8, neo), which the inference component and the agent find from {kernel:rootPath} alone;
   `current` is swapped atomically, so a new version of the model component is seen whole or not at all.
5. What earlier versions left in the work folder (`unpacked/<version>`, `packages-<version>`) is removed,
   except for the version being installed and the one in use until now (a process of it may still run).
   Measured on nucleus lite: five model versions kept 5 x 41 MB although the core had removed their
   artifacts.
Exit status 0 when the component is ready, 1 with a message saying what to do otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

PYTHONS = ((3, 10), (3, 12))  # oldest and newest supported, inclusive
MAX_UNPACKED = 2 * 1024 * 1024 * 1024
STAMP = ".edgeclassifier-install.json"


class InstallError(Exception):
    """The step cannot complete; the message says what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(archive: Path, partial: Path) -> None:
    """archive's files into the empty folder partial: safe names only, at most MAX_UNPACKED bytes."""
    written = 0
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            parts = Path(member.filename).parts
            if member.filename.startswith("/") or ".." in parts or "\\" in member.filename:
                raise InstallError(f"{archive}: unsafe entry {member.filename!r}; rebuild the component")
            destination = partial.joinpath(*parts)
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(member) as source, destination.open("wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    written += len(block)
                    if written > MAX_UNPACKED:
                        raise InstallError(f"{archive} unpacks to more than {MAX_UNPACKED >> 30} GiB")
                    out.write(block)
            destination.chmod(0o644)


def unpack(archive: Path, want: str, target: Path) -> None:
    """archive's files into target (replaced whole), once its digest is want."""
    have = sha256_of(archive)
    if have != want:
        raise InstallError(f"{archive} has SHA-256 {have}, the recipe says {want}: redeploy the component")
    _replace_with(target, lambda partial: extract(archive, partial))


def copy_files(source: Path, target: Path) -> None:
    """The files the core unpacked (and checked) into target (replaced whole), regular files and folders
    only, at most MAX_UNPACKED bytes."""

    def fill(partial: Path) -> None:
        written = 0

        def unreadable(error: OSError) -> None:
            raise InstallError(f"{error.filename} cannot be read: {error.strerror}; redeploy the component")

        for folder, folders, names in os.walk(source, onerror=unreadable):
            here = partial / Path(folder).relative_to(source)
            here.mkdir(parents=True, exist_ok=True)
            links = [name for name in folders if (Path(folder) / name).is_symlink()]  # walk does not enter
            for name in links + names:
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    raise InstallError(f"{path} is not a regular file: redeploy the component")
                written += path.stat().st_size
                if written > MAX_UNPACKED:
                    raise InstallError(f"{source} holds more than {MAX_UNPACKED >> 30} GiB")
                shutil.copy2(path, here / name)
                (here / name).chmod(0o644)

    _replace_with(target, fill)


def _replace_with(target: Path, fill: Callable[[Path], None]) -> None:
    """target replaced whole by what fill puts into an empty folder beside it; nothing left on failure."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        fill(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a refused zip leaves nothing (up to the bound) behind
        raise
    for folder, _, _ in os.walk(partial):
        os.chmod(folder, 0o755)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)


def compile_code(folder: Path, python: Path) -> None:
    """Bytecode for the component's Python files beside them (`__pycache__`), by the run step's Python: else
    every start compiles every module again, since the files are not the component user's to write
    (measured: 0.1 s of a 0.9 s first result on a 2-core x86_64 machine). A failure only costs that."""
    try:
        subprocess.run([str(python), "-I", "-m", "compileall", "-q", str(folder)], check=True)
    except (subprocess.CalledProcessError, OSError):
        print(f"could not compile the Python files of {folder}; each start compiles them", file=sys.stderr)


def replace_link(link: Path, target: Path) -> None:
    """link -> target, atomically (a new link renamed over the old one)."""
    fresh = link.with_name(link.name + ".new")
    if fresh.is_symlink() or fresh.exists():
        fresh.unlink()
    fresh.symlink_to(target)
    os.replace(fresh, link)


def component_files(args: argparse.Namespace) -> list[Path]:
    """The folder of each zip: the core's unpacked copy, else one unpacked here. The code a run step runs
    (`--link`: the first zip) is always in a folder of the work folder's own, copied from the core's when it
    unpacked one, so that its bytecode can be written beside it (compile_code)."""
    folders = []
    for index, item in enumerate(args.zip):
        name, _, want = item.partition("=")
        stem = name.removesuffix(".zip")
        core = args.unpacked / stem
        core_unpacked = core.is_dir() and any(core.iterdir())
        if core_unpacked and not (args.link and index == 0):
            folders.append(core)
            continue
        own = args.work / "unpacked" / args.version / stem
        marker = own.with_name(own.name + ".sha256")
        if not own.is_dir() or not marker.is_file() or marker.read_text().strip() != want:
            if core_unpacked:
                print(f"copying {core} into the work folder")
                copy_files(core, own)
            else:
                archive = args.artifacts / name
                if not archive.is_file():
                    raise InstallError(
                        f"{archive} is missing and the core unpacked nothing: redeploy the component"
                    )
                print(f"unpacking {archive} (the core did not: a local deployment on nucleus lite?)")
                unpack(archive, want, own)
            marker.write_text(want + "\n")
        folders.append(own)
    return folders


def python_ok() -> None:
    if not PYTHONS[0] <= sys.version_info[:2] <= PYTHONS[1]:
        raise InstallError(
            f"edgeclassifier needs python3 {'.'.join(map(str, PYTHONS[0]))} to "
            f"{'.'.join(map(str, PYTHONS[1]))}; python3 here is {sys.version.split()[0]}"
        )


def virtualenv(work: Path, requirements: Path) -> None:
    """<work>/venv with requirements installed, made again only when they or the Python changed."""
    if not requirements.is_file():
        raise InstallError(f"{requirements} is missing from the component's files: redeploy the component")
    venv = work / "venv"
    want = {
        "requirements": sha256_of(requirements),
        "python": sys.version,
        "interpreter": os.path.realpath(sys.executable),
    }
    try:
        have = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        have = None
    if have == want and (venv / "bin" / "python").exists():
        print(f"virtualenv {venv} is up to date")
        return
    fresh = work / "venv.new"
    shutil.rmtree(fresh, ignore_errors=True)
    print(f"creating {venv} and installing {requirements} (python {sys.version.split()[0]})")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True)
    except subprocess.CalledProcessError:
        raise InstallError(
            "python3 -m venv failed: on Debian or Ubuntu install the python3-venv package"
        ) from None
    command = [
        str(fresh / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
    ]
    command += ["--no-cache-dir", "--only-binary=:all:", "--requirement", str(requirements)]
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError:
        shutil.rmtree(fresh, ignore_errors=True)
        raise InstallError(f"pip could not install {requirements}; the previous virtualenv is kept") from None
    (fresh / STAMP).write_text(json.dumps(want) + "\n")
    old = work / "venv.old"
    shutil.rmtree(old, ignore_errors=True)
    if venv.exists():
        os.replace(venv, old)
    os.replace(fresh, venv)
    shutil.rmtree(old, ignore_errors=True)
    print(f"virtualenv {venv} is ready")


def publish_packages(work: Path, version: str, folders: list[Path]) -> None:
    """<work>/current -> <work>/packages-<version>/{fp32,int8,neo} -> the package folders."""
    main, *others = folders
    variants = {"fp32": main / "efficientnet-lite0", "int8": main / "efficientnet-lite0-int8"}
    if others:
        variants["neo"] = others[0] / "efficientnet-lite0-neo"
    index = work / f"packages-{version}"
    index.mkdir(exist_ok=True)
    for variant, folder in variants.items():
        if not (folder / "manifest.json").is_file():
            raise InstallError(f"{folder} holds no model package: redeploy the model component")
        replace_link(index / variant, folder)
    replace_link(work / "current", index)
    work.chmod(0o755)  # the agent and the inference component may run as other users: they read, never write
    print(f"model packages {', '.join(sorted(variants))} of {version} published in {work / 'current'}")


def version_in_use(work: Path, links: list[str]) -> str | None:
    """The version an existing link of the work folder points into (unpacked/<v>/... or packages-<v>)."""
    for name in links:
        link = work / name
        if not link.is_symlink():
            continue
        target = Path(os.readlink(link))
        parts = target.relative_to(work).parts if target.is_relative_to(work) else ()
        if len(parts) >= 2 and parts[0] == "unpacked":
            return parts[1]
        if parts and parts[0].startswith("packages-"):
            return parts[0].removeprefix("packages-")
    return None


def prune(work: Path, keep: set[str]) -> None:
    """Removes what other versions left: unpacked/<v> (with its .sha256 markers) and packages-<v>."""
    unpacked = work / "unpacked"
    stale = [p for p in unpacked.iterdir() if p.name not in keep] if unpacked.is_dir() else []
    stale += [p for p in work.glob("packages-*") if p.name.removeprefix("packages-") not in keep]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        print(f"removed {path}, left by an earlier version")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--version", required=True)
    parser.add_argument("--work", type=Path, required=True, help="{work:path}")
    parser.add_argument("--artifacts", type=Path, required=True, help="{artifacts:path}")
    parser.add_argument("--unpacked", type=Path, required=True, help="{artifacts:decompressedPath}")
    parser.add_argument("--zip", action="append", default=[], metavar="FILE=SHA256", required=True)
    parser.add_argument("--link", help="point <work>/LINK at the first zip's folder")
    parser.add_argument("--requirements", action="store_true", help="a virtualenv from its requirements.txt")
    parser.add_argument(
        "--packages", action="store_true", help="publish the model packages as <work>/current"
    )
    args = parser.parse_args(argv)
    os.umask(0o022)
    try:
        python_ok()
        previous = version_in_use(args.work, [name for name in (args.link, "current") if name])
        folders = component_files(args)
        if args.requirements:
            virtualenv(args.work, folders[0] / "requirements.txt")
            if args.link:
                compile_code(folders[0], args.work / "venv" / "bin" / "python")
        if args.link:  # once the virtualenv is ready: a failed step leaves the old code with its old venv
            replace_link(args.work / args.link, folders[0])
        if args.packages:
            publish_packages(args.work, args.version, folders)
        prune(args.work, {args.version, *([previous] if previous else [])})
    except (InstallError, OSError, zipfile.BadZipFile) as exc:
        print(f"edgeclassifier install: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
