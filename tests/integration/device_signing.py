"""The signed MQTT credential of docs/device-protocol.md ("Connecting"), in
Python with the standard library only, for the integration tests and for
anyone checking firmware by hand:

    >>> sign("dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC", "Xq7rT2mPz9LkW4vB8nC3sD6fG1hJ5yKa", 1718000000000)
    ('dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC', 'dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC;1718000000000;hmacsha256;v1', 'b2ed92fac716e645d350a02b2342c85498dc3639efe1e7deb5ca2ac04833ff0e')

Run this file to check the worked example: python3 device_signing.py
"""

import hashlib
import hmac
import time

SIGN_METHOD = "hmacsha256"
VERSION = "v1"


def canonical_string(client_id, device_id, ts_text):
    """"clientId" + client id + "deviceId" + device id + "timestamp" + ts."""
    return "clientId" + client_id + "deviceId" + device_id + "timestamp" + ts_text


def sign(device_id, secret, ts_ms=None):
    """Returns (client_id, username, password) for a CONNECT at ts_ms
    (milliseconds since the epoch; default: now). Use a fresh ts_ms for every
    connect: the gateway accepts a credential once."""
    if ts_ms is None:
        ts_ms = int(time.time() * 1000)
    ts_text = str(int(ts_ms))
    client_id = device_id
    username = ";".join((device_id, ts_text, SIGN_METHOD, VERSION))
    password = hmac.new(secret.encode("ascii"),
                        canonical_string(client_id, device_id, ts_text).encode("ascii"),
                        hashlib.sha256).hexdigest()
    return client_id, username, password


if __name__ == "__main__":
    import doctest
    failures, _ = doctest.testmod()
    raise SystemExit(1 if failures else 0)
