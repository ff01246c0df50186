"""How the ``farslip`` CLI reports failures: one line and exit code 2 for expected errors (FarSLIPError,
OS errors), the traceback only with -v (before or after the subcommand), a traceback plus a hint and
exit code 1 for bugs, and no message printed twice."""
from __future__ import annotations

import errno
import logging
import subprocess
import sys

import pytest

from farslip_ext.cli import describe_error, is_expected_error, main
from farslip_ext.errors import ConfigError


def _lines(text: str):
    return [ln for ln in text.splitlines() if ln.strip()]


def test_missing_file_is_one_line_with_exit_code_2(tmp_path, capsys):
    src = tmp_path / "nope.pt"
    rc = main(["convert", str(src), str(tmp_path / "out.safetensors")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert _lines(err) == [f"farslip convert: error: checkpoint file not found: {src}"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_subcommand_adds_the_traceback(tmp_path, capsys, where):
    args = ["convert", str(tmp_path / "nope.pt"), str(tmp_path / "out.safetensors")]
    argv = ["-v", *args] if where == "before" else [*args, "-v"]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback (most recent call last)" in err and "FileNotFoundError" in err
    assert _lines(err)[-1].startswith("farslip convert: error: checkpoint file not found")
    assert sum(ln.startswith("farslip convert: error:") for ln in _lines(err)) == 1


def test_verbosity_counts_from_both_places():
    from farslip_ext.cli import _verbosity, build_parser

    p = build_parser()
    assert _verbosity(p.parse_args(["-v", "list", "-v"])) == 2
    assert _verbosity(p.parse_args(["list", "-q"])) == -1
    assert _verbosity(p.parse_args(["list"])) == 0


def test_farslip_error_from_a_command(tmp_path, capsys):
    rc = main(["export", "farslip-test-tiny", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(_lines(err)) == 1
    assert "--pretrained" in err and "--random-init" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_full_disk_names_the_path_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    from tests.helpers.checkpoints import random_state_dict, save_container

    src = save_container(random_state_dict("farslip-test-tiny"), tmp_path / "ckpt.pt", "bare")
    dst = tmp_path / "out" / "tiny.safetensors"

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    rc = main(["convert", str(src), str(dst)])
    err = capsys.readouterr().err
    errors = [ln for ln in _lines(err) if "error" in ln]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("farslip convert: error: no space left") and str(dst) in errors[0]
    assert list((tmp_path / "out").iterdir()) == []  # the partial file was removed


def test_permission_error_names_the_path_and_the_fix(tmp_path, capsys, monkeypatch):
    from farslip_ext.commands import listing

    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro" / "x.json"))

    monkeypatch.setattr(listing, "_list", denied)
    rc = main(["list"])
    err = capsys.readouterr().err
    assert rc == 2
    assert _lines(err) == [f"farslip list: error: permission denied: {tmp_path / 'ro' / 'x.json'}; check its "
                           f"permissions or choose a folder you can write to"]


def test_read_only_file_system_message():
    e = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.safetensors")
    assert describe_error(e) == ("read-only file system: /mnt/ro/out.safetensors; write somewhere else, or remount "
                                 "that file system read-write")
    assert is_expected_error(e)


@pytest.mark.parametrize("code,fix", [(errno.EACCES, "check its permissions"), (errno.EROFS, "write somewhere else")])
def test_an_unwritable_destination_names_the_file_asked_for(tmp_path, capsys, monkeypatch, code, fix):
    """The write fails on atomic_path's temporary file; the message names DST (not .DST.PID.partial)."""
    import os

    import safetensors.torch

    from tests.helpers.checkpoints import random_state_dict, save_container

    src = save_container(random_state_dict("farslip-test-tiny"), tmp_path / "ckpt.pt", "bare")
    dst = tmp_path / "ro" / "tiny.safetensors"

    def refused(tensors, filename, metadata=None):
        raise OSError(code, os.strerror(code), filename)

    monkeypatch.setattr(safetensors.torch, "save_file", refused)
    rc = main(["convert", str(src), str(dst)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (line,) = [ln for ln in _lines(err) if "error" in ln]
    assert line.startswith(f"farslip convert: error: {os.strerror(code).lower()}: {dst}; {fix}"), line
    assert not dst.exists() and list(dst.parent.iterdir()) == []


def test_a_bug_keeps_its_traceback_and_gets_a_hint(capsys, monkeypatch):
    from farslip_ext.commands import listing

    def buggy(args):
        return {}["missing key"]

    monkeypatch.setattr(listing, "_list", buggy)
    rc = main(["list"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert "bug in farslip_ext" in _lines(err)[-1] and "report it" in _lines(err)[-1]


def test_library_error_caused_by_an_os_error_is_expected():
    try:
        try:
            raise FileNotFoundError("Failed to download file (x.bin) for org/repo")
        except FileNotFoundError as e:  # what open_clip does with a failed download
            raise RuntimeError(f"Failed to download weights for tag 'openai': {e}")
    except RuntimeError as exc:
        assert is_expected_error(exc)
    try:
        {}["x"]
    except KeyError as exc:
        assert not is_expected_error(exc)
    assert is_expected_error(ConfigError("bad value 3 for x; use 1 or 2"))


def test_a_library_error_log_is_not_printed_twice(capsys, monkeypatch):
    """open_clip logs ``logging.error(msg)`` and then raises ``RuntimeError(msg)``: one line on stderr."""
    from farslip_ext.commands import listing

    msg = "Failed to download weights for tag 'openai': offline and not in the cache"

    def like_open_clip(args):
        try:
            raise FileNotFoundError("offline and not in the cache")
        except FileNotFoundError:
            logging.error(msg)
            raise RuntimeError(msg)

    monkeypatch.setattr(listing, "_list", like_open_clip)
    rc = main(["list"])
    err = capsys.readouterr().err
    assert rc == 2
    assert _lines(err) == [f"farslip list: error: {msg}"]


def test_an_unrelated_library_error_log_is_still_shown(capsys, monkeypatch):
    from farslip_ext.commands import listing

    def logs_then_fails(args):
        logging.getLogger("somelib").error("somelib could not open its cache")
        raise ConfigError("x must be 1 or 2, got 3")

    monkeypatch.setattr(listing, "_list", logs_then_fails)
    assert main(["list"]) == 2
    assert _lines(capsys.readouterr().err) == ["error: somelib could not open its cache",
                                               "farslip list: error: x must be 1 or 2, got 3"]


def test_usage_errors_are_argparse_exit_code_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert"])
    assert e.value.code == 2 and "required" in capsys.readouterr().err


def test_real_process_exit_code_and_single_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "farslip_ext.cli", "export", "farslip-test-tiny", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                          "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and r.stdout == ""
    assert _lines(r.stderr)[-1].startswith("farslip export: error: farslip export farslip-test-tiny without")
    assert "Traceback" not in r.stderr


def test_handler_is_removed_after_main(capsys):
    root = logging.getLogger()
    before = list(root.handlers)
    main(["list", "--json"])
    capsys.readouterr()
    assert root.handlers == before
