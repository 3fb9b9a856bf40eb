from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from agent_client.errors import FrameError, SourceError
from component.sources import open_source


def write(folder: Path, name: str) -> Path:
    path = folder / name
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return path


def test_folder_yields_images_in_name_order_and_loops(tmp_path: Path) -> None:
    write(tmp_path, "b.png")
    write(tmp_path, "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(tmp_path)
    frames = [source.next_frame() for _ in range(3)]
    assert [Path(f.source).name for f in frames if f] == ["a.jpg", "b.png", "a.jpg"]
    assert [f.frame_id for f in frames if f] == [1, 2, 3]


def test_a_folder_pass_picks_up_new_files(tmp_path: Path) -> None:
    write(tmp_path, "a.jpg")
    source = open_source(tmp_path)
    assert source.next_frame() is not None
    write(tmp_path, "b.jpg")
    names = [Path(f.source).name for f in (source.next_frame(), source.next_frame()) if f]
    assert names == ["a.jpg", "b.jpg"]


def test_without_loop_the_source_ends(tmp_path: Path) -> None:
    write(tmp_path, "a.jpg")
    source = open_source(tmp_path, loop=False)
    assert source.next_frame() is not None
    assert source.next_frame() is None


def test_a_corrupt_file_raises_once_and_the_source_moves_on(tmp_path: Path) -> None:
    write(tmp_path, "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    write(tmp_path, "c.jpg")
    source = open_source(tmp_path)
    assert source.next_frame() is not None
    with pytest.raises(FrameError, match=r"frame 2 \(.*b\.jpg\)"):
        source.next_frame()
    frame = source.next_frame()
    assert frame is not None and Path(frame.source).name == "c.jpg" and frame.frame_id == 3


def test_single_image_repeats(tmp_path: Path) -> None:
    path = write(tmp_path, "one.png")
    source = open_source(path)
    assert [f.source for f in (source.next_frame(), source.next_frame()) if f] == [str(path)] * 2


def test_missing_or_empty_sources_say_which_key_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="ImageName"):
        open_source(tmp_path / "nope.jpg")
    with pytest.raises(SourceError, match="holds no images"):
        open_source(tmp_path)


def test_a_file_larger_than_its_reported_size_is_read_whole_and_the_limit_still_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale size (a network file system's cache, a file still being written) is a fault made here by a
    stand-in fstat (named as such): the read goes on to the end of the file, up to MAX_FILE_BYTES."""
    import os

    from component import sources

    path = write(tmp_path, "a.png")
    data = path.read_bytes()
    real = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:  # stand-in: reports the file as 10 bytes long
        info = real(fd)
        return os.stat_result((info.st_mode, *info[1:6], 10, *info[7:]))

    monkeypatch.setattr(sources.os, "fstat", stale_fstat)
    assert sources._read(path) == data
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 4096)  # 1 MiB read in growing pieces
    assert sources._read(big) == big.read_bytes()
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", len(data) - 1)
    with pytest.raises(FrameError, match="larger than"):
        sources._read(path)
