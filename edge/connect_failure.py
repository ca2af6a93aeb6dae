"""Plain words for a failed attempt to reach the MQTT broker (TCP connect or TLS handshake).

Shared by the unit's link (config section ``[broker]``) and the controller's ingest
(``[mqtt]``). paho calls ``on_connect_fail`` while it handles the exception of the failed
attempt, so the callback passes ``sys.exc_info()[1]`` to ``connect_failure``, which names
the cause and the config field to look at (and ``ca_file_problem`` checks a CA file
before any attempt)::

    reason, is_tls = connect_failure(sys.exc_info()[1], config.broker)
    reason, is_tls = connect_failure(exc, settings.mqtt, section="mqtt", machine="controller")
"""

from __future__ import annotations

import ssl

# OpenSSL's verify codes (X509_V_ERR_*) that point at something else than the CA file.
_NAME_MISMATCH = (62, 64)  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_OUT_OF_DATE = (9, 10)  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
CA_FILE_NOT_FOUND = "file not found"
CA_FILE_NOT_PEM = "not a PEM CA certificate"


def ca_file_problem(path) -> str | None:
    """Why ``path`` cannot serve as the broker's CA certificate, in plain words (None: it
    can). Loads it the way the MQTT client does, so "not a certificate" is caught too."""
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        return CA_FILE_NOT_FOUND
    except ssl.SSLError as exc:
        return f"{CA_FILE_NOT_PEM} ({exc.reason or exc})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def connect_failure(exc: BaseException | None, broker, *, section: str = "broker",
                    machine: str = "unit") -> tuple[str, bool]:
    """Plain words for a failed connection attempt, and whether TLS was the problem.

    ``broker`` has ``host``, ``port``, ``tls`` and ``ca_file`` (a unit's ``[broker]``, the
    controller's ``[mqtt]``); ``section`` is that table's name in the words, ``machine``
    whose clock to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason
        if exc.verify_code in _NAME_MISMATCH:
            hint = (f"{section}.host ({broker.host}) is not a name the broker's certificate "
                    f"was made for")
        elif exc.verify_code in _OUT_OF_DATE:
            hint = f"check the {machine}'s clock and the dates of the broker's certificate"
        elif broker.ca_file:
            hint = (f"{section}.ca_file ({broker.ca_file}) is not the CA that signed the "
                    f"broker's certificate")
        else:
            hint = (f"no {section}.ca_file is set and the system's CA certificates do not "
                    f"include the one that signed the broker's certificate")
        return f"TLS: the broker's certificate was refused ({why}): {hint}", True
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake failed ({exc.reason or exc}): is port {broker.port} the "
                f"broker's TLS listener?"), True
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc) or type(exc).__name__
        if broker.tls and isinstance(exc, ConnectionResetError):
            # What a plain MQTT listener does with a TLS hello: it hangs up.
            text += f" during the TLS handshake: is port {broker.port} a TLS listener?"
        return text, False
    return "connection failed (no reason given)", False
