"""Master-key rotation of device secrets at rest, write -> restart -> verify:
secrets sealed under an old key are re-sealed under the new active key at
start, after which the old key can be removed and devices still connect."""

import base64
import hashlib
import hmac
import os
import shutil
import tempfile
import time
import unittest

from harness import V311, PahoClient, Server, ServerTestCase, wait_until
from device_signing import sign


def signed_get(server, token, path):
    """GET with a CL-HMAC-SHA256 request signature (docs/api.md) instead of the bearer."""
    key_id, secret = token.split(".", 1)
    ts = str(int(time.time()))
    signing_key = hmac.new(secret.encode(), b"counterlink-request-signing", hashlib.sha256).digest()
    canonical = "\n".join(["CL-HMAC-SHA256", ts, "GET", path, hashlib.sha256(b"").hexdigest()])
    sig = hmac.new(signing_key, canonical.encode(), hashlib.sha256).hexdigest()
    return server.api("").get(path, headers={
        "Authorization": f"CL-HMAC-SHA256 Credential={key_id}, Timestamp={ts}, Signature={sig}"})


def key_settings(*keys, active):
    settings = {"security.active_key": active}
    for i, (key_id, key) in enumerate(keys):
        settings[f"security.master_keys.{i}.id"] = key_id
        settings[f"security.master_keys.{i}.key"] = key
    return settings


class KeyRotationTest(ServerTestCase):

    def test_device_secrets_move_to_the_new_key_and_the_old_key_can_be_removed(self):
        data = tempfile.mkdtemp(prefix="cl-rotation-")
        self.addCleanup(shutil.rmtree, data, True)
        old = ("k2025", base64.b64encode(os.urandom(32)).decode())
        new = ("k2026", base64.b64encode(os.urandom(32)).decode())

        def start(settings):
            return Server(platform=True, allow_anonymous=False, data_dir=data,
                          settings=settings).start()

        server = start(key_settings(old, active="k2025"))
        try:
            admin = server.api()
            tenant = admin.post("/v1/tenants", {"name": "Rotating"}).json
            product = admin.post("/v1/products", {"tenant_id": tenant["id"], "name": "S",
                                                  "type": "speaker"}).json
            created = admin.post("/v1/devices", {"tenant_id": tenant["id"],
                                                 "product_id": product["id"],
                                                 "serial": "ROT-1"}).json
            tenant_token = admin.post("/v1/api-keys", {"name": "signer",
                                                       "tenant_id": tenant["id"]}).json["token"]
            self.assertEqual(signed_get(server, tenant_token, "/v1/devices").status, 200)
        finally:
            server.stop()
        device_id, secret = created["device"]["id"], created["secret"]

        # Both keys, the new one active: the start-up pass re-seals.
        server = start(key_settings(old, new, active="k2026"))
        try:
            # The device secret, the tenant key's and the first operator key's
            # signing keys.
            server.wait_log(r"keys\.reseal_done active_key=k2026 resealed=3 failed=0")
        finally:
            server.stop()

        # Only the new key: the device still authenticates with its secret.
        server = start(key_settings(new, active="k2026"))
        try:
            _, user, pw = sign(device_id, secret, int(time.time() * 1000))
            with PahoClient(server, device_id, protocol=V311, username=user,
                            password=pw) as device:
                self.assertEqual(device.reason_code, 0)
            # ... and the tenant key still signs requests.
            answer = signed_get(server, tenant_token, "/v1/devices")
            self.assertEqual(answer.status, 200, answer)
            self.assertEqual([d["id"] for d in answer.json["devices"]], [device_id])
        finally:
            server.stop()

    def test_without_the_key_that_sealed_a_secret_the_device_is_refused_not_crashed(self):
        data = tempfile.mkdtemp(prefix="cl-rotation-")
        self.addCleanup(shutil.rmtree, data, True)
        first = ("k1", base64.b64encode(os.urandom(32)).decode())
        other = ("k2", base64.b64encode(os.urandom(32)).decode())
        server = Server(platform=True, allow_anonymous=False, data_dir=data,
                        settings=key_settings(first, active="k1")).start()
        try:
            admin = server.api()
            tenant = admin.post("/v1/tenants", {"name": "T"}).json
            product = admin.post("/v1/products", {"tenant_id": tenant["id"], "name": "S",
                                                  "type": "speaker"}).json
            created = admin.post("/v1/devices", {"tenant_id": tenant["id"],
                                                 "product_id": product["id"],
                                                 "serial": "LOST-1"}).json
        finally:
            server.stop()
        # The operator replaced the key instead of adding one.
        server = Server(platform=True, allow_anonymous=False, data_dir=data,
                        settings=key_settings(other, active="k2")).start()
        try:
            _, user, pw = sign(created["device"]["id"], created["secret"],
                               int(time.time() * 1000))
            c = PahoClient(server, created["device"]["id"], protocol=V311, username=user,
                           password=pw, expect_success=False)
            try:
                self.assertEqual(c.reason_code, 3)  # 3.1.1: server unavailable
            finally:
                c.close()
            self.assertTrue(server.alive)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
