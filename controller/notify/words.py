"""The notifications' words, in Bahasa Indonesia: one table per thing named, no I/O.

`text(...)` makes the one message of an alarm change, e.g.::

    [KRITIS] Alarm: kebocoran air di Taman Bekapai (zona z2) sejak 14 Maret 2025 pukul 06.00 WITA

A code missing from `CODE_WORDS` (one added to ``protocol.events.AlarmCode`` later) gets a
generic sentence naming the code, never an error.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

CODE_WORDS: dict[str, str] = {
    "max_on_time": "keluaran dimatikan paksa karena melewati batas waktu nyala",
    "job_failed": "jadwal gagal dijalankan; semua keluaran dimatikan",
    "engine_error": "pengendali penyiraman gagal; keluaran dimatikan",
    "tick_failed": "pengendali pakan gagal; keluaran dimatikan",
    "config_invalid": "konfigurasi tersimpan tidak cocok lagi dengan konfigurasi lokal",
    "remote_config_invalid": "konfigurasi dari pusat tidak dapat diterapkan",
    "sensor_stale": "sensor terlalu lama tidak memberi bacaan yang baik",
    "sensor_recovered": "sensor kembali membaca",
    "leak": "kebocoran air",
    "leak_cleared": "kebocoran air berhenti",
    "no_flow": "katup terbuka tetapi air tidak mengalir",
    "feeder_jam": "pemberi pakan macet",
    "feeder_no_feed": "pakan tidak keluar dari pemberi pakan",
    "feeder_needs_calibration": "pemberi pakan perlu dikalibrasi ulang",
    "hopper_empty": "wadah pakan kosong",
    "hopper_low": "wadah pakan hampir habis",
    "hopper_sensor_failed": "sensor wadah pakan gagal",
    "invalid_event": "perangkat lunak unit mengirim kejadian yang tidak sah",
    "unit_offline": "unit tidak terhubung",
    "data_stale": "data unit tidak diperbarui",
}
"""Per alarm code, what it is, as a phrase that follows "Alarm: "."""

SEVERITY_WORDS = {"critical": "KRITIS", "warning": "PERINGATAN", "info": "INFO"}

SUBJECT_WORDS = {"zone": "zona", "feeder": "pemberi pakan", "pond": "kolam",
                 "output": "keluaran"}
"""What an alarm's subject is, by the ``details`` field that names it."""

MONTHS = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
          "September", "Oktober", "November", "Desember")

ZONE_NAMES = {"Asia/Makassar": "WITA", "Asia/Jakarta": "WIB", "Asia/Pontianak": "WIB",
              "Asia/Jayapura": "WIT"}


def code_words(code: str) -> str:
    return CODE_WORDS.get(code) or f"alarm dengan kode '{code}'"


def subject_words(subject: str, details: dict | None) -> str:
    """``zona z2`` for subject ``z2`` named by ``details["zone"]``; the subject as it is
    when nothing says what it is; ``""`` for none."""
    if not subject:
        return ""
    kind, sep, name = subject.partition(":")
    if sep and kind in SUBJECT_WORDS:
        return f"{SUBJECT_WORDS[kind]} {name}"
    for field, words in SUBJECT_WORDS.items():
        if (details or {}).get(field) == subject:
            return f"{words} {subject}"
    return subject


def when(at: datetime, zone: str) -> str:
    """``14 Maret 2025 pukul 06.00 WITA``."""
    local = at.astimezone(ZoneInfo(zone))
    abbrev = ZONE_NAMES.get(zone) or local.tzname() or zone
    return (f"{local.day} {MONTHS[local.month - 1]} {local.year} "
            f"pukul {local:%H.%M} {abbrev}")


def clock(at: datetime, zone: str) -> str:
    """``06.00``: a time of day in the city's zone."""
    return f"{at.astimezone(ZoneInfo(zone)):%H.%M}"


def who(cleared_by: str | None) -> str:
    """Who cleared an alarm: ``person:budi`` -> ``budi``."""
    if not cleared_by:
        return ""
    if cleared_by.startswith("person:"):
        return cleared_by.removeprefix("person:")
    return {"unit": "unit", "controller": "pusat kendali"}.get(cleared_by, cleared_by)


def what(alarm: dict) -> str:
    """``kebocoran air di Taman Bekapai (zona z2)``."""
    place = alarm.get("device_name") or alarm["device_id"]
    subject = subject_words(alarm.get("subject") or "", alarm.get("details"))
    return f"{code_words(alarm['code'])} di {place}" + (f" ({subject})" if subject else "")


def title(alarm: dict) -> str:
    """``[KRITIS] kebocoran air di Taman Bekapai (zona z2)``: a subject line."""
    return f"[{SEVERITY_WORDS.get(alarm.get('severity') or '', 'ALARM')}] {what(alarm)}"


def text(alarm: dict, change: str, zone: str, *, at: datetime,
         escalated_after_s: float | None = None) -> str:
    """The message for one change (``raised``, ``acknowledged``, ``cleared``) of
    ``alarm`` at ``at``; ``escalated_after_s``: a raise told to the next contact."""
    severity = SEVERITY_WORDS.get(alarm.get("severity") or "", "ALARM")
    if change == "raised":
        words = f"[{severity}] Alarm: {what(alarm)} sejak {when(at, zone)}"
        if escalated_after_s is not None:
            words = (f"[{severity}] Eskalasi: belum diakui dalam "
                     f"{_duration(escalated_after_s)}. Alarm: {what(alarm)} "
                     f"sejak {when(at, zone)}")
        return words
    if change == "acknowledged":
        words = (f"[{severity}] Diakui oleh {alarm.get('acked_by') or '-'} "
                 f"pada {when(at, zone)}: {what(alarm)}")
        note = (alarm.get("ack_note") or "").strip()
        return words + (f". Catatan: {note}" if note else "")
    if change == "cleared":
        by = who(alarm.get("cleared_by"))
        return (f"[{severity}] Selesai: {what(alarm)}, pada {when(at, zone)}"
                + (f" (oleh {by})" if by else ""))
    return f"[{severity}] {what(alarm)}: {change}"


def summary_text(alarm: dict, zone: str, *, first: datetime, last: datetime,
                 times: int) -> str:
    """One message for an alarm raised and cleared again before its raise went out
    (``times`` such alarms, the first raised at ``first``, the last cleared at ``last``)."""
    severity = SEVERITY_WORDS.get(alarm.get("severity") or "", "ALARM")
    if times == 1:
        return (f"[{severity}] Alarm singkat: {what(alarm)} muncul pada {when(first, zone)} "
                f"dan selesai lagi pukul {clock(last, zone)}")
    return (f"[{severity}] Alarm berulang: {what(alarm)} muncul dan selesai lagi {times} "
            f"kali antara {when(first, zone)} dan pukul {clock(last, zone)}; sekarang selesai")


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} jam"
    if seconds >= 60:
        return f"{round(seconds / 60)} menit"
    return f"{round(seconds)} detik"
