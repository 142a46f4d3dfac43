"""The platform core end to end: the REST API creates tenants, keys, products
and devices; devices connect with their signed credential (mosquitto_sub and
Paho); identity, topic namespace, tenant isolation, presence and bulk import.

Every test runs twice: on the embedded SQLite store and on a real PostgreSQL
that the suite starts itself (scripts/pg-test-server).
"""

import os
import subprocess
import tempfile
import time
import unittest
import uuid

from harness import (HOST, QUIET, TIMEOUT, V311, V5, MosquittoSub, PahoClient, PostgresServer,
                     ServerTestCase, binary, mosquitto_pub, wait_until)
from device_signing import sign

IMPORT_ROWS = int(os.environ.get("COUNTERLINK_IMPORT_ROWS", "100000"))


def now_ms():
    return int(time.time() * 1000)


class PlatformTests:
    """Mixin: the tests; subclasses choose the store."""

    STORE = "sqlite"
    pg = None

    # -- set-up helpers ------------------------------------------------------------

    def start_platform(self, **kwargs):
        url = ""
        if self.STORE == "postgres":
            url = self.pg.database("t_" + uuid.uuid4().hex[:12])
        return self.start_server(platform=True, allow_anonymous=False, store_url=url, **kwargs)

    def ok(self, answer, status=None):
        if status is None:
            self.assertTrue(200 <= answer.status < 300, answer)
        else:
            self.assertEqual(answer.status, status, answer)
        return answer.json

    def tenant(self, server, name="Acme Pay"):
        """A tenant with a tenant API key and one speaker product; returns a dict."""
        admin = server.api()
        tenant = self.ok(admin.post("/v1/tenants", {"name": name, "kind": "aggregator"}))
        key = self.ok(admin.post("/v1/api-keys", {"name": "backend", "tenant_id": tenant["id"]}))
        api = server.api(key["token"])
        product = self.ok(api.post("/v1/products", {"name": "S1 speaker", "type": "speaker",
                                                    "capabilities": {"locales": ["zh-CN", "en"]}}))
        return {"id": tenant["id"], "api": api, "product": product["id"]}

    def device(self, tenant, serial=None):
        serial = serial or "SN" + uuid.uuid4().hex[:10].upper()
        created = self.ok(tenant["api"].post("/v1/devices", {"product_id": tenant["product"],
                                                            "serial": serial}))
        return created["device"]["id"], created["secret"]

    # -- device identity -----------------------------------------------------------

    def test_device_created_over_rest_connects_with_its_signed_credential(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        device_id, secret = self.device(tenant)
        # Get never shows the secret again.
        shown = self.ok(tenant["api"].get(f"/v1/devices/{device_id}"))
        self.assertNotIn(secret, str(shown))
        # mosquitto_sub (3.1.1) as the device: CONNACK 0, SUBACK grants QoS 1.
        client_id, username, password = sign(device_id, secret, now_ms())
        sub = MosquittoSub(server, "-i", client_id, "-u", username, "-P", password, "-t",
                           f"devices/{device_id}/commands", "-q", "1", version=V311)
        try:
            self.assertIn("Subscribed (mid: 1): 1", sub.output)
        finally:
            sub.stop()
        # Paho (5.0) as a second device of the tenant.
        other_id, other_secret = self.device(tenant)
        _, user, pw = sign(other_id, other_secret, now_ms())
        with PahoClient(server, other_id, protocol=V5, username=user, password=pw) as paho:
            self.assertEqual(paho.reason_code, 0)
            self.assertEqual(paho.subscribe(f"devices/{other_id}/commands", 1), [1])

    def test_paho_device_publishes_and_receives_on_its_own_topics(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        device_id, secret = self.device(tenant)
        _, username, password = sign(device_id, secret, now_ms())
        with PahoClient(server, device_id, protocol=V5, username=username,
                        password=password) as device:
            self.assertEqual(device.subscribe(f"devices/{device_id}/#", 1), [1])
            device.publish(f"devices/{device_id}/events", b'{"battery":80}', qos=1)
            self.assertEqual([m.payload for m in device.wait_messages(1)], [b'{"battery":80}'])

    def test_wrong_expired_and_replayed_signatures_are_refused(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        device_id, secret = self.device(tenant)
        cases = {
            "wrong secret": sign(device_id, "x" * len(secret), now_ms()),
            "expired": sign(device_id, secret, now_ms() - 10 * 60 * 1000),
            "from the future": sign(device_id, secret, now_ms() + 10 * 60 * 1000),
        }
        for what, (client_id, username, password) in cases.items():
            with self.subTest(what):
                c = PahoClient(server, client_id, protocol=V5, username=username,
                               password=password, expect_success=False)
                try:
                    self.assertEqual(c.reason_code, 0x86, what)  # bad user name or password
                finally:
                    c.close()
        # Replay: a credential that was accepted once is refused the second time.
        client_id, username, password = sign(device_id, secret, now_ms())
        with PahoClient(server, client_id, protocol=V311, username=username,
                        password=password) as first:
            self.assertEqual(first.reason_code, 0)
        replay = PahoClient(server, client_id, protocol=V311, username=username,
                            password=password, expect_success=False)
        try:
            self.assertEqual(replay.reason_code, 4)  # 3.1.1: bad user name or password
        finally:
            replay.close()
        self.assertGreaterEqual(
            server.metric("counterlink_device_auth_failures_total"), 4)

    def test_device_cannot_publish_or_subscribe_to_another_devices_topics(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        a_id, a_secret = self.device(tenant)
        b_id, b_secret = self.device(tenant)
        _, a_user, a_pw = sign(a_id, a_secret, now_ms())
        _, b_user, b_pw = sign(b_id, b_secret, now_ms())
        with PahoClient(server, a_id, protocol=V5, username=a_user, password=a_pw) as a, \
                PahoClient(server, b_id, protocol=V5, username=b_user, password=b_pw) as b:
            self.assertEqual(b.subscribe(f"devices/{b_id}/#", 1), [1])
            self.assertEqual(a.subscribe(f"devices/{b_id}/#", 1), [0x87])
            self.assertEqual(a.subscribe("devices/+/commands", 1), [0x87])
            self.assertEqual(a.subscribe("#", 1), [0x87])
            # mosquitto_pub as device A onto B's topic: PUBACK 0x87 (5.0).
            _, user, pw = sign(a_id, a_secret, now_ms() + 5)
            a.close()
            proc = mosquitto_pub(server, "-d", "-i", a_id, "-u", user, "-P", pw, "-t",
                                 f"devices/{b_id}/commands", "-m", "spoof", "-q", "1",
                                 version=V5, check=False)
            self.assertIn("RC:135", proc.stdout + proc.stderr)
            b.assert_no_message()
        self.assertGreaterEqual(server.metric("counterlink_device_acl_denied_total"), 3)

    def test_disabled_device_is_refused_and_its_live_session_closed(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        device_id, secret = self.device(tenant)
        _, user, pw = sign(device_id, secret, now_ms())
        with PahoClient(server, device_id, protocol=V5, username=user, password=pw) as live:
            self.ok(tenant["api"].post(f"/v1/devices/{device_id}:disable", {}))
            live.wait_disconnected()
        _, user, pw = sign(device_id, secret, now_ms() + 1)
        refused = PahoClient(server, device_id, protocol=V5, username=user, password=pw,
                             expect_success=False)
        try:
            self.assertNotEqual(refused.reason_code, 0)
        finally:
            refused.close()
        self.ok(tenant["api"].post(f"/v1/devices/{device_id}:enable", {}))
        _, user, pw = sign(device_id, secret, now_ms() + 2)
        with PahoClient(server, device_id, protocol=V5, username=user, password=pw) as again:
            self.assertEqual(again.reason_code, 0)

    def test_rotated_secret_replaces_the_old_one(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        device_id, old = self.device(tenant)
        new = self.ok(tenant["api"].post(f"/v1/devices/{device_id}:rotateSecret", {}))["secret"]
        self.assertNotEqual(new, old)
        _, user, pw = sign(device_id, old, now_ms())
        c = PahoClient(server, device_id, protocol=V5, username=user, password=pw,
                       expect_success=False)
        try:
            self.assertEqual(c.reason_code, 0x86)
        finally:
            c.close()
        _, user, pw = sign(device_id, new, now_ms() + 1)
        with PahoClient(server, device_id, protocol=V5, username=user, password=pw) as ok:
            self.assertEqual(ok.reason_code, 0)

    def test_presence_follows_the_connection_with_history(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        device_id, secret = self.device(tenant)
        api = tenant["api"]
        self.assertFalse(self.ok(api.get(f"/v1/devices/{device_id}/presence")).get("online"))
        _, user, pw = sign(device_id, secret, now_ms())
        with PahoClient(server, device_id, protocol=V311, username=user, password=pw):
            wait_until(lambda: self.ok(api.get(f"/v1/devices/{device_id}/presence"))
                       .get("online"), message="presence online")
            presence = self.ok(api.get(f"/v1/devices/{device_id}/presence"))
            self.assertEqual(presence.get("protocol_version"), "3.1.1")
            self.assertTrue(presence.get("remote_address", "").startswith("127.0.0.1"))
        wait_until(lambda: not self.ok(api.get(f"/v1/devices/{device_id}/presence"))
                   .get("online"), message="presence offline")
        history = self.ok(api.get(f"/v1/devices/{device_id}/presence/history"))
        events = history.get("events", [])
        self.assertGreaterEqual(len(events), 2, history)
        self.assertEqual([bool(e.get("online")) for e in events[:2]], [False, True])  # newest first
        listed = self.ok(api.get("/v1/devices?online=false"))
        self.assertIn(device_id, [d["id"] for d in listed["devices"]])

    # -- tenant isolation and API behaviour ------------------------------------------

    def test_tenant_key_cannot_see_another_tenants_devices(self):
        server = self.start_platform()
        a = self.tenant(server, "Tenant A")
        b = self.tenant(server, "Tenant B")
        device_id, _ = self.device(a)
        for method, path, body in [
                ("GET", f"/v1/devices/{device_id}", None),
                ("PATCH", f"/v1/devices/{device_id}", {"labels": {"x": "y"}}),
                ("POST", f"/v1/devices/{device_id}:disable", {}),
                ("POST", f"/v1/devices/{device_id}:rotateSecret", {}),
                ("GET", f"/v1/devices/{device_id}/presence", None),
                ("DELETE", f"/v1/devices/{device_id}", None)]:
            with self.subTest(f"{method} {path}"):
                answer = b["api"].request(method, path, body=body)
                self.assertEqual(answer.status, 404, answer)
                self.assertEqual(answer.problem_code, "device_not_found")
        listed = self.ok(b["api"].get("/v1/devices"))
        self.assertEqual(listed.get("devices", []), [])
        # Tenant keys cannot manage tenants.
        self.assertEqual(b["api"].post("/v1/tenants", {"name": "x"}).status, 403)
        # ... and A's device is untouched.
        self.assertFalse(self.ok(a["api"].get(f"/v1/devices/{device_id}")).get("disabled"))

    def test_bad_requests_get_problem_json_and_change_nothing(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        api = tenant["api"]
        answer = api.post("/v1/devices", {"product_id": tenant["product"], "serial": "bad serial!"})
        self.assertEqual(answer.status, 400, answer)
        self.assertTrue(answer.headers.get("Content-Type", "").startswith(
            "application/problem+json"), answer.headers)
        self.assertEqual(answer.json["code"], "invalid_argument")
        self.assertEqual(answer.json["field"], "serial")
        self.assertEqual(answer.json["status"], 400)
        answer = api.post("/v1/devices", {"product_id": tenant["product"], "serial": "S1",
                                          "colour": "red"})
        self.assertEqual(answer.status, 400, answer)
        self.assertEqual(self.ok(api.get("/v1/devices")).get("devices", []), [])
        self.assertEqual(server.api("").get("/v1/devices").status, 401)
        self.assertEqual(server.api("ak_nope.nope").get("/v1/devices").status, 401)

    def test_idempotency_key_replays_the_first_answer(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        api = tenant["api"]
        body = {"product_id": tenant["product"], "serial": "IDEM-1"}
        first = api.post("/v1/devices", body, headers={"Idempotency-Key": "k-1"})
        again = api.post("/v1/devices", body, headers={"Idempotency-Key": "k-1"})
        self.assertEqual(first.status, 200, first)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(first.json, again.json)
        self.assertEqual(again.headers.get("Idempotent-Replayed"), "true")
        # The stored first answer carries the device secret: it is sealed at rest.
        secret = first.json["secret"]
        if self.STORE == "sqlite":
            import sqlite3
            db = sqlite3.connect(os.path.join(server.dir, "data", "counterlink.db"))
            stored = db.execute("SELECT response_body FROM idempotency").fetchall()
            db.close()
        else:
            stored = [subprocess.run(["psql", server.store_url, "-At", "-c",
                                      "SELECT response_body FROM idempotency"],
                                     capture_output=True, text=True, check=True).stdout]
        self.assertEqual(len(stored), 1)
        self.assertNotIn(secret, str(stored))
        other = api.post("/v1/devices", {"product_id": tenant["product"], "serial": "IDEM-2"},
                         headers={"Idempotency-Key": "k-1"})
        self.assertEqual(other.status, 422, other)
        self.assertEqual(len(self.ok(api.get("/v1/devices"))["devices"]), 1)

    def test_list_pages_with_cursor_and_filters(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        api = tenant["api"]
        ids = set()
        for i in range(25):
            created = self.ok(api.post("/v1/devices", {
                "product_id": tenant["product"], "serial": f"P{i:03d}",
                "labels": {"store": "north" if i % 2 else "south"}}))
            ids.add(created["device"]["id"])
        seen, token, pages = [], "", 0
        while True:
            page = self.ok(api.get("/v1/devices?page_size=10" +
                                   (f"&page_token={token}" if token else "")))
            seen += [d["id"] for d in page["devices"]]
            pages += 1
            token = page.get("next_page_token", "")
            if not token:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(sorted(seen), sorted(ids))
        north = self.ok(api.get("/v1/devices?label=store%3Dnorth&page_size=100"))["devices"]
        self.assertEqual(len(north), 12)
        prefix = self.ok(api.get("/v1/devices?serial_prefix=P00"))["devices"]
        self.assertEqual(sorted(d["serial"] for d in prefix), [f"P00{i}" for i in range(10)])

    def test_openapi_document_is_served(self):
        server = self.start_platform()
        answer = server.api("").get("/v1/openapi.json")
        self.assertEqual(answer.status, 200, answer)
        self.assertTrue(answer.json["openapi"].startswith("3."))
        self.assertIn("/v1/devices", answer.json["paths"])

    # -- bulk import -----------------------------------------------------------------

    def test_bulk_import_of_many_devices_with_progress_and_rate(self):
        server = self.start_platform()
        tenant = self.tenant(server)
        key = self.ok(server.api().post("/v1/api-keys",
                                        {"name": "import", "tenant_id": tenant["id"]}))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "devices.csv")
            with open(path, "w") as f:
                f.write("serial,product_id,labels\n")
                for i in range(IMPORT_ROWS):
                    f.write(f"BULK{i:07d},{tenant['product']},batch=b{i % 7}\n")
                # Two bad rows: a duplicate serial and an invalid one.
                f.write(f"BULK{0:07d},{tenant['product']},\n")
                f.write(f"bad serial,{tenant['product']},\n")
            started = time.monotonic()
            proc = subprocess.run(
                [binary(), "admin", "--api", f"http://{HOST}:{server.http_port}", "--token",
                 key["token"], "devices", "import", path, "--secrets-out",
                 os.path.join(tmp, "secrets.csv")],
                capture_output=True, text=True, timeout=900)
            elapsed = time.monotonic() - started
            self.assertEqual(proc.returncode, 3, proc.stdout + proc.stderr)  # 3 = some rows failed
            self.assertIn("%", proc.stderr)  # progress was shown
            self.assertIn(f"imported {IMPORT_ROWS} devices, 2 rows failed", proc.stderr)
            self.assertIn("rows/s", proc.stderr)
            with open(os.path.join(tmp, "secrets.csv")) as f:
                self.assertEqual(sum(1 for _ in f), IMPORT_ROWS + 1)
        print(f"\n[{self.STORE}] imported {IMPORT_ROWS} devices in {elapsed:.1f} s "
              f"({IMPORT_ROWS / elapsed:.0f} rows/s)")
        found = self.ok(tenant["api"].get(f"/v1/devices?serial=BULK{IMPORT_ROWS - 1:07d}"))
        self.assertEqual(len(found["devices"]), 1)


class PlatformOnSqliteTest(PlatformTests, ServerTestCase):
    STORE = "sqlite"


class PlatformOnPostgresTest(PlatformTests, ServerTestCase):
    STORE = "postgres"

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()


if __name__ == "__main__":
    unittest.main()
