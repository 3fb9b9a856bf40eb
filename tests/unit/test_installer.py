"""recipes/installer.py, the install step of every component, called in-process (`installer.main([...])`).

Zips are written here with zipfile; `python -m venv` and pip are replaced by a fake that records what it
was asked (tests/integration/test_installer.py runs the real ones, and the built zip itself).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recipes import installer

NAME = "edgeclassifier.Demo.zip"
STEM = "edgeclassifier.Demo"
MODEL = "edgeclassifier.Model.EfficientNetLite0.zip"
NEO = "edgeclassifier.Model.EfficientNetLite0.Neo-x86_64.zip"
PINS = b"tinypkg==1.0\n"
VARIANTS = ("fp32", "int8", "neo")


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o40755 << 16 if name.endswith("/") else 0o100600 << 16) | 0
            archive.writestr(info, data)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Core:
    """What a core gives an install step: {work:path}, {artifacts:path}, {artifacts:decompressedPath}."""

    root: Path
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def unpacked(self) -> Path:
        return self.root / "artifacts-unarchived"

    def ship(self, name: str, entries: dict[str, bytes]) -> str:
        """The zip as the core downloads it (and does not unarchive); its digest goes into the recipe."""
        data = zip_of(entries)
        (self.artifacts / name).write_bytes(data)
        self.digests[name] = sha(data)
        return self.digests[name]

    def install(self, version: str, *options: str, zips: tuple[str, ...] = (NAME,)) -> int:
        argv = ["install", "--version", version, "--work", str(self.work), "--artifacts", str(self.artifacts)]
        argv += ["--unpacked", str(self.unpacked)]
        for name in zips:
            argv += ["--zip", f"{name}={self.digests[name]}"]
        return installer.main([*argv, *options])

    def own(self, version: str, stem: str = STEM) -> Path:
        return self.work / "unpacked" / version / stem


@pytest.fixture
def core(tmp_path: Path) -> Core:
    made = Core(tmp_path / "gg")
    for folder in (made.work, made.artifacts, made.unpacked):
        folder.mkdir(parents=True)
    return made


@dataclass
class FakeTools:
    """`python -m venv` and pip, recorded; pip fails while fail_pip is set, venv while fail_venv is."""

    calls: list[list[str]] = field(default_factory=list)
    fail_pip: bool = False
    fail_venv: bool = False

    def run(self, command: list[str], check: bool = False) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        if command[1:3] == ["-m", "venv"]:
            if self.fail_venv:
                raise subprocess.CalledProcessError(1, command)
            (Path(command[3]) / "bin").mkdir(parents=True)
            (Path(command[3]) / "bin" / "python").write_text("fake python\n")
        elif command[1:4] == ["-m", "pip", "install"]:
            if self.fail_pip:
                raise subprocess.CalledProcessError(1, command)
            requirements = Path(command[command.index("--requirement") + 1])
            (Path(command[0]).parents[1] / "installed.txt").write_bytes(requirements.read_bytes())
        elif command[1:4] == ["-I", "-m", "compileall"]:
            pass  # the real compile is tests/integration/test_installer.py's
        else:
            raise AssertionError(f"the installer ran {command}")
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    fake = FakeTools()
    namespace = types.SimpleNamespace(run=fake.run, CalledProcessError=subprocess.CalledProcessError)
    monkeypatch.setattr(installer, "subprocess", namespace)
    return fake


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------ unpacking


def test_the_zip_is_unpacked_when_the_core_did_not(core: Core, capsys: pytest.CaptureFixture[str]) -> None:
    digest = core.ship(NAME, {"app/": b"", "app/main.py": b"print(1)\n", "deep/er/data.txt": b"x" * 10})
    (core.unpacked / STEM).mkdir()  # nucleus lite may leave the folder empty
    assert core.install("1.0.0") == 0
    own = core.own("1.0.0")
    assert (own / "app" / "main.py").read_bytes() == b"print(1)\n"
    assert (own / "deep" / "er" / "data.txt").read_bytes() == b"x" * 10
    for path in (own / "app" / "main.py", own / "deep" / "er" / "data.txt"):
        assert path.stat().st_mode & 0o7777 == 0o644  # not the 0600 the zip says
    for path in (own, own / "app", own / "deep", own / "deep" / "er"):
        assert path.stat().st_mode & 0o7777 == 0o755
    assert (own.parent / f"{STEM}.sha256").read_text() == digest + "\n"
    assert not own.with_name(f"{STEM}.partial").exists()
    assert "unpacking" in capsys.readouterr().out


def test_a_wrong_digest_is_refused_and_nothing_is_written(
    core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = core.ship(NAME, {"app/main.py": b"print(1)\n"})
    core.digests[NAME] = sha(b"another zip")
    assert core.install("1.0.0", "--link", "app") == 1
    err = capsys.readouterr().err
    assert f"has SHA-256 {digest}, the recipe says {core.digests[NAME]}: redeploy the component" in err
    assert files_under(core.work) == []


@pytest.mark.parametrize("bad", ["../x", "/tmp/absolute-x", "app/../../x", "app\\..\\x"])
def test_an_unsafe_name_is_refused(core: Core, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    core.ship(NAME, {"app/first.py": b"1\n", bad: b"escaped\n"})
    assert core.install("1.0.0", "--link", "app") == 1
    assert f"unsafe entry {bad!r}; rebuild the component" in capsys.readouterr().err
    assert not (core.work / "unpacked" / "x").exists()
    assert not (core.work / "x").exists()
    assert not Path("/tmp/absolute-x").exists()
    assert files_under(core.work) in ([], ["unpacked", "unpacked/1.0.0"])  # no files, no half folder


def test_the_bytes_written_are_bounded(
    core: Core, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(installer, "MAX_UNPACKED", 1000)
    core.ship(NAME, {"a.bin": b"a" * 600, "b.bin": b"b" * 400})
    assert core.install("1.0.0") == 0  # exactly the bound
    core.ship(NAME, {"a.bin": b"a" * 600, "b.bin": b"b" * 401})  # a zip bomb in small
    assert core.install("1.0.1") == 1
    assert "unpacks to more than" in capsys.readouterr().err
    assert not core.own("1.0.1").exists()
    assert not core.own("1.0.1").with_name(f"{STEM}.partial").exists()  # no 1000 bytes left on the disk
    assert (core.own("1.0.0") / "b.bin").stat().st_size == 400


def test_the_code_the_core_unpacked_is_copied_into_the_work_folder_and_compiled_there(
    core: Core, capsys: pytest.CaptureFixture[str], tools: FakeTools
) -> None:
    """The core's files are not the component user's to write: Python could never keep their bytecode."""
    core.ship(NAME, {"app/main.py": b"from the zip\n", "requirements.txt": b"six==1.16.0\n"})
    core.digests[NAME] = sha(b"not this zip")  # the core checked; a check here would refuse
    (core.unpacked / STEM / "app").mkdir(parents=True)
    (core.unpacked / STEM / "app" / "main.py").write_bytes(b"from the core\n")
    (core.unpacked / STEM / "requirements.txt").write_bytes(b"six==1.16.0\n")
    assert core.install("1.0.0", "--link", "app", "--requirements") == 0
    assert (core.work / "app").readlink() == core.own("1.0.0")
    assert (core.work / "app" / "app" / "main.py").read_bytes() == b"from the core\n"
    assert oct((core.own("1.0.0") / "app" / "main.py").stat().st_mode & 0o777) == "0o644"
    compiled = [c for c in tools.calls if c[1:4] == ["-I", "-m", "compileall"]]
    assert compiled == [
        [str(core.work / "venv" / "bin" / "python"), "-I", "-m", "compileall", "-q", str(core.own("1.0.0"))]
    ]
    assert "copying" in capsys.readouterr().out
    assert core.install("1.0.0", "--link", "app", "--requirements") == 0  # the same again: nothing copied
    assert "copying" not in capsys.readouterr().out


def test_the_files_the_core_unpacked_for_a_component_without_code_are_used_as_they_are(
    core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    core.ship(NAME, {"data.bin": b"from the zip\n"})
    core.digests[NAME] = sha(b"not this zip")  # the core checked; a check here would refuse
    (core.unpacked / STEM).mkdir(parents=True)
    (core.unpacked / STEM / "data.bin").write_bytes(b"from the core\n")
    assert core.install("1.0.0") == 0
    assert not (core.work / "unpacked").exists()
    assert "unpacking" not in capsys.readouterr().out


def test_a_link_in_the_files_the_core_unpacked_is_refused_and_nothing_copied(core: Core) -> None:
    core.ship(NAME, {"app/main.py": b"x\n"})
    (core.unpacked / STEM).mkdir(parents=True)
    (core.unpacked / STEM / "secrets").symlink_to("/etc")
    assert core.install("1.0.0", "--link", "app") == 1
    assert not core.own("1.0.0").exists() and not (core.work / "app").exists()


def test_a_second_install_of_the_same_zip_does_not_unpack_it_again(
    core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    core.ship(NAME, {"main.py": b"1\n"})
    assert core.install("1.0.0") == 0
    (core.own("1.0.0") / "sentinel").write_text("still here\n")
    capsys.readouterr()
    assert core.install("1.0.0") == 0
    assert (core.own("1.0.0") / "sentinel").exists()
    assert "unpacking" not in capsys.readouterr().out
    core.ship(NAME, {"main.py": b"2\n"})  # the same version rebuilt: another digest, unpacked again
    assert core.install("1.0.0") == 0
    assert not (core.own("1.0.0") / "sentinel").exists()
    assert (core.own("1.0.0") / "main.py").read_bytes() == b"2\n"


def test_a_missing_zip_says_to_redeploy(core: Core, capsys: pytest.CaptureFixture[str]) -> None:
    core.digests[NAME] = sha(b"")
    assert core.install("1.0.0") == 1
    assert f"{core.artifacts / NAME} is missing and the core unpacked nothing: redeploy" in (
        capsys.readouterr().err
    )


def test_a_file_that_is_no_zip_is_refused(core: Core, capsys: pytest.CaptureFixture[str]) -> None:
    (core.artifacts / NAME).write_bytes(b"not a zip at all")
    core.digests[NAME] = sha(b"not a zip at all")
    assert core.install("1.0.0") == 1
    assert capsys.readouterr().err.startswith("edgeclassifier install: ")
    assert not core.own("1.0.0").exists()


# ------------------------------------------------------------------------------------------ --link


def test_the_link_follows_each_new_version_atomically(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    link = core.work / "app"
    core.ship(NAME, {"main.py": b"1\n"})
    assert core.install("1.0.0", "--link", "app") == 0
    assert link.readlink() == core.own("1.0.0")

    swaps: list[tuple[str, str | None]] = []
    real_replace = os.replace

    def replace(source: str | Path, target: str | Path) -> None:
        if Path(target) == link:  # the old link is still there, whole, until the new one is renamed over it
            swaps.append((Path(source).name, (link / "main.py").read_text()))
        real_replace(source, target)

    monkeypatch.setattr(installer.os, "replace", replace)
    core.ship(NAME, {"main.py": b"2\n"})
    assert core.install("1.0.1", "--link", "app") == 0
    assert swaps == [("app.new", "1\n")]
    assert link.is_symlink() and link.readlink() == core.own("1.0.1")
    assert (link / "main.py").read_text() == "2\n"
    assert not (core.work / "app.new").exists()


def test_older_versions_are_pruned_but_the_one_in_use_until_now(core: Core) -> None:
    for n in range(4):
        core.ship(NAME, {"main.py": f"{n}\n".encode()})
        assert core.install(f"1.0.{n}", "--link", "app") == 0
    # 1.0.3 installed, 1.0.2 was in use until now (a process of it may still run), the rest removed
    assert sorted(p.name for p in (core.work / "unpacked").iterdir()) == ["1.0.2", "1.0.3"]


# ------------------------------------------------------------------------------------------ --requirements


def with_pins(core: Core, pins: bytes = PINS, code: bytes = b"1\n") -> None:
    core.ship(NAME, {"requirements.txt": pins, "main.py": code})


def test_the_virtualenv_is_built_beside_and_swapped_in(core: Core, tools: FakeTools) -> None:
    with_pins(core)
    assert core.install("1.0.0", "--link", "app", "--requirements") == 0
    fresh = core.work / "venv.new"
    assert tools.calls[0] == [sys.executable, "-m", "venv", str(fresh)]
    pip = tools.calls[1]
    assert pip[:4] == [str(fresh / "bin" / "python"), "-m", "pip", "install"]
    assert "--only-binary=:all:" in pip
    assert pip[pip.index("--requirement") + 1] == str(core.own("1.0.0") / "requirements.txt")
    venv = core.work / "venv"
    assert (venv / "installed.txt").read_bytes() == PINS
    assert json.loads((venv / installer.STAMP).read_text()) == {
        "requirements": sha(PINS),
        "python": sys.version,
        "interpreter": os.path.realpath(sys.executable),
    }
    assert not fresh.exists() and not (core.work / "venv.old").exists()


def test_a_missing_requirements_file_stops_before_the_virtualenv_is_touched(
    core: Core, tools: FakeTools, capsys: pytest.CaptureFixture[str]
) -> None:
    with_pins(core)
    assert core.install("1.0.0", "--link", "app", "--requirements") == 0
    (core.work / "venv" / "marker").write_text("the venv in use\n")
    tools.calls.clear()
    core.ship(NAME, {"main.py": b"2\n"})  # no requirements.txt
    assert core.install("1.0.1", "--link", "app", "--requirements") == 1
    err = capsys.readouterr().err
    assert f"{core.own('1.0.1') / 'requirements.txt'} is missing" in err and "redeploy" in err
    assert tools.calls == []
    assert (core.work / "venv" / "marker").read_text() == "the venv in use\n"
    assert (core.work / "app").readlink() == core.own("1.0.0")  # the run step still sees 1.0.0 whole


def test_unchanged_pins_and_python_keep_the_virtualenv(
    core: Core, tools: FakeTools, capsys: pytest.CaptureFixture[str]
) -> None:
    with_pins(core)
    assert core.install("1.0.0", "--requirements") == 0
    stamp = core.work / "venv" / installer.STAMP
    before = stamp.stat().st_mtime_ns
    tools.calls.clear()
    tools.fail_pip = tools.fail_venv = True  # were either run, the step would fail
    with_pins(core, code=b"2\n")  # new code, same pins
    assert core.install("1.0.1", "--requirements") == 0
    assert tools.calls == []
    assert stamp.stat().st_mtime_ns == before
    assert f"virtualenv {core.work / 'venv'} is up to date" in capsys.readouterr().out


def edit_stamp(venv: Path, key: str, value: str) -> None:
    stamp = venv / installer.STAMP
    recorded = json.loads(stamp.read_text())
    recorded[key] = value
    stamp.write_text(json.dumps(recorded))


@pytest.mark.parametrize(
    ("change", "pins"),
    [
        (lambda venv: None, b"tinypkg==2.0\n"),
        (lambda venv: edit_stamp(venv, "python", "3.10.12 (main, another build)"), PINS),
        (lambda venv: edit_stamp(venv, "interpreter", "/usr/bin/python3.10"), PINS),
        (lambda venv: (venv / installer.STAMP).write_text("{not json"), PINS),
        (lambda venv: (venv / "bin" / "python").unlink(), PINS),
    ],
    ids=["pins", "python-version", "interpreter", "broken-stamp", "no-python"],
)
def test_changed_pins_or_python_rebuild_the_virtualenv(
    core: Core, tools: FakeTools, change: Callable[[Path], None], pins: bytes
) -> None:
    with_pins(core)
    assert core.install("1.0.0", "--requirements") == 0
    venv = core.work / "venv"
    (venv / "marker").write_text("old venv\n")
    change(venv)
    tools.calls.clear()
    with_pins(core, pins=pins)
    assert core.install("1.0.1", "--requirements") == 0
    assert [call[1:3] for call in tools.calls] == [["-m", "venv"], ["-m", "pip"]]
    assert not (venv / "marker").exists()
    assert (venv / "installed.txt").read_bytes() == pins
    assert json.loads((venv / installer.STAMP).read_text())["requirements"] == sha(pins)
    assert json.loads((venv / installer.STAMP).read_text())["python"] == sys.version


def test_a_pip_failure_keeps_the_old_virtualenv(
    core: Core, tools: FakeTools, capsys: pytest.CaptureFixture[str]
) -> None:
    with_pins(core)
    assert core.install("1.0.0", "--link", "app", "--requirements") == 0
    stamp = (core.work / "venv" / installer.STAMP).read_text()
    tools.fail_pip = True
    with_pins(core, pins=b"tinypkg==2.0\n", code=b"2\n")
    assert core.install("1.0.1", "--link", "app", "--requirements") == 1
    err = capsys.readouterr().err
    assert f"pip could not install {core.own('1.0.1') / 'requirements.txt'}" in err
    assert "the previous virtualenv is kept" in err
    venv = core.work / "venv"
    assert (venv / "installed.txt").read_bytes() == PINS
    assert (venv / installer.STAMP).read_text() == stamp
    assert not (core.work / "venv.new").exists()
    assert (core.work / "app").readlink() == core.own("1.0.0")  # old code with its old venv
    assert (core.work / "unpacked" / "1.0.0").is_dir()  # nothing pruned by a failed step


def test_a_missing_venv_module_says_what_to_install(
    core: Core, tools: FakeTools, capsys: pytest.CaptureFixture[str]
) -> None:
    tools.fail_venv = True
    with_pins(core)
    assert core.install("1.0.0", "--requirements") == 1
    assert "install the python3-venv package" in capsys.readouterr().err
    assert not (core.work / "venv").exists()


# ------------------------------------------------------------------------------------------ --packages


def ship_model(core: Core, tag: str, neo: bool = True) -> None:
    core.ship(
        MODEL,
        {
            "efficientnet-lite0/manifest.json": f'{{"v": "{tag}-fp32"}}'.encode(),
            "efficientnet-lite0-int8/manifest.json": f'{{"v": "{tag}-int8"}}'.encode(),
            "__main__.py": b"",
        },
    )
    neo_name = "efficientnet-lite0-neo/manifest.json" if neo else "elsewhere/manifest.json"
    core.ship(NEO, {neo_name: f'{{"v": "{tag}-neo"}}'.encode()})


def install_model(core: Core, version: str) -> int:
    return core.install(version, "--packages", zips=(MODEL, NEO))


def variant(core: Core, name: str) -> str:
    return str(json.loads((core.work / "current" / name / "manifest.json").read_text())["v"])


def test_the_model_packages_are_published_as_current(core: Core) -> None:
    ship_model(core, "a")
    core.work.chmod(0o700)
    assert install_model(core, "1.0.0") == 0
    current = core.work / "current"
    assert current.readlink() == core.work / "packages-1.0.0"
    assert {name: variant(core, name) for name in VARIANTS} == {
        "fp32": "a-fp32",
        "int8": "a-int8",
        "neo": "a-neo",
    }
    assert (current / "neo").readlink() == core.own(
        "1.0.0", NEO.removesuffix(".zip")
    ) / "efficientnet-lite0-neo"
    assert core.work.stat().st_mode & 0o777 == 0o755  # the agent and the inference component read it


def test_a_new_model_version_is_published_atomically_and_old_ones_pruned(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship_model(core, "a")
    assert install_model(core, "1.0.0") == 0
    seen: list[tuple[str, dict[str, str]]] = []
    real_replace = os.replace

    def replace(source: str | Path, target: str | Path) -> None:
        if Path(target) == core.work / "current":  # the new index whole, the old current still served
            index = Path(source).readlink()
            fresh = {v: json.loads((index / v / "manifest.json").read_text())["v"] for v in VARIANTS}
            seen.append((variant(core, "fp32"), fresh))
        real_replace(source, target)

    monkeypatch.setattr(installer.os, "replace", replace)
    ship_model(core, "b")
    assert install_model(core, "1.0.1") == 0
    assert seen == [("a-fp32", {"fp32": "b-fp32", "int8": "b-int8", "neo": "b-neo"})]
    assert variant(core, "int8") == "b-int8"
    assert installer.version_in_use(core.work, ["current"]) == "1.0.1"
    assert (core.work / "packages-1.0.0").is_dir() and (core.work / "unpacked" / "1.0.0").is_dir()

    ship_model(core, "c")
    assert install_model(core, "1.0.2") == 0
    assert sorted(p.name for p in core.work.glob("packages-*")) == ["packages-1.0.1", "packages-1.0.2"]
    assert sorted(p.name for p in (core.work / "unpacked").iterdir()) == ["1.0.1", "1.0.2"]
    assert variant(core, "neo") == "c-neo"


def test_a_zip_without_its_package_keeps_the_current_one(
    core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    ship_model(core, "a")
    assert install_model(core, "1.0.0") == 0
    ship_model(core, "b", neo=False)
    assert install_model(core, "1.0.1") == 1
    err = capsys.readouterr().err
    assert "efficientnet-lite0-neo holds no model package: redeploy the model component" in err
    assert (core.work / "current").readlink() == core.work / "packages-1.0.0"
    assert variant(core, "neo") == "a-neo"


def test_version_in_use_reads_the_links(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "unpacked" / "2.1.0" / "x").mkdir(parents=True)
    (work / "packages-3.0.0").mkdir()
    assert installer.version_in_use(work, ["app", "current"]) is None
    (work / "app").symlink_to(tmp_path / "elsewhere" / "2.0.0" / "x")  # the core's copy: nothing in work
    assert installer.version_in_use(work, ["app"]) is None
    (work / "current").symlink_to(work / "packages-3.0.0")
    assert installer.version_in_use(work, ["app", "current"]) == "3.0.0"
    (work / "app").unlink()
    (work / "app").symlink_to(work / "unpacked" / "2.1.0" / "x")
    assert installer.version_in_use(work, ["app", "current"]) == "2.1.0"
    (work / "plain").mkdir()
    assert installer.version_in_use(work, ["plain"]) is None


def test_prune_keeps_the_versions_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for version in ("1", "2", "3"):
        (tmp_path / "unpacked" / version).mkdir(parents=True)
        (tmp_path / f"packages-{version}").mkdir()
    (tmp_path / "venv").mkdir()
    installer.prune(tmp_path, {"2", "3"})
    assert files_under(tmp_path) == [
        "packages-2",
        "packages-3",
        "unpacked",
        "unpacked/2",
        "unpacked/3",
        "venv",
    ]
    assert capsys.readouterr().out.count("left by an earlier version") == 2
    installer.prune(tmp_path / "missing", {"2"})  # a first install: nothing there yet


# ------------------------------------------------------------------------------------------ python


@pytest.mark.parametrize(
    ("version", "ok"),
    [((3, 9, 18), False), ((3, 10, 0), True), ((3, 12, 9), True), ((3, 13, 0), False), ((2, 7, 18), False)],
)
def test_python_versions_outside_3_10_to_3_12_are_refused(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, int, int], ok: bool
) -> None:
    text = ".".join(map(str, version)) + " (main, fake)"
    monkeypatch.setattr(installer, "sys", types.SimpleNamespace(version_info=version, version=text))
    if ok:
        installer.python_ok()
        return
    with pytest.raises(installer.InstallError) as refused:
        installer.python_ok()
    assert str(refused.value) == (
        f"edgeclassifier needs python3 3.10 to 3.12; python3 here is {'.'.join(map(str, version))}"
    )


def test_an_unsupported_python_stops_the_step_before_anything_is_written(
    core: Core, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(installer, "PYTHONS", ((3, 0), (3, sys.version_info[1] - 1)))
    core.ship(NAME, {"main.py": b"1\n"})
    assert core.install("1.0.0", "--link", "app") == 1
    assert "edgeclassifier install: edgeclassifier needs python3" in capsys.readouterr().err
    assert files_under(core.work) == []
