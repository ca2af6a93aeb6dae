"""The MQTT client set-up shared by units and controller, and plain words for failures.

:func:`make_client` builds the paho-mqtt 2.x client the one way both sides need it
(``CallbackAPIVersion.VERSION2``; MQTT 5, or 3.1.1 for brokers without it; a persistent
session; TLS with an optional CA file; a login; explicit reconnect delays)::

    client = make_client(broker, client_id="unit-dlh-taman-01", password=secret,
                         reconnect_s=(1, 60))

``broker`` is anything with ``host``, ``port``, ``tls``, ``ca_file``, ``username`` and
``mqtt_version`` (a unit's ``[broker]``, the controller's ``[mqtt]``).

Failed attempts to reach the broker (TCP connect or TLS handshake): paho calls ``on_connect_fail`` while it handles the exception of the failed
attempt, so the callback passes ``sys.exc_info()[1]`` to ``connect_failure``, which names
the cause and the config field to look at (and ``ca_file_problem`` checks a CA file
before any attempt)::

    reason, is_tls = connect_failure(sys.exc_info()[1], config.broker)
    reason, is_tls = connect_failure(exc, settings.mqtt, section="mqtt", machine="controller")
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

__all__ = ["ca_file_problem", "connect_failure", "make_client"]

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


def make_client(broker, *, client_id: str, password: str | None = None, login: bool = True,
                reconnect_s: tuple[float, float] | None = None, **options) -> mqtt.Client:
    """A paho client for ``broker``, not yet connected (see the module docstring).

    With MQTT 3.1.1 the session is persistent (``clean_session=False``); with MQTT 5 the
    caller asks for it at connect (``clean_start=False`` and a session expiry). Raises
    ``OSError`` (``ssl.SSLError``) when the CA file cannot be loaded. ``options`` go to
    ``paho.mqtt.client.Client`` (``manual_ack``, ``reconnect_on_failure``). ``login``
    False: no username is sent."""
    v5 = str(broker.mqtt_version) == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else False, **options)
    if reconnect_s is not None:
        client.reconnect_delay_set(*reconnect_s)
    if broker.tls:
        client.tls_set(ca_certs=str(broker.ca_file) if broker.ca_file else None)
    if login and broker.username:
        client.username_pw_set(broker.username, password)
    return client
