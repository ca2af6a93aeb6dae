"""Clock trust: systemd-timesyncd's flag file first, then timedatectl; fixed modes."""

import subprocess

import pytest

from edge.timesync import TimesyncdCheck, make_sync_check


class FakeRun:
    def __init__(self, stdout="yes\n", returncode=0, exc=None):
        self.stdout, self.returncode, self.exc = stdout, returncode, exc
        self.calls = []

    def __call__(self, args, **kwargs):
        self.calls.append(args)
        if self.exc:
            raise self.exc
        return subprocess.CompletedProcess(args, self.returncode, self.stdout, "")


def test_timesync_flag_file_means_synced_without_asking(tmp_path):
    flag = tmp_path / "synchronized"
    flag.touch()
    run = FakeRun(stdout="no\n")
    assert TimesyncdCheck(flag_path=flag, run=run)() is True
    assert run.calls == []


@pytest.mark.parametrize(("stdout", "returncode", "expected"), [
    ("yes\n", 0, True),
    ("no\n", 0, False),
    ("", 1, False),
    ("yes\n", 1, False),
])
def test_timesync_asks_timedatectl_when_no_flag_file(tmp_path, stdout, returncode, expected):
    run = FakeRun(stdout=stdout, returncode=returncode)
    check = TimesyncdCheck(flag_path=tmp_path / "absent", run=run)
    assert check() is expected
    assert run.calls == [["timedatectl", "show", "-p", "NTPSynchronized", "--value"]]


@pytest.mark.parametrize("exc", [FileNotFoundError("timedatectl"),
                                 subprocess.TimeoutExpired("timedatectl", 2)])
def test_timesync_without_timedatectl_is_not_synced(tmp_path, exc, caplog):
    run = FakeRun(exc=exc)
    check = TimesyncdCheck(flag_path=tmp_path / "absent", run=run, ttl_s=0)
    assert check() is False
    assert check() is False
    assert caplog.text.count("treating the clock as not synchronised") == 1


def test_timesync_answer_is_cached_for_ttl(tmp_path):
    now = [0.0]
    flag = tmp_path / "synchronized"
    run = FakeRun(stdout="no\n")
    check = TimesyncdCheck(flag_path=flag, run=run, ttl_s=30, monotonic=lambda: now[0])
    assert check() is False
    flag.touch()  # timesyncd synchronised
    now[0] = 29
    assert check() is False
    assert len(run.calls) == 1
    now[0] = 30
    assert check() is True


def test_timesync_modes():
    assert make_sync_check("assume_synced")() is True
    assert make_sync_check("never_synced")() is False
    assert isinstance(make_sync_check("timesyncd"), TimesyncdCheck)
    with pytest.raises(ValueError):
        make_sync_check("gps")
