"""Webhooks end to end: a real `counterlink serve`, devices connecting over
MQTT, and a local receiver (http.server in a thread) that checks every
request with the signature code of docs/webhooks.md, taken from the document
verbatim (the Node.js sample too, when node is installed).

Events come from devices: connecting (device.online) and a scan box's scan
(scan.received, answered in the webhook's response).
"""

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import unittest
import uuid

from harness import QUIET, TIMEOUT, V311, PahoClient, ServerTestCase, wait_until
from device_signing import sign

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DOCS = os.path.join(ROOT, "docs", "webhooks.md")


def doc_block(language, needle):
    """The fenced ```<language> block of docs/webhooks.md that contains `needle`."""
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    for match in re.finditer(r"```" + language + r"\n(.*?)```", text, re.S):
        if needle in match.group(1):
            return match.group(1)
    raise AssertionError(f"docs/webhooks.md has no {language} block with {needle!r}")


_docs_python = {}
exec(compile(doc_block("python", "def verify_signature"), DOCS, "exec"), _docs_python)
verify_signature = _docs_python["verify_signature"]

NODE = shutil.which("node")


def node_verifies(secret, header, body):
    """Runs the docs' Node.js verifySignature on one request."""
    script = doc_block("js", "function verifySignature") + (
        "\nconst [secret, header, body] = process.argv.slice(1);"
        "\nprocess.stdout.write(String(verifySignature(secret, header, Buffer.from(body, 'base64'))));\n")
    import base64
    out = subprocess.run([NODE, "-e", script, secret, header, base64.b64encode(body).decode()],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError(f"node failed: {out.stderr}")
    return out.stdout == "true"


def now_ms():
    return int(time.time() * 1000)


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every POST, verifies its
    signature with the docs' code, and answers from a script, then with
    `default`."""

    def __init__(self):
        self.secret = None
        self.requests = []
        self.script = []
        self.default = (200, b"{}")
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                header = self.headers.get("Counterlink-Signature", "")
                with outer.cond:
                    status, answer = outer.script.pop(0) if outer.script else outer.default
                    outer.requests.append({
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "verified": bool(outer.secret) and verify_signature(outer.secret, header,
                                                                           body),
                    })
                    outer.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/counterlink/events"

    def wait(self, count, timeout=TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"got {len(self.requests)} of {count} webhook requests: "
                                     f"{self.requests}")
            return list(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class WebhookTests(ServerTestCase):

    SETTINGS = {
        "webhooks.allow_http": True,
        "webhooks.request_timeout_ms": 2000,
        "webhooks.retry_delays_ms.0": 500,
    }

    def start_platform(self, **settings):
        return self.start_server(platform=True, allow_anonymous=False,
                                 settings=dict(self.SETTINGS, **settings))

    def receiver(self):
        r = Receiver()
        self.addCleanup(r.close)
        return r

    def ok(self, answer, status=None):
        if status is None:
            self.assertTrue(200 <= answer.status < 300, answer)
        else:
            self.assertEqual(answer.status, status, answer)
        return answer.json

    def tenant(self, server, product_type="speaker"):
        admin = server.api()
        tenant = self.ok(admin.post("/v1/tenants", {"name": "Acme Pay", "kind": "aggregator"}))
        key = self.ok(admin.post("/v1/api-keys", {"name": "backend", "tenant_id": tenant["id"]}))
        api = server.api(key["token"])
        product = self.ok(api.post("/v1/products", {"name": "P1", "type": product_type}))
        return api, product["id"]

    def device(self, api, product):
        created = self.ok(api.post("/v1/devices", {"product_id": product,
                                                   "serial": "SN" + uuid.uuid4().hex[:10]}))
        return created["device"]["id"], created["secret"]

    def webhook(self, api, receiver, event_types=("device.*",)):
        created = self.ok(api.post("/v1/webhooks", {"url": receiver.url,
                                                    "event_types": list(event_types)}))
        self.assertTrue(created["secret"].startswith("whsec_"), created)
        receiver.secret = created["secret"]
        return created["webhook"]["id"]

    def connect(self, server, device_id, secret):
        _, user, password = sign(device_id, secret, now_ms())
        client = PahoClient(server, device_id, protocol=V311, username=user, password=password)
        self.addCleanup(client.close)
        return client

    def deliveries(self, api, webhook, state=""):
        query = f"?state={state}" if state else ""
        return self.ok(api.get(f"/v1/webhooks/{webhook}/deliveries{query}")).get("deliveries", [])

    # -- tests ----------------------------------------------------------------------

    def test_device_online_is_delivered_signed_as_the_docs_verify(self):
        server = self.start_platform()
        api, product = self.tenant(server)
        receiver = self.receiver()
        webhook = self.webhook(api, receiver)
        device_id, secret = self.device(api, product)
        self.connect(server, device_id, secret)
        request = receiver.wait(1)[0]
        self.assertTrue(request["verified"], request)
        headers = request["headers"]
        self.assertEqual(headers["counterlink-event-type"], "device.online")
        self.assertEqual(headers["user-agent"], "Counterlink-Webhooks/1")
        self.assertEqual(headers["content-type"], "application/json")
        event = json.loads(request["body"])
        self.assertEqual(event["id"], headers["counterlink-event-id"])
        self.assertEqual(event["type"], "device.online")
        self.assertEqual(event["device_id"], device_id)
        self.assertEqual(event["data"]["device_id"], device_id)
        self.assertTrue(event["data"]["online"])
        # The same event through the API is the same JSON.
        self.assertEqual(self.ok(api.get(f"/v1/events/{event['id']}")),
                         dict(event, tenant_id=""))
        # A body changed in transit, or another secret, does not verify.
        self.assertFalse(verify_signature(receiver.secret, headers["counterlink-signature"],
                                          request["body"] + b" "))
        self.assertFalse(verify_signature("whsec_other", headers["counterlink-signature"],
                                          request["body"]))
        if NODE:
            self.assertTrue(node_verifies(receiver.secret, headers["counterlink-signature"],
                                          request["body"]))
            self.assertFalse(node_verifies(receiver.secret, headers["counterlink-signature"],
                                           request["body"] + b" "))
        # The delivery log says so.
        delivery = wait_until(lambda: next(iter(self.deliveries(api, webhook, "succeeded")), None),
                              message="a succeeded delivery")
        self.assertEqual(delivery["id"], headers["counterlink-delivery-id"])
        self.assertEqual(delivery["event_id"], event["id"])
        shown = self.ok(api.get(f"/v1/webhook-deliveries/{delivery['id']}"))
        self.assertEqual([a["status_code"] for a in shown["attempt_log"]], [200])

    def test_failed_attempts_are_retried_logged_and_counted(self):
        server = self.start_platform()
        api, product = self.tenant(server)
        receiver = self.receiver()
        receiver.script = [(500, b'{"error":"db down"}'), (502, b"bad gateway")]
        webhook = self.webhook(api, receiver)
        device_id, secret = self.device(api, product)
        self.connect(server, device_id, secret)
        requests = receiver.wait(3, timeout=TIMEOUT + 5)
        self.assertTrue(all(r["verified"] for r in requests), requests)
        self.assertEqual({r["headers"]["counterlink-event-id"] for r in requests[:3]},
                         {requests[0]["headers"]["counterlink-event-id"]})
        self.assertEqual([r["headers"]["counterlink-delivery-attempt"] for r in requests[:3]],
                         ["1", "2", "3"])
        delivery = wait_until(lambda: next(iter(self.deliveries(api, webhook, "succeeded")), None),
                              message="the delivery to succeed")
        self.assertEqual(delivery["attempts"], 3)
        log = self.ok(api.get(f"/v1/webhook-deliveries/{delivery['id']}"))["attempt_log"]
        self.assertEqual([a["status_code"] for a in log], [500, 502, 200])
        self.assertEqual(log[0]["error"], '{"error":"db down"}')
        self.assertEqual(self.deliveries(api, webhook, "failed"), [])
        self.assertGreaterEqual(server.metric("counterlink_webhook_attempts_total",
                                              {"outcome": "http_error"}), 2)
        self.assertGreaterEqual(server.metric("counterlink_webhook_attempts_total",
                                              {"outcome": "success"}), 1)

    def test_gives_up_after_the_window_then_redelivery_succeeds(self):
        server = self.start_platform(**{"webhooks.retry_window_ms": 1200})
        api, product = self.tenant(server)
        receiver = self.receiver()
        receiver.default = (503, b"maintenance")
        webhook = self.webhook(api, receiver)
        device_id, secret = self.device(api, product)
        self.connect(server, device_id, secret)
        failed = wait_until(lambda: next(iter(self.deliveries(api, webhook, "failed")), None),
                            timeout=TIMEOUT + 5, message="the delivery to fail")
        self.assertGreaterEqual(failed["attempts"], 2)
        self.assertEqual(failed["last_status_code"], 503)
        server.wait_log(r"webhook\.delivery_failed delivery=" + failed["id"])
        sent = len(receiver.requests)
        # The endpoint is fixed: replay.
        receiver.default = (200, b"{}")
        redelivered = self.ok(api.post(f"/v1/webhook-deliveries/{failed['id']}:redeliver"))
        self.assertEqual(redelivered["state"], "pending")
        requests = receiver.wait(sent + 1)
        self.assertEqual(requests[-1]["headers"]["counterlink-delivery-id"], failed["id"])
        self.assertTrue(requests[-1]["verified"])
        wait_until(lambda: self.ok(api.get(f"/v1/webhook-deliveries/{failed['id']}"))["state"]
                   == "succeeded", message="the redelivery to succeed")

    def test_ping_and_rotation_with_a_grace_period(self):
        server = self.start_platform()
        api, _ = self.tenant(server)
        receiver = self.receiver()
        webhook = self.webhook(api, receiver)
        ping = self.ok(api.post(f"/v1/webhooks/{webhook}:ping"))
        self.assertTrue(ping["success"], ping)
        self.assertEqual(ping["status_code"], 200)
        request = receiver.wait(1)[0]
        self.assertTrue(request["verified"])
        self.assertEqual(request["headers"]["counterlink-event-type"], "webhook.ping")
        # Rotated with a grace period: the receiver still on the old secret verifies.
        rotated = self.ok(api.post(f"/v1/webhooks/{webhook}:rotateSecret",
                                   {"grace_period_s": 600}))
        self.assertNotEqual(rotated["secret"], receiver.secret)
        self.assertTrue(self.ok(api.post(f"/v1/webhooks/{webhook}:ping"))["success"])
        second = receiver.wait(2)[1]
        self.assertTrue(second["verified"])
        self.assertTrue(verify_signature(rotated["secret"],
                                         second["headers"]["counterlink-signature"],
                                         second["body"]))
        # Without one, the old secret stops verifying at once.
        self.ok(api.post(f"/v1/webhooks/{webhook}:rotateSecret", {}))
        self.assertTrue(self.ok(api.post(f"/v1/webhooks/{webhook}:ping"))["success"])
        self.assertFalse(receiver.wait(3)[2]["verified"])
        self.assertEqual(self.deliveries(api, webhook), [])  # pings are not logged

    def test_scan_is_answered_by_the_webhook_response(self):
        server = self.start_platform()
        api, product = self.tenant(server, product_type="scanbox")
        receiver = self.receiver()
        receiver.default = (200, json.dumps({"outcome": "success", "display": "支付成功",
                                              "voice": "收款12.00元"}).encode())
        self.webhook(api, receiver, event_types=("scan.received",))
        device_id, secret = self.device(api, product)
        box = self.connect(server, device_id, secret)
        box.subscribe(f"devices/{device_id}/commands", 1)
        box.publish(f"devices/{device_id}/events",
                    json.dumps({"v": 1, "type": "scan", "scan_id": "s-000123",
                                "code": "134567890123456789", "amount": "12.00"}).encode(), qos=1)
        request = receiver.wait(1)[0]
        self.assertEqual(request["headers"]["counterlink-event-type"], "scan.received")
        self.assertTrue(request["verified"])
        scan = json.loads(request["body"])
        self.assertEqual(scan["data"]["code"], "134567890123456789")
        # The box gets the answer as a scan_result command.
        command = json.loads(box.wait_messages(1)[0].payload)
        self.assertEqual(command["type"], "scan_result")
        self.assertEqual(command["scan_result"]["outcome"], "success")
        self.assertEqual(command["scan_result"]["display"], "支付成功")
        self.assertEqual(command["scan_result"]["voice"], "收款12.00元")
        answered = self.ok(api.get(f"/v1/scans/{scan['subject_id']}"))
        self.assertEqual((answered["state"], answered["outcome"]), ("answered", "success"))
        # Only scan.received was subscribed: device.online was not sent.
        time.sleep(QUIET)
        self.assertEqual({r["headers"]["counterlink-event-type"] for r in receiver.requests},
                         {"scan.received"})

    def test_endpoints_are_checked_and_tenant_scoped(self):
        server = self.start_platform(**{"webhooks.allow_http": False})
        api, _ = self.tenant(server)
        answer = api.post("/v1/webhooks", {"url": "http://127.0.0.1:9/x"})
        self.assertEqual((answer.status, answer.json.get("field")), (400, "url"), answer)
        answer = api.post("/v1/webhooks", {"url": "https://pos.example.com/x",
                                           "event_types": ["broadcast*"]})
        self.assertEqual((answer.status, answer.json.get("field")), (400, "event_types"), answer)
        created = self.ok(api.post("/v1/webhooks", {"url": "https://pos.example.com/x"}))
        webhook = created["webhook"]["id"]
        other, _ = self.tenant(server)
        self.assertEqual(other.get(f"/v1/webhooks/{webhook}").status, 404)
        self.assertEqual(other.get("/v1/webhooks").json.get("webhooks", []), [])
        updated = self.ok(api.patch(f"/v1/webhooks/{webhook}", {"disabled": True}))
        self.assertTrue(updated["disabled"])
        self.assertEqual(updated["url"], "https://pos.example.com/x")
        self.ok(api.delete(f"/v1/webhooks/{webhook}"))
        self.assertEqual(api.get(f"/v1/webhooks/{webhook}").status, 404)


if __name__ == "__main__":
    unittest.main()
