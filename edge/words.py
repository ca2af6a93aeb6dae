"""What the unit's technician tools say, in Bahasa Indonesia and English.

``smartcity-edge check`` and ``selftest`` speak the technician's language (``--lang id``,
the default, or ``--lang en``). Every message is a code plus parameters; the words are
here, one table per language (``ID``, ``EN``), with the same codes in both::

    w = Words("id")
    w("pulsed", what=w("valve"), name="valve-bunga", pin=22, secs="0.5")
    w.reason(problem_reason)  # a config problem's reason (``edge.errors.Reason``)

A config problem's reason is a ``Reason``: its English text (what logs and ``run`` show)
is made from ``EN`` by its code, and ``Words("id").reason`` says it again from ``ID``.
Errors found by pydantic (out of range, wrong type, unknown key, ...) carry pydantic's
error type as their code (``pydantic.greater_than``...) and pydantic's own English text as
``msg``.

What a library or the operating system reports in its own words (an ``OSError``, an MQTT
reason) is said from the ``errno.*`` and ``mqtt.*`` entries where there is one, and as
the library words it otherwise.
"""

from __future__ import annotations

import errno
import socket

LANGS = ("id", "en")
DEFAULT_LANG = "id"
"""The units' technicians work in Balikpapan: Bahasa Indonesia unless asked otherwise."""

EN: dict[str, str] = {
    # -- verdicts and headings ------------------------------------------------------------
    "status.OK": "OK",
    "status.WARN": "WARN",
    "status.FAIL": "FAIL",
    "title": "Selftest {device}",
    "fit": "FIT TO RUN",
    "unfit": "NOT FIT TO RUN",
    "tally": "{verdict}: {fails} {fail}, {warns} {warn}",
    "check_ok": "{path}: OK ({kind}, unit {device}, OPD {opd})",
    "config_invalid": "{path}: invalid config",
    "config_problem": "{field}: {reason}",
    "config_ok": "Config {path}: valid.",
    "config_fail": "Config {path}: {field}: {reason}.",
    "config_stopped": "The config is invalid: nothing was switched.",
    "got": " (got {input})",
    "field.(file)": "(file)",
    "field.(syntax)": "(syntax)",
    # -- selftest: outputs ----------------------------------------------------------------
    "gpio_busy": "Cannot claim the GPIO pins: {error}.",
    "gpio_busy_do": "Is the daemon running? Stop it first: sudo systemctl stop {unit}",
    "valve": "Valve",
    "master_valve": "Master valve",
    "pump": "Pump",
    "motor": "Motor",
    "output": "Output",
    "pulsed": "{what} {name} (GPIO{pin}): on {secs} s, then off.",
    "pulsed_with": "{what} {name} (GPIO{pin}): on {secs} s with valve {valve} open, then off.",
    "pulse_fail": "{what} {name} (GPIO{pin}) did not switch: {error}.",
    "pulse_fail_do": "Check the relay board's power and wiring.",
    "stayed_off": "stayed off",
    "still_on": "Outputs still on after the test: {names}.",
    "still_on_do": "Cut the relay power now and call support.",
    # -- selftest: sensors ----------------------------------------------------------------
    "flow_ok": "Flow meter {name} (GPIO{pin}): {n} pulses while valves were open.",
    "flow_none": "Flow meter {name} (GPIO{pin}): no pulses while valves were open.",
    "flow_none_do": "Normal without water pressure; otherwise check the meter's wiring.",
    "rain_dry": "Rain sensor {name} (GPIO{pin}): dry.",
    "rain_wet": "Rain sensor {name} (GPIO{pin}): wet.",
    "rain_wet_do": "If it is not raining, check the sensor and its wires.",
    "input": "Input {name} (GPIO{pin}): {level}.",
    "high": "high",
    "low": "low",
    "soil_ok": "Soil probe {name} (zone {zone}): {value} %.",
    "soil": "Soil probe {name}",
    "water": "Water probe {name}",
    "water_ok": "Water probe {name}: {values}.",
    "hopper": "Hopper {name}",
    "hopper_ok": "Hopper {name}: {pct} % full.",
    "no_port": "{what}: {port} not found.",
    "no_port_do": "Check that the USB adapter is plugged in (ls /dev/serial/by-id).",
    "no_answer": "{what}: no answer on {port}.",
    "no_answer_do": "Check the cable and the probe's power.",
    "bad_answer": "{what}: bad answer on {port} ({error}).",
    "bad_answer_do": "Check the probe's settings (baud rate, key) and its cable.",
    "sensor_fail": "{what}: {error}.",
    "modbus_none": "{what}: no answer from Modbus slave {slave} on {port}.",
    "modbus_none_do": "Check the A/B wires, the slave address and the probe's power.",
    "ezo_do": "Check the cable, the probe board's power and that it is in UART mode.",
    "adc_fail": "{what}: MCP3008 channel {channel} gives no usable reading.",
    "adc_fail_do": "Check the probe's wires and that SPI is on (raspi-config).",
    "echo_fail": "{what}: no echo from the ultrasonic sensor.",
    "echo_fail_do": "Check its trigger/echo wires (GPIO{trigger}/{echo}) and 5 V supply.",
    "weight_fail": "{what}: no weight from {port}.",
    "weight_fail_do": "Check the load-cell board's cable and power.",
    "feeder_ok": "Feeder {name}: motor turned ({n} pulses in {secs} s).",
    "feeder_stuck": "Feeder {name}: motor on {secs} s, no rotation pulses (GPIO{pin}).",
    "feeder_stuck_do": "Check the auger for a jam, the motor's power and the rotation "
                       "sensor's wires.",
    "feeder_blind": "Feeder {name}: motor on {secs} s, then off (no rotation sensor: "
                    "check by eye).",
    # -- selftest: broker, clock, disk ----------------------------------------------------
    "broker_ok": "Broker {host}:{port}: login OK as {user}.",
    "broker_down": "Broker {host}:{port}: cannot connect ({error}).",
    "broker_down_do": "Check the network, the address in [broker] and the firewall.",
    "broker_refused": "Broker {host}:{port}: login refused ({reason}).",
    "broker_refused_do": "Check the password file, or provision again with a new "
                         "enrolment token.",
    "broker_silent": "Broker {host}:{port}: no answer to the login within {secs} s.",
    "broker_silent_do": "Check tls, ca_file and the port in [broker].",
    "broker_ca_do": "Copy the broker's CA certificate there (ca_file in [broker]), or "
                    "provision again with --ca-file.",
    "broker_secret": "Broker: cannot read the password file {path} ({error}).",
    "broker_secret_do": "Provision the unit again (smartcity-edge provision).",
    "anonymous": "(anonymous)",
    "clock_ok": "Clock synchronised: {local}.",
    "clock_bad": "Clock NOT synchronised (shows {local}).",
    "clock_bad_do": "Schedules wait for it. Check the network, then: timedatectl status",
    "disk_ok": "Disk: {free} MB free; state dir {path} writable.",
    "disk_low": "Disk: only {free} MB free for {path}.",
    "disk_low_do": "Free some space, e.g. sudo journalctl --vacuum-size=100M",
    "state_missing": "State dir {path} does not exist yet.",
    "state_missing_do": "The service makes it at its first start (or run provision).",
    "state_locked": "State dir {path} is not writable ({error}).",
    "state_locked_do": "Fix its owner: sudo chown -R smartcity: {path}",
    # -- what the system and the broker say -----------------------------------------------
    "errno.ENOENT": "No such file or directory",
    "errno.EACCES": "Permission denied",
    "errno.EPERM": "Operation not permitted",
    "errno.EISDIR": "Is a directory",
    "errno.EBUSY": "Device or resource busy",
    "errno.ECONNREFUSED": "Connection refused",
    "errno.ETIMEDOUT": "Connection timed out",
    "errno.EHOSTUNREACH": "No route to host",
    "errno.ENETUNREACH": "Network is unreachable",
    "errno.EROFS": "Read-only file system",
    "errno.ENOSPC": "No space left on device",
    "errno.gaierror": "host name not found",
    "mqtt.Not authorized": "Not authorized",
    "mqtt.Bad user name or password": "Bad user name or password",
    "mqtt.Client identifier not valid": "Client identifier not valid",
    "mqtt.Server unavailable": "Server unavailable",
    # -- config problems: the file --------------------------------------------------------
    "file_missing": "{error}",
    "file_denied": "{error}",
    "file_is_dir": "{error}",
    "file_unreadable": "{error}",
    "not_utf8": "not UTF-8 text: {error}",
    "toml_syntax_at": "{error}",
    "toml_syntax": "{error}",
    "unknown_kind": "must be one of {choices}, got {value!r}",
    "ca_file_missing": "file not found: {path}",
    "ca_file_not_pem": "{error}: {path}",
    "ca_file_unusable": "{error}: {path}",
    # -- config problems: any unit --------------------------------------------------------
    "name_used": "name {name!r} already used by {other}",
    "pin_used": "GPIO{pin} already used by {other}",
    "no_output": "no output named {name!r} ({role})",
    "no_input": "no input named {name!r} ({role})",
    "input_kind": "input {name!r} must be kind = {wanted!r}",
    "unknown_time_zone": "unknown time zone {zone!r}",
    # -- config problems: irrigation ------------------------------------------------------
    "start_time_bad": "{error}",
    "month_day_bad": "{error}",
    "start_times_repeat": "start times repeat",
    "one_day_rule": "use only one of weekdays, interval_days, odd_even (got {given})",
    "season_needs_both": "a season needs both active_from and active_to",
    "weekdays_empty": "name at least one day",
    "moisture_band": "must be below skip_above_pct (the hysteresis band)",
    "program_twice": "program {name!r} defined twice",
    "rules_twice": "rules for {zone!r} given twice",
    "no_zone": "no zone named {name!r}",
    "zone_no_probe": "zone {zone!r} has no soil_sensor in the local config",
    "no_flow_window": "must be at least window_s ({window_s} s)",
    "wet_is_dry": "must differ from dry_raw",
    "zone_twice": "zone {name!r} defined twice",
    "valve_shared": "output {valve!r} already opens zone {zone!r}",
    "master_is_valve": "{name!r} is a zone valve",
    "flow_below_no_flow": "{flow:g} L/min is not above flow.no_flow_below_lpm ({limit:g}): "
                          "every run would raise no_flow",
    "sensor_twice": "sensor {name!r} defined twice",
    "adc_channel_used": "MCP3008 CE{device} channel {channel} already used by {other!r}",
    "spi_pin": "GPIO{pin} is {spi}, needed by the MCP3008 soil sensors",
    "no_soil_sensor": "no [[soil.sensors]] entry named {name!r}",
    "soil_sensor_shared": "sensor {name!r} already read for zone {zone!r}",
    # -- config problems: fish feeder -----------------------------------------------------
    "full_not_below_empty": "must be less than empty_distance_m",
    "echo_is_trigger": "must differ from trigger_pin",
    "empty_not_below_low": "must be below low_pct",
    "daily_below_dose": "must be at least max_dose_g",
    "needs_rotation_input": "confirm_by = 'pulses' needs a rotation_input",
    "needs_loadcell": "confirm_by = 'weight' needs a loadcell hopper",
    "time_not_hhmm": "time {value!r} is not HH:MM (24 h)",
    "times_order": "times must be in order, each once",
    "doses_or_biomass": "give doses_g or fish_count/avg_weight_g, not both",
    "dose_per_time": "need one dose per time ({n})",
    "needs_doses": "give doses_g, or fish_count and avg_weight_g",
    "name_twice": "name {name!r} used twice",
    "motor_shared": "motor {motor!r} already drives feeder {feeder!r}",
    "no_pond": "no pond named {name!r}",
    "dose_over_max_on": "{dose:g} g at {rate:g} g/s needs {need:.0f} s, more than output "
                        "{motor!r} max_on_s = {max_on:g}",
    "confirm_over_max_on": "must be below the motor's max_on_s ({max_on:g})",
    "pond_no_feeder": "pond {name!r} has no feeder",
    "no_sensor": "no sensor named {name!r}",
    "quantity_twice": "{quantity} already comes from sensor {other!r}",
    "hopper_pin_used": "GPIO{pin} already used by {other}",
    "port_used": "port {url!r} already used by {other!r} (only Modbus probes share a port)",
    "slave_used": "slave {slave} on {url!r} is already sensor {other!r}",
    "temp_order": "need temp_stop_below_c <= temp_min_c < temp_max_c <= temp_stop_above_c",
    "ph_order": "ph_min must be below ph_max",
    "rate_range": "rate {rate} % of body weight is not in (0, 30]",
    "last_row_only": "only the last row may have no weight limit",
    "weights_increase": "weights must increase from row to row",
    # -- config problems found by pydantic (English: pydantic's own message) --------------
    "pydantic": "{msg}",
    "pydantic.missing": "{msg}",
    "pydantic.extra_forbidden": "{msg}",
    "pydantic.greater_than": "{msg}",
    "pydantic.greater_than_equal": "{msg}",
    "pydantic.less_than": "{msg}",
    "pydantic.less_than_equal": "{msg}",
    "pydantic.finite_number": "{msg}",
    "pydantic.int_type": "{msg}",
    "pydantic.int_parsing": "{msg}",
    "pydantic.int_from_float": "{msg}",
    "pydantic.float_type": "{msg}",
    "pydantic.float_parsing": "{msg}",
    "pydantic.bool_type": "{msg}",
    "pydantic.bool_parsing": "{msg}",
    "pydantic.string_type": "{msg}",
    "pydantic.string_too_short": "{msg}",
    "pydantic.string_too_long": "{msg}",
    "pydantic.string_pattern_mismatch": "{msg}",
    "pydantic.too_short": "{msg}",
    "pydantic.too_long": "{msg}",
    "pydantic.list_type": "{msg}",
    "pydantic.tuple_type": "{msg}",
    "pydantic.dict_type": "{msg}",
    "pydantic.model_type": "{msg}",
    "pydantic.literal_error": "{msg}",
    "pydantic.union_tag_invalid": "{msg}",
    "pydantic.union_tag_not_found": "{msg}",
    "pydantic.date_type": "{msg}",
    "pydantic.date_parsing": "{msg}",
    "pydantic.date_from_datetime_parsing": "{msg}",
    "pydantic.path_type": "{msg}",
}

ID: dict[str, str] = {
    # -- verdicts and headings ------------------------------------------------------------
    "status.OK": "OK",
    "status.WARN": "AWAS",
    "status.FAIL": "GAGAL",
    "title": "Uji mandiri {device}",
    "fit": "LAYAK JALAN",
    "unfit": "TIDAK LAYAK JALAN",
    "tally": "{verdict}: {fails} {fail}, {warns} {warn}",
    "check_ok": "{path}: OK ({kind}, unit {device}, OPD {opd})",
    "config_invalid": "{path}: konfigurasi tidak sah",
    "config_problem": "{field}: {reason}",
    "config_ok": "Konfigurasi {path}: valid.",
    "config_fail": "Konfigurasi {path}: {field}: {reason}.",
    "config_stopped": "Konfigurasi tidak sah: tidak ada yang dinyalakan.",
    "got": " (isinya {input})",
    "field.(file)": "(berkas)",
    "field.(syntax)": "(sintaks)",
    # -- selftest: outputs ----------------------------------------------------------------
    "gpio_busy": "Pin GPIO tidak bisa dipakai: {error}.",
    "gpio_busy_do": "Apakah daemon sedang jalan? Hentikan dulu: sudo systemctl stop {unit}",
    "valve": "Katup",
    "master_valve": "Katup utama",
    "pump": "Pompa",
    "motor": "Motor",
    "output": "Keluaran",
    "pulsed": "{what} {name} (GPIO{pin}): nyala {secs} dtk, lalu mati.",
    "pulsed_with": "{what} {name} (GPIO{pin}): nyala {secs} dtk dengan katup {valve} "
                   "terbuka, lalu mati.",
    "pulse_fail": "{what} {name} (GPIO{pin}) tidak mau menyala: {error}.",
    "pulse_fail_do": "Periksa catu daya dan kabel papan relai.",
    "stayed_off": "tetap mati",
    "still_on": "Keluaran masih menyala setelah uji: {names}.",
    "still_on_do": "Putuskan catu daya relai sekarang dan hubungi dukungan.",
    # -- selftest: sensors ----------------------------------------------------------------
    "flow_ok": "Meter air {name} (GPIO{pin}): {n} pulsa saat katup terbuka.",
    "flow_none": "Meter air {name} (GPIO{pin}): tidak ada pulsa saat katup terbuka.",
    "flow_none_do": "Wajar jika tidak ada tekanan air; jika ada, periksa kabel meter.",
    "rain_dry": "Sensor hujan {name} (GPIO{pin}): kering.",
    "rain_wet": "Sensor hujan {name} (GPIO{pin}): basah.",
    "rain_wet_do": "Jika tidak hujan, periksa sensor dan kabelnya.",
    "input": "Masukan {name} (GPIO{pin}): {level}.",
    "high": "tinggi",
    "low": "rendah",
    "soil_ok": "Sensor tanah {name} (zona {zone}): {value} %.",
    "soil": "Sensor tanah {name}",
    "water": "Sensor air {name}",
    "water_ok": "Sensor air {name}: {values}.",
    "hopper": "Hopper {name}",
    "hopper_ok": "Hopper {name}: terisi {pct} %.",
    "no_port": "{what}: {port} tidak ditemukan.",
    "no_port_do": "Pastikan adaptor USB terpasang (ls /dev/serial/by-id).",
    "no_answer": "{what}: tidak ada jawaban di {port}.",
    "no_answer_do": "Periksa kabel dan catu daya sensor.",
    "bad_answer": "{what}: jawaban salah di {port} ({error}).",
    "bad_answer_do": "Periksa pengaturan sensor (baud rate, kunci) dan kabelnya.",
    "sensor_fail": "{what}: {error}.",
    "modbus_none": "{what}: tidak ada jawaban dari slave Modbus {slave} di {port}.",
    "modbus_none_do": "Periksa kabel A/B, alamat slave dan catu daya sensor.",
    "ezo_do": "Periksa kabel, catu daya papan sensor, dan mode UART-nya.",
    "adc_fail": "{what}: kanal MCP3008 {channel} tidak memberi nilai yang bisa dipakai.",
    "adc_fail_do": "Periksa kabel sensor dan pastikan SPI aktif (raspi-config).",
    "echo_fail": "{what}: tidak ada gema dari sensor ultrasonik.",
    "echo_fail_do": "Periksa kabel trigger/echo (GPIO{trigger}/{echo}) dan catu 5 V.",
    "weight_fail": "{what}: tidak ada berat dari {port}.",
    "weight_fail_do": "Periksa kabel dan catu daya papan load cell.",
    "feeder_ok": "Pemberi pakan {name}: motor berputar ({n} pulsa dalam {secs} dtk).",
    "feeder_stuck": "Pemberi pakan {name}: motor nyala {secs} dtk, tidak ada pulsa putaran "
                    "(GPIO{pin}).",
    "feeder_stuck_do": "Periksa auger macet, catu daya motor, dan kabel sensor putaran.",
    "feeder_blind": "Pemberi pakan {name}: motor nyala {secs} dtk, lalu mati (tanpa sensor "
                    "putaran: periksa dengan mata).",
    # -- selftest: broker, clock, disk ----------------------------------------------------
    "broker_ok": "Broker {host}:{port}: login berhasil sebagai {user}.",
    "broker_down": "Broker {host}:{port}: tidak bisa tersambung ({error}).",
    "broker_down_do": "Periksa jaringan, alamat di [broker], dan firewall.",
    "broker_refused": "Broker {host}:{port}: login ditolak ({reason}).",
    "broker_refused_do": "Periksa file kata sandi, atau provision ulang dengan token baru.",
    "broker_silent": "Broker {host}:{port}: tidak ada jawaban login dalam {secs} dtk.",
    "broker_silent_do": "Periksa tls, ca_file dan port di [broker].",
    "broker_ca_do": "Salin sertifikat CA broker ke sana (ca_file di [broker]), atau "
                    "provision ulang dengan --ca-file.",
    "broker_secret": "Broker: file kata sandi {path} tidak bisa dibaca ({error}).",
    "broker_secret_do": "Jalankan provision lagi (smartcity-edge provision).",
    "anonymous": "(tanpa nama)",
    "clock_ok": "Jam tersinkron: {local}.",
    "clock_bad": "Jam BELUM tersinkron (menunjukkan {local}).",
    "clock_bad_do": "Jadwal menunggu sampai tersinkron. Periksa jaringan, lalu: "
                    "timedatectl status",
    "disk_ok": "Disk: {free} MB kosong; folder data {path} bisa ditulis.",
    "disk_low": "Disk: hanya {free} MB kosong untuk {path}.",
    "disk_low_do": "Kosongkan ruang, misalnya sudo journalctl --vacuum-size=100M",
    "state_missing": "Folder data {path} belum ada.",
    "state_missing_do": "Dibuat saat layanan pertama kali jalan (atau jalankan provision).",
    "state_locked": "Folder data {path} tidak bisa ditulis ({error}).",
    "state_locked_do": "Perbaiki pemiliknya: sudo chown -R smartcity: {path}",
    # -- what the system and the broker say -----------------------------------------------
    "errno.ENOENT": "berkas atau folder tidak ada",
    "errno.EACCES": "izin ditolak",
    "errno.EPERM": "tindakan tidak diizinkan",
    "errno.EISDIR": "ini sebuah folder",
    "errno.EBUSY": "perangkat sedang dipakai",
    "errno.ECONNREFUSED": "sambungan ditolak",
    "errno.ETIMEDOUT": "waktu sambungan habis",
    "errno.EHOSTUNREACH": "tidak ada rute ke host",
    "errno.ENETUNREACH": "jaringan tidak terjangkau",
    "errno.EROFS": "sistem berkas hanya-baca",
    "errno.ENOSPC": "ruang disk habis",
    "errno.gaierror": "nama host tidak ditemukan",
    "mqtt.Not authorized": "tidak diizinkan",
    "mqtt.Bad user name or password": "nama pengguna atau kata sandi salah",
    "mqtt.Client identifier not valid": "client id tidak sah",
    "mqtt.Server unavailable": "server tidak tersedia",
    # -- config problems: the file --------------------------------------------------------
    "file_missing": "berkas tidak ada",
    "file_denied": "izin ditolak (perlu sudo?)",
    "file_is_dir": "ini sebuah folder, bukan berkas",
    "file_unreadable": "berkas tidak bisa dibaca ({error})",
    "not_utf8": "bukan teks UTF-8 (byte ke-{start})",
    "toml_syntax_at": "sintaks TOML salah di baris {line}, kolom {column}",
    "toml_syntax": "sintaks TOML salah di akhir berkas",
    "unknown_kind": "harus salah satu dari {choices}, bukan {value!r}",
    "ca_file_missing": "berkas tidak ditemukan: {path}",
    "ca_file_not_pem": "bukan sertifikat CA berformat PEM: {path}",
    "ca_file_unusable": "berkas tidak bisa dipakai: {path}",
    # -- config problems: any unit --------------------------------------------------------
    "name_used": "nama {name!r} sudah dipakai oleh {other}",
    "pin_used": "GPIO{pin} sudah dipakai oleh {other}",
    "no_output": "tidak ada keluaran (outputs) bernama {name!r}",
    "no_input": "tidak ada masukan (inputs) bernama {name!r}",
    "input_kind": "masukan {name!r} harus kind = {wanted!r}",
    "unknown_time_zone": "zona waktu {zone!r} tidak dikenal",
    # -- config problems: irrigation ------------------------------------------------------
    "start_time_bad": 'waktu mulai {value!r} tidak sah: tulis "HH:MM", atau sunrise/sunset '
                      'dengan selisih "+HH:MM"/"-HH:MM" paling lama 6:00',
    "month_day_bad": '{value!r} bukan tanggal "MM-DD"',
    "start_times_repeat": "ada waktu mulai yang sama",
    "one_day_rule": "pakai salah satu saja dari weekdays, interval_days, odd_even "
                    "(tertulis {given})",
    "season_needs_both": "musim perlu active_from dan active_to",
    "weekdays_empty": "sebutkan paling sedikit satu hari",
    "moisture_band": "harus di bawah skip_above_pct (pita histeresis)",
    "program_twice": "program {name!r} ditulis dua kali",
    "rules_twice": "aturan untuk {zone!r} ditulis dua kali",
    "no_zone": "tidak ada zona bernama {name!r}",
    "zone_no_probe": "zona {zone!r} tidak punya soil_sensor di konfigurasi lokal",
    "no_flow_window": "paling sedikit window_s ({window_s} dtk)",
    "wet_is_dry": "harus berbeda dari dry_raw",
    "zone_twice": "zona {name!r} ditulis dua kali",
    "valve_shared": "keluaran {valve!r} sudah membuka zona {zone!r}",
    "master_is_valve": "{name!r} adalah katup zona",
    "flow_below_no_flow": "{flow:g} L/menit tidak di atas flow.no_flow_below_lpm "
                          "({limit:g}): setiap penyiraman akan memicu no_flow",
    "sensor_twice": "sensor {name!r} ditulis dua kali",
    "adc_channel_used": "kanal {channel} MCP3008 CE{device} sudah dipakai {other!r}",
    "spi_pin": "GPIO{pin} adalah {spi}, dibutuhkan sensor tanah MCP3008",
    "no_soil_sensor": "tidak ada [[soil.sensors]] bernama {name!r}",
    "soil_sensor_shared": "sensor {name!r} sudah dibaca untuk zona {zone!r}",
    # -- config problems: fish feeder -----------------------------------------------------
    "full_not_below_empty": "harus lebih kecil dari empty_distance_m",
    "echo_is_trigger": "harus berbeda dari trigger_pin",
    "empty_not_below_low": "harus di bawah low_pct",
    "daily_below_dose": "paling sedikit sebesar max_dose_g",
    "needs_rotation_input": "confirm_by = 'pulses' membutuhkan rotation_input",
    "needs_loadcell": "confirm_by = 'weight' membutuhkan hopper loadcell",
    "time_not_hhmm": "waktu {value!r} bukan HH:MM (24 jam)",
    "times_order": "waktu harus berurutan, masing-masing sekali",
    "doses_or_biomass": "isi doses_g atau fish_count/avg_weight_g, jangan keduanya",
    "dose_per_time": "perlu satu dosis untuk setiap waktu ({n})",
    "needs_doses": "isi doses_g, atau fish_count dan avg_weight_g",
    "name_twice": "nama {name!r} dipakai dua kali",
    "motor_shared": "motor {motor!r} sudah menggerakkan pemberi pakan {feeder!r}",
    "no_pond": "tidak ada kolam bernama {name!r}",
    "dose_over_max_on": "{dose:g} g dengan {rate:g} g/dtk butuh {need:.0f} dtk, lebih dari "
                        "max_on_s keluaran {motor!r} = {max_on:g}",
    "confirm_over_max_on": "harus di bawah max_on_s motor ({max_on:g})",
    "pond_no_feeder": "kolam {name!r} tidak punya pemberi pakan",
    "no_sensor": "tidak ada sensor bernama {name!r}",
    "quantity_twice": "{quantity} sudah diambil dari sensor {other!r}",
    "hopper_pin_used": "GPIO{pin} sudah dipakai oleh {name!r}",
    "port_used": "port {url!r} sudah dipakai {other!r} (hanya sensor Modbus yang boleh "
                 "berbagi port)",
    "slave_used": "slave {slave} di {url!r} sudah dipakai sensor {other!r}",
    "temp_order": "harus temp_stop_below_c <= temp_min_c < temp_max_c <= temp_stop_above_c",
    "ph_order": "ph_min harus di bawah ph_max",
    "rate_range": "laju {rate} % bobot tubuh tidak dalam (0, 30]",
    "last_row_only": "hanya baris terakhir yang boleh tanpa batas bobot",
    "weights_increase": "bobot harus naik dari baris ke baris",
    # -- config problems found by pydantic ------------------------------------------------
    "pydantic": "nilai tidak sah ({type})",
    "pydantic.missing": "wajib diisi",
    "pydantic.extra_forbidden": "kunci tidak dikenal (salah ketik?)",
    "pydantic.greater_than": "harus lebih dari {gt}",
    "pydantic.greater_than_equal": "paling sedikit {ge}",
    "pydantic.less_than": "harus kurang dari {lt}",
    "pydantic.less_than_equal": "paling banyak {le}",
    "pydantic.finite_number": "harus bilangan terhingga",
    "pydantic.int_type": "harus bilangan bulat",
    "pydantic.int_parsing": "harus bilangan bulat",
    "pydantic.int_from_float": "harus bilangan bulat (tanpa pecahan)",
    "pydantic.float_type": "harus angka",
    "pydantic.float_parsing": "harus angka",
    "pydantic.bool_type": "harus true atau false",
    "pydantic.bool_parsing": "harus true atau false",
    "pydantic.string_type": "harus teks dalam tanda kutip",
    "pydantic.string_too_short": "paling sedikit {min_length} karakter",
    "pydantic.string_too_long": "paling banyak {max_length} karakter",
    "pydantic.string_pattern_mismatch": "tidak cocok dengan pola {pattern}",
    "pydantic.too_short": "paling sedikit {min_length} butir",
    "pydantic.too_long": "paling banyak {max_length} butir",
    "pydantic.list_type": "harus daftar [ ... ]",
    "pydantic.tuple_type": "harus daftar [ ... ]",
    "pydantic.dict_type": "harus tabel",
    "pydantic.model_type": "harus tabel",
    "pydantic.literal_error": "harus salah satu dari: {expected}",
    "pydantic.union_tag_invalid": "{discriminator} = {tag} tidak dikenal; pilihan: "
                                  "{expected_tags}",
    "pydantic.union_tag_not_found": "{discriminator} wajib diisi",
    "pydantic.date_type": "harus tanggal YYYY-MM-DD",
    "pydantic.date_parsing": "harus tanggal YYYY-MM-DD",
    "pydantic.date_from_datetime_parsing": "harus tanggal YYYY-MM-DD",
    "pydantic.path_type": "harus path berkas",
}

TABLES = {"en": EN, "id": ID}


def render(table: dict[str, str], code: str, params: dict) -> str:
    """The message ``code`` from ``table``; an ``input`` parameter (what the file said,
    already shown as text) is added as "(got ...)"."""
    text = table[code].format(**params)
    if params.get("input") is not None:
        text += table["got"].format(input=params["input"])
    return text


class Words:
    """``words(code, **params)``: the message in the chosen language (``id`` or ``en``)."""

    def __init__(self, lang: str = DEFAULT_LANG):
        if lang not in TABLES:
            raise ValueError(f"unknown language {lang!r} ({', '.join(LANGS)})")
        self.lang = lang
        self.table = TABLES[lang]

    def __call__(self, code: str, **params) -> str:
        return render(self.table, code, params)

    def reason(self, reason) -> str:
        """A config problem's reason in this language (a plain string as it is)."""
        code = getattr(reason, "code", None)
        if code is None:
            return str(reason)
        return render(self.table, code, reason.params)

    def field(self, field: str) -> str:
        """A config field's dotted path; "(file)" and "(syntax)" in words."""
        return self.table.get(f"field.{field}", field)

    def problems(self, exc) -> list[str]:
        """``field: reason`` of each problem of a ``ConfigError``."""
        return [self("config_problem", field=self.field(f), reason=self.reason(r))
                for f, r in exc.problems]

    def os_error(self, exc: BaseException) -> str:
        """What an ``OSError`` means, from its errno where the table has it."""
        if isinstance(exc, socket.gaierror):
            name = "gaierror"  # the host name does not resolve
        else:
            name = errno.errorcode.get(getattr(exc, "errno", None) or -1)
        if name is not None and f"errno.{name}" in self.table:
            return self.table[f"errno.{name}"]
        return getattr(exc, "strerror", None) or str(exc)

    def mqtt_reason(self, reason: str) -> str:
        """An MQTT CONNACK reason ("Not authorized", ...) in this language."""
        return self.table.get(f"mqtt.{reason}", reason)
