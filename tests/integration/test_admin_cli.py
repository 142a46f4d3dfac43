"""`counterlink admin`, the operator CLI, against a real server: it only talks
to the REST API, so what it creates is what the API then shows."""

import json
import os
import subprocess
import time
import unittest

from harness import HOST, V5, PahoClient, ServerTestCase, binary
from device_signing import sign


class AdminCliTest(ServerTestCase):

    def admin(self, server, *args, token=None, check=True):
        proc = subprocess.run(
            [binary(), "admin", "--api", f"http://{HOST}:{server.http_port}", "--token",
             token or server.admin_token, *args],
            capture_output=True, text=True, timeout=120)
        if check:
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        return proc

    def admin_json(self, server, *args):
        return json.loads(self.admin(server, "--json", *args).stdout)

    def test_operator_sets_up_a_tenant_product_and_device_that_then_connects(self):
        server = self.start_server(platform=True, allow_anonymous=False)
        tenant = self.admin_json(server, "tenants", "create", "--name", "Acme Pay", "--kind",
                                 "aggregator", "--max-devices", "10")
        self.assertTrue(tenant["id"].startswith("tn_"))
        product = self.admin_json(server, "products", "create", "--tenant", tenant["id"],
                                  "--name", "P58", "--type", "printer", "--paper-width", "58")
        self.assertEqual(product["type"], "printer")
        self.assertEqual(product["capabilities"]["paper_width_mm"], 58)
        created = self.admin_json(server, "devices", "create", "--tenant", tenant["id"],
                                  "--product", product["id"], "--serial", "PR-0001",
                                  "--label", "shop=north")
        device_id, secret = created["device"]["id"], created["secret"]
        self.assertEqual(created["device"]["labels"], {"shop": "north"})

        # The table lists it; the API shows the same device.
        table = self.admin(server, "devices", "list", "--tenant", tenant["id"]).stdout
        self.assertIn(device_id, table)
        self.assertIn("PR-0001", table)
        self.assertEqual(server.api().get(f"/v1/devices/{device_id}").json["serial"], "PR-0001")

        # Connection parameters name this server's MQTT port; the device
        # connects with them and its secret.
        info = self.admin(server, "devices", "connection-info", device_id).stdout
        self.assertIn(f"client id:  {device_id}", info)
        self.assertIn(f":{server.port}", info)
        self.assertIn(f"devices/{device_id}/", info)
        _, user, pw = sign(device_id, secret, int(time.time() * 1000))
        with PahoClient(server, device_id, protocol=V5, username=user, password=pw) as c:
            self.assertEqual(c.reason_code, 0)

    def test_tenant_key_created_by_the_cli_is_shown_once_and_can_be_revoked(self):
        server = self.start_server(platform=True, allow_anonymous=False)
        tenant = self.admin_json(server, "tenants", "create", "--name", "Shop SaaS")
        out = self.admin(server, "keys", "create", "--tenant", tenant["id"], "--name",
                         "pos-backend").stdout
        token = [l.split()[-1] for l in out.splitlines() if l.startswith("token:")][0]
        key_id = token.split(".")[0]
        self.assertIn("shown only now", out)
        listed = self.admin(server, "keys", "list", "--tenant", tenant["id"]).stdout
        self.assertIn(key_id, listed)
        self.assertNotIn(token.split(".", 1)[1], listed)
        # The key works for its tenant, then stops working once revoked.
        self.assertEqual(server.api(token).get("/v1/devices").status, 200)
        self.admin(server, "keys", "revoke", key_id)
        deadline = time.monotonic() + 15  # key lookups are cached for a few seconds
        while server.api(token).get("/v1/devices").status != 401:
            self.assertLess(time.monotonic(), deadline, "revoked key still accepted")
            time.sleep(0.5)

    def test_errors_are_reported_in_words_with_a_nonzero_exit(self):
        server = self.start_server(platform=True, allow_anonymous=False)
        proc = self.admin(server, "devices", "get", "dv_00000000000000000000000000", check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("device_not_found", proc.stderr)
        proc = self.admin(server, "tenants", "list", token="ak_00000000000000000000000000.sk_x",
                          check=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("HTTP 401", proc.stderr)
        proc = subprocess.run([binary(), "admin", "--api", "http://127.0.0.1:1", "--token", "t",
                               "tenants", "list"], capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("cannot reach the API", proc.stderr)

    def test_generated_token_is_accepted_as_the_bootstrap_operator_token(self):
        token = subprocess.run([binary(), "admin", "generate-token"], capture_output=True,
                               text=True, check=True).stdout.strip()
        server = self.start_server(platform=True,
                                   settings={"security.bootstrap_admin_token": token})
        self.assertEqual(server.api(token).get("/v1/tenants").status, 200)


if __name__ == "__main__":
    unittest.main()
