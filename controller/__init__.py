"""The central controller: MQTT ingest into SQLite, and the HTTP API (FastAPI).

Layout: ``settings`` (TOML + environment), ``store`` (every SQL statement), ``seqs``
(which seqs are acknowledged), ``ingest`` (the MQTT subscriber and writer thread),
``publisher`` (commands and desired configs out), ``auth`` (tokens and roles),
``broker_files`` (Mosquitto password and ACL files), ``notify/`` (alarm notifications
through an outbox of their own, its SQL in ``notify/outbox``), ``metrics``, ``api/``
(routes) and ``cli`` (``smartcity-controller``).
"""
