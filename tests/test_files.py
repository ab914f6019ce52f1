import os
import stat

import pytest

from objectness.files import atomic_write, write_json, write_text


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_permissions_of_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "a" / "table.md", "| x |\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "a" / "table.md").read_text() == "| x |\n"
    assert _mode(tmp_path / "a" / "table.md") == 0o644  # not mkstemp's 0600


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"j": 0.5})

    def fail(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == '{\n  "j": 0.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_temporary_file_has_the_suffix_of_the_destination(tmp_path):
    seen = []
    atomic_write(tmp_path / "figure.png", lambda temporary: seen.append(temporary) or temporary.write_bytes(b"x"))
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path
