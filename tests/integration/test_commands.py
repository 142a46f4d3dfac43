"""Command pipelines end to end: payment broadcasts, print jobs and scan-box
payments through the REST API, with a plain MQTT client (Paho) standing in
as the device and following docs/device-protocol.md by hand, so every state
path is driven explicitly: idempotent retries, expiry of a stale broadcast,
redelivery after a reconnect, a printer offline then back (jobs in order),
paper out then resumed, cancellation, queue clearing, jobs split into parts,
scans answered in time and timed out.

Every test runs on the embedded SQLite store and on a real PostgreSQL.
"""

import base64
import http.client
import http.server
import json
import threading
import time
import unittest
import uuid

from harness import TIMEOUT, V311, V5, PahoClient, PostgresServer, ServerTestCase, wait_until
from device_signing import sign


def now_ms():
    return int(time.time() * 1000)


class Device:
    """A device by hand: connects with its signed credential, collects the
    commands it receives, and publishes acks, results and events."""

    def __init__(self, server, device_id, secret, protocol=V311):
        self.id = device_id
        _, username, password = sign(device_id, secret, now_ms())
        self.client = PahoClient(server, device_id, protocol=protocol, username=username,
                                 password=password)
        self.client.subscribe(f"devices/{device_id}/commands", 1)

    def commands(self):
        return [json.loads(m.payload) for m in self.client.messages
                if m.topic == f"devices/{self.id}/commands"]

    def wait_commands(self, count, timeout=TIMEOUT):
        wait_until(lambda: len(self.commands()) >= count, timeout,
                   message=f"{count} commands at {self.id}")
        return self.commands()

    def publish(self, channel, obj):
        self.client.publish(f"devices/{self.id}/{channel}", json.dumps(obj).encode(), qos=1)

    def ack(self, command_id):
        self.publish("acks", {"v": 1, "id": command_id, "status": "received"})

    def result(self, command_id, result, code=None):
        body = {"v": 1, "id": command_id, "result": result}
        if code:
            body["code"] = code
        self.publish("results", body)

    def event(self, obj):
        self.publish("events", dict({"v": 1}, **obj))

    def close(self):
        self.client.close()


class EventStream:
    """A server-sent-events client on http.client: records as dicts."""

    def __init__(self, server, token, last_event_id=None, query=""):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", "/v1/events/stream" + query, headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.content_type = self.response.getheader("Content-Type", "")

    def next_record(self):
        record = {}
        while True:
            line = self.response.fp.readline()
            if not line:
                raise AssertionError("event stream ended")
            line = line.decode().rstrip("\n")
            if not line:
                if "data" in record:
                    return record
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            record[field] = value[1:] if value.startswith(" ") else value

    def read_until(self, predicate, limit=200):
        records = []
        for _ in range(limit):
            r = self.next_record()
            records.append(r)
            if predicate(r):
                return records
        raise AssertionError(f"no matching record in {limit}")

    def close(self):
        self.conn.close()


class CommandTests:
    STORE = "sqlite"
    pg = None

    def start_platform(self, **settings):
        url = ""
        if self.STORE == "postgres":
            url = self.pg.database("t_" + uuid.uuid4().hex[:12])
        base = {"commands.sweep_interval_ms": 100}
        base.update(settings)
        return self.start_server(platform=True, allow_anonymous=False, store_url=url,
                                 settings=base)

    def ok(self, answer, status=None):
        if status is None:
            self.assertTrue(200 <= answer.status < 300, answer)
        else:
            self.assertEqual(answer.status, status, answer)
        return answer.json

    def tenant(self, server):
        admin = server.api()
        tenant = self.ok(admin.post("/v1/tenants", {"name": "Acme Pay", "kind": "aggregator"}))
        key = self.ok(admin.post("/v1/api-keys", {"name": "backend", "tenant_id": tenant["id"]}))
        api = server.api(key["token"])
        products = {
            "speaker": self.ok(api.post("/v1/products", {
                "name": "S1", "type": "speaker",
                "capabilities": {"locales": ["zh-CN", "en"]}}))["id"],
            "printer": self.ok(api.post("/v1/products", {
                "name": "P1", "type": "printer",
                "capabilities": {"paper_width_mm": 58, "max_payload_bytes": 2048}}))["id"],
            "scanbox": self.ok(api.post("/v1/products", {"name": "B1", "type": "scanbox"}))["id"],
        }
        return {"id": tenant["id"], "api": api, "products": products}

    def device(self, tenant, kind="speaker"):
        created = self.ok(tenant["api"].post("/v1/devices", {
            "product_id": tenant["products"][kind],
            "serial": "SN" + uuid.uuid4().hex[:10].upper()}))
        return created["device"]["id"], created["secret"]

    def broadcast(self, api, device_id, order_id, amount="128.50", **extra):
        body = {"amount": amount, "channel": "wechat", "order_id": order_id}
        body.update(extra)
        return api.post(f"/v1/devices/{device_id}/broadcasts", body)

    def wait_state(self, api, command_id, state, timeout=TIMEOUT):
        seen = {}

        def reached():
            seen["c"] = self.ok(api.get(f"/v1/commands/{command_id}"))
            return seen["c"]["state"] == state

        wait_until(reached, timeout, message=f"{command_id} {state} (last: {seen.get('c')})")
        return seen["c"]

    # -- broadcasts ----------------------------------------------------------------

    def test_broadcast_reaches_the_speaker_and_is_played_with_full_history(self):
        server = self.start_platform()
        t = self.tenant(server)
        device_id, secret = self.device(t)
        speaker = Device(server, device_id, secret)
        try:
            cmd = self.ok(self.broadcast(t["api"], device_id, "T-1"))
            self.assertEqual(cmd["state"], "queued")
            self.assertEqual(cmd["broadcast"]["rendered_text"], "微信收款128.50元")
            [got] = speaker.wait_commands(1)
            self.assertEqual(got["v"], 1)
            self.assertEqual(got["id"], cmd["id"])
            self.assertEqual(got["type"], "broadcast")
            self.assertEqual(got["broadcast"]["text"], "微信收款128.50元")
            self.assertEqual(got["broadcast"]["amount"], "128.50")
            self.assertEqual(got["broadcast"]["order_id"], "T-1")
            self.assertGreater(got["expires_at_ms"], now_ms())
            speaker.ack(cmd["id"])
            self.wait_state(t["api"], cmd["id"], "delivered")
            speaker.result(cmd["id"], "played")
            done = self.wait_state(t["api"], cmd["id"], "played")
            self.assertEqual([h["state"] for h in done["history"]],
                             ["queued", "sent", "delivered", "played"])
            # English, from a template.
            en = self.ok(self.broadcast(t["api"], device_id, "T-2", amount="0.50", locale="en"))
            self.assertEqual(en["broadcast"]["rendered_text"], "WeChat payment received 0.50 yuan")
        finally:
            speaker.close()

    def test_the_same_order_is_one_broadcast_whatever_the_client_retries(self):
        server = self.start_platform()
        t = self.tenant(server)
        device_id, secret = self.device(t)
        speaker = Device(server, device_id, secret)
        try:
            first = self.ok(self.broadcast(t["api"], device_id, "ORDER-7"))
            again = self.ok(self.broadcast(t["api"], device_id, "ORDER-7"))
            self.assertEqual(first["id"], again["id"])
            # An Idempotency-Key retry too.
            keyed = self.ok(t["api"].post(f"/v1/devices/{device_id}/broadcasts",
                                          {"amount": "128.50", "channel": "wechat",
                                           "order_id": "ORDER-7"},
                                          headers={"Idempotency-Key": "k-1"}))
            self.assertEqual(keyed["id"], first["id"])
            conflict = self.broadcast(t["api"], device_id, "ORDER-7", amount="1.00")
            self.assertEqual(conflict.status, 409, conflict)
            self.assertEqual(conflict.problem_code, "order_id_conflict")
            speaker.wait_commands(1)
            speaker.ack(first["id"])
            speaker.result(first["id"], "played")
            self.wait_state(t["api"], first["id"], "played")
            time.sleep(0.3)
            self.assertEqual(len(speaker.commands()), 1)
            listed = self.ok(t["api"].get(f"/v1/devices/{device_id}/commands"))
            self.assertEqual([c["id"] for c in listed["commands"]], [first["id"]])
        finally:
            speaker.close()

    def test_offline_speaker_gets_its_broadcasts_in_order_when_it_comes_back(self):
        server = self.start_platform()
        t = self.tenant(server)
        device_id, secret = self.device(t)
        ids = [self.ok(self.broadcast(t["api"], device_id, f"O-{i}", amount=f"{i}.00"))["id"]
               for i in range(1, 6)]
        speaker = Device(server, device_id, secret)
        try:
            got = speaker.wait_commands(5)
            self.assertEqual([c["id"] for c in got], ids)
            for c in got:
                speaker.ack(c["id"])
                speaker.result(c["id"], "played")
            for i in ids:
                self.wait_state(t["api"], i, "played")
        finally:
            speaker.close()

    def test_a_stale_broadcast_expires_and_is_never_sent_late(self):
        server = self.start_platform()
        t = self.tenant(server)
        device_id, secret = self.device(t)
        cmd = self.ok(self.broadcast(t["api"], device_id, "STALE", expires_in_s=1))
        done = self.wait_state(t["api"], cmd["id"], "expired", timeout=10)
        self.assertEqual(done["code"], "expired")
        fresh = self.ok(self.broadcast(t["api"], device_id, "FRESH"))
        speaker = Device(server, device_id, secret)
        try:
            got = speaker.wait_commands(1)
            time.sleep(0.3)
            self.assertEqual([c["id"] for c in speaker.commands()], [fresh["id"]])
            self.assertEqual(got[0]["broadcast"]["order_id"], "FRESH")
        finally:
            speaker.close()

    def test_device_that_reconnects_gets_unfinished_commands_again_and_they_count_once(self):
        server = self.start_platform()
        t = self.tenant(server)
        device_id, secret = self.device(t)
        speaker = Device(server, device_id, secret)
        cmd = self.ok(self.broadcast(t["api"], device_id, "R-1"))
        speaker.wait_commands(1)
        speaker.ack(cmd["id"])
        self.wait_state(t["api"], cmd["id"], "delivered")
        speaker.close()  # gone before reporting the outcome
        speaker = Device(server, device_id, secret)
        try:
            [again] = speaker.wait_commands(1)
            self.assertEqual(again["id"], cmd["id"])
            # The device dedupes by id: it repeats its ack and reports once.
            speaker.ack(cmd["id"])
            speaker.result(cmd["id"], "played")
            speaker.result(cmd["id"], "played")
            done = self.wait_state(t["api"], cmd["id"], "played")
            time.sleep(0.3)
            done = self.ok(t["api"].get(f"/v1/commands/{cmd['id']}"))
            self.assertEqual([h["state"] for h in done["history"]].count("played"), 1)
        finally:
            speaker.close()

    def test_device_failures_busy_retry_and_final_codes(self):
        server = self.start_platform(**{"commands.retry_backoff_ms": 50})
        t = self.tenant(server)
        device_id, secret = self.device(t)
        speaker = Device(server, device_id, secret)
        try:
            busy = self.ok(self.broadcast(t["api"], device_id, "B-1"))
            speaker.wait_commands(1)
            speaker.result(busy["id"], "failed", code="busy")
            again = speaker.wait_commands(2)
            self.assertEqual(again[1]["id"], busy["id"])
            speaker.result(busy["id"], "played")
            self.wait_state(t["api"], busy["id"], "played")
            bad = self.ok(self.broadcast(t["api"], device_id, "B-2"))
            speaker.wait_commands(3)
            speaker.result(bad["id"], "failed", code="device_error")
            done = self.wait_state(t["api"], bad["id"], "failed")
            self.assertEqual(done["code"], "device_error")
            late = self.ok(self.broadcast(t["api"], device_id, "B-3"))
            speaker.wait_commands(4)
            speaker.result(late["id"], "failed", code="expired")
            self.assertEqual(self.wait_state(t["api"], late["id"], "expired")["code"], "expired")
        finally:
            speaker.close()

    def test_bad_broadcasts_get_problems_and_change_nothing(self):
        server = self.start_platform(**{"commands.max_queue_per_device": 2})
        t = self.tenant(server)
        device_id, _ = self.device(t)
        printer_id, _ = self.device(t, "printer")
        cases = [
            (self.broadcast(t["api"], device_id, "X", amount="12.505"), 400, "amount"),
            (self.broadcast(t["api"], device_id, "X", amount="0.00"), 400, "amount"),
            (self.broadcast(t["api"], device_id, "X", channel="bitcoin"), 400, "channel"),
            (self.broadcast(t["api"], device_id, "X", locale="fr"), 400, "locale"),
            (self.broadcast(t["api"], device_id, ""), 400, "order_id"),
            (self.broadcast(t["api"], device_id, "X", expires_in_s=99999), 400, "expires_in_s"),
            (self.broadcast(t["api"], printer_id, "X"), 422, "device_id"),
        ]
        for answer, status, field in cases:
            self.assertEqual(answer.status, status, answer)
            self.assertTrue(answer.headers.get("Content-Type", "").startswith(
                "application/problem+json"), answer.headers)
            self.assertEqual(answer.json.get("field"), field, answer)
        self.assertEqual(self.ok(t["api"].get(f"/v1/devices/{device_id}/commands"))
                         .get("commands", []), [])
        # The queue bound: the device is offline, two fit, the third is refused.
        self.ok(self.broadcast(t["api"], device_id, "Q-1"))
        self.ok(self.broadcast(t["api"], device_id, "Q-2"))
        full = self.broadcast(t["api"], device_id, "Q-3")
        self.assertEqual(full.status, 429, full)
        self.assertEqual(full.problem_code, "device_queue_full")
        # Another tenant sees nothing.
        other = self.tenant(server)
        self.assertEqual(self.broadcast(other["api"], device_id, "Z").status, 404)

    # -- print jobs ------------------------------------------------------------------

    def print_job(self, api, printer_id, text, **extra):
        body = {"content": f"<C><B>{text}</B></C>\n合计 12.00\n<CUT>"}
        body.update(extra)
        return api.post(f"/v1/devices/{printer_id}/print-jobs", body)

    def finish_print(self, printer, command):
        printer.ack(command["id"])
        printer.result(command["id"], "printed")

    def test_printer_offline_then_back_prints_every_job_in_submission_order(self):
        server = self.start_platform()
        t = self.tenant(server)
        printer_id, secret = self.device(t, "printer")
        jobs = [self.ok(self.print_job(t["api"], printer_id, f"Order {i}")) for i in range(4)]
        self.assertEqual(jobs[0]["print_job"]["paper_width_mm"], 58)
        printer = Device(server, printer_id, secret)
        try:
            for n, job in enumerate(jobs):
                # One job at a time: the next follows the previous result.
                got = printer.wait_commands(n + 1)
                self.assertEqual(len(got), n + 1)
                self.assertEqual(got[n]["id"], job["id"])
                data = base64.b64decode(got[n]["print"]["data"])
                self.assertIn(f"Order {n}".encode(), data)
                self.assertEqual(got[n]["print"]["encoding"], "escpos")
                self.finish_print(printer, got[n])
                self.wait_state(t["api"], job["id"], "printed")
        finally:
            printer.close()

    def test_paper_out_pauses_the_queue_and_resumes_when_the_printer_is_ready(self):
        server = self.start_platform()
        t = self.tenant(server)
        printer_id, secret = self.device(t, "printer")
        printer = Device(server, printer_id, secret)
        try:
            a = self.ok(self.print_job(t["api"], printer_id, "A"))
            b = self.ok(self.print_job(t["api"], printer_id, "B"))
            printer.wait_commands(1)
            printer.ack(a["id"])
            printer.event({"type": "printer_status", "status": "paper_out"})
            printer.result(a["id"], "failed", code="paper_out")
            waiting = self.wait_state(t["api"], a["id"], "waiting")
            self.assertEqual(waiting["code"], "paper_out")
            time.sleep(0.5)
            self.assertEqual(len(printer.commands()), 1, "nothing is sent while out of paper")
            printer.event({"type": "printer_status", "status": "ready"})
            got = printer.wait_commands(2)
            self.assertEqual(got[1]["id"], a["id"])  # the same job, again, first
            self.finish_print(printer, got[1])
            self.wait_state(t["api"], a["id"], "printed")
            got = printer.wait_commands(3)
            self.assertEqual(got[2]["id"], b["id"])
            self.finish_print(printer, got[2])
            self.wait_state(t["api"], b["id"], "printed")
            # Policy "fail": the job fails instead of waiting.
            c = self.ok(self.print_job(t["api"], printer_id, "C", on_printer_error="fail"))
            printer.wait_commands(4)
            printer.result(c["id"], "failed", code="cover_open")
            self.assertEqual(self.wait_state(t["api"], c["id"], "failed")["code"], "cover_open")
        finally:
            printer.close()

    def test_queued_jobs_can_be_cancelled_and_the_queue_cleared(self):
        server = self.start_platform()
        t = self.tenant(server)
        printer_id, secret = self.device(t, "printer")
        jobs = [self.ok(self.print_job(t["api"], printer_id, f"J{i}")) for i in range(4)]
        cancelled = self.ok(t["api"].post(f"/v1/commands/{jobs[1]['id']}:cancel", {}))
        self.assertEqual(cancelled["state"], "cancelled")
        again = t["api"].post(f"/v1/commands/{jobs[1]['id']}:cancel", {})
        self.assertEqual(again.status, 409)
        self.assertEqual(again.problem_code, "command_finished")
        printer = Device(server, printer_id, secret)
        try:
            got = printer.wait_commands(1)
            self.assertEqual(got[0]["id"], jobs[0]["id"])
            busy = t["api"].post(f"/v1/commands/{jobs[0]['id']}:cancel", {})
            self.assertEqual(busy.status, 409)
            self.assertEqual(busy.problem_code, "command_in_flight")
            cleared = self.ok(t["api"].post(f"/v1/devices/{printer_id}/print-jobs:clear", {}))
            self.assertEqual(sorted(cleared["cancelled_ids"]), sorted([jobs[2]["id"], jobs[3]["id"]]))
            self.assertEqual(cleared["in_flight_ids"], [jobs[0]["id"]])
            self.finish_print(printer, got[0])
            self.wait_state(t["api"], jobs[0]["id"], "printed")
            time.sleep(0.3)
            self.assertEqual(len(printer.commands()), 1)
        finally:
            printer.close()

    def test_large_job_is_split_into_parts_that_reassemble_in_order(self):
        server = self.start_platform()
        t = self.tenant(server)
        printer_id, secret = self.device(t, "printer")
        lines = "".join(f"<B>Item {i:03d}</B> 商品 {i}.00\n" for i in range(200))
        job = self.ok(self.print_job(t["api"], printer_id, "Big", content=lines + "<CUT>"))
        parts = job["print_job"]["parts"]
        self.assertGreater(parts, 2)
        printer = Device(server, printer_id, secret)
        try:
            got = printer.wait_commands(parts)
            self.assertEqual([c["print"]["part"] for c in got], list(range(1, parts + 1)))
            data = b"".join(base64.b64decode(c["print"]["data"]) for c in got)
            self.assertEqual(len(data), job["print_job"]["escpos_bytes"])
            self.assertIn(b"Item 199", data)
            self.finish_print(printer, got[0])
            self.wait_state(t["api"], job["id"], "printed")
            bad = self.print_job(t["api"], printer_id, "x", content="<B>unclosed")
            self.assertEqual(bad.status, 400)
            self.assertEqual(bad.problem_code, "invalid_markup")
        finally:
            printer.close()

    # -- scan boxes ------------------------------------------------------------------

    def test_scan_answered_through_the_api_reaches_the_box(self):
        server = self.start_platform()
        t = self.tenant(server)
        box_id, secret = self.device(t, "scanbox")
        box = Device(server, box_id, secret)
        try:
            box.event({"type": "scan", "scan_id": "s-1", "code": "134567890123456789",
                       "amount": "12.00"})
            box.event({"type": "scan", "scan_id": "s-1b", "code": "134567890123456789"})
            scans = {}

            def listed():
                scans["l"] = self.ok(t["api"].get(f"/v1/devices/{box_id}/scans")).get("scans", [])
                return len(scans["l"]) >= 1

            wait_until(listed, message="scan recorded")
            time.sleep(0.3)
            scans["l"] = self.ok(t["api"].get(f"/v1/devices/{box_id}/scans"))["scans"]
            self.assertEqual(len(scans["l"]), 1, "the same code again is the same scan")
            scan = scans["l"][0]
            self.assertEqual(scan["code"], "134567890123456789")
            self.assertEqual(scan["amount"], "12.00")
            self.assertEqual(scan["state"], "pending")
            answered = self.ok(t["api"].post(f"/v1/scans/{scan['id']}/result",
                                             {"outcome": "success", "voice": "收款12.00元"}))
            self.assertEqual(answered["state"], "answered")
            self.assertEqual(answered["display"], "支付成功")
            [cmd] = box.wait_commands(1)
            self.assertEqual(cmd["type"], "scan_result")
            self.assertEqual(cmd["scan_result"]["scan_id"], scan["id"])
            self.assertEqual(cmd["scan_result"]["outcome"], "success")
            self.assertEqual(cmd["scan_result"]["voice"], "收款12.00元")
            box.ack(cmd["id"])
            box.result(cmd["id"], "shown")
            self.wait_state(t["api"], cmd["id"], "shown")
            twice = t["api"].post(f"/v1/scans/{scan['id']}/result", {"outcome": "failed"})
            self.assertEqual(twice.status, 409)
            self.assertEqual(twice.problem_code, "scan_already_answered")
        finally:
            box.close()

    def test_scan_answered_by_the_webhooks_own_response(self):
        server = self.start_platform(**{"webhooks.allow_http": True})
        t = self.tenant(server)
        received = []

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(body)
                answer = b"{}"
                if body["type"] == "scan.received":
                    answer = json.dumps({"outcome": "success", "display": "支付成功",
                                         "voice": "收款" + body["data"]["amount"] + "元"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        self.addCleanup(receiver.shutdown)
        self.ok(t["api"].post("/v1/webhooks", {
            "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
            "event_types": ["scan.*"]}))
        box_id, secret = self.device(t, "scanbox")
        box = Device(server, box_id, secret)
        try:
            box.event({"type": "scan", "scan_id": "w-1", "code": "134567890123456700",
                       "amount": "8.80"})
            [cmd] = box.wait_commands(1, timeout=15)
            self.assertEqual(cmd["scan_result"]["outcome"], "success")
            self.assertEqual(cmd["scan_result"]["voice"], "收款8.80元")
            scan = self.ok(t["api"].get(f"/v1/scans/{cmd['scan_result']['scan_id']}"))
            self.assertEqual(scan["state"], "answered")
            self.assertEqual(scan["code"], "134567890123456700")
            wait_until(lambda: any(e["type"] == "scan.answered" for e in received),
                       message="scan.answered delivered")
            self.assertEqual(received[0]["type"], "scan.received")
            self.assertEqual(received[0]["data"]["code"], "134567890123456700")
        finally:
            box.close()

    def test_unanswered_scan_tells_the_box_result_unknown_never_success(self):
        server = self.start_platform(**{"scans.answer_timeout_ms": 800})
        t = self.tenant(server)
        box_id, secret = self.device(t, "scanbox")
        box = Device(server, box_id, secret)
        try:
            box.event({"type": "scan", "scan_id": "s-9", "code": "280000000000000009"})
            [cmd] = box.wait_commands(1, timeout=15)
            self.assertEqual(cmd["scan_result"]["outcome"], "unknown")
            self.assertEqual(cmd["scan_result"]["display"], "结果未知，请核对订单")
            scan_id = cmd["scan_result"]["scan_id"]
            scan = self.ok(t["api"].get(f"/v1/scans/{scan_id}"))
            self.assertEqual(scan["state"], "timed_out")
            late = t["api"].post(f"/v1/scans/{scan_id}/result", {"outcome": "success"})
            self.assertEqual(late.status, 409)
            self.assertEqual(late.problem_code, "scan_timed_out")
        finally:
            box.close()

    # -- events ------------------------------------------------------------------------

    def test_every_transition_is_an_event_in_order(self):
        server = self.start_platform()
        t = self.tenant(server)
        device_id, secret = self.device(t)
        speaker = Device(server, device_id, secret)
        try:
            cmd = self.ok(self.broadcast(t["api"], device_id, "E-1"))
            speaker.wait_commands(1)
            speaker.ack(cmd["id"])
            speaker.result(cmd["id"], "played")
            self.wait_state(t["api"], cmd["id"], "played")
            events = self.ok(t["api"].get("/v1/events?types=broadcast.*"))["events"]
            self.assertEqual([e["type"] for e in events],
                             ["broadcast.queued", "broadcast.sent", "broadcast.delivered",
                              "broadcast.played"])
            ids = [int(e["id"]) for e in events]
            self.assertEqual(ids, sorted(ids))
            self.assertEqual(events[-1]["data"]["order_id"], "E-1")
            self.assertEqual(events[-1]["subject_id"], cmd["id"])
            online = self.ok(t["api"].get("/v1/events?types=device.online"))["events"]
            self.assertEqual([e["device_id"] for e in online], [device_id])
        finally:
            speaker.close()


    def test_event_stream_resumes_from_the_last_event_id_without_gaps(self):
        server = self.start_platform()
        t = self.tenant(server)
        token = t["api"].token
        device_id, _ = self.device(t)
        stream = EventStream(server, token)
        self.assertEqual(stream.status, 200)
        self.assertTrue(stream.content_type.startswith("text/event-stream"))
        first = self.ok(self.broadcast(t["api"], device_id, "S-1"))
        got = stream.read_until(lambda r: json.loads(r["data"])["subject_id"] == first["id"])
        last = got[-1]
        self.assertEqual(last["event"], "broadcast.queued")
        self.assertEqual(json.loads(last["data"])["id"], last["id"])
        stream.close()
        # While the client is away, more happens.
        later = [self.ok(self.broadcast(t["api"], device_id, f"S-{i}"))["id"] for i in (2, 3, 4)]
        resumed = EventStream(server, token, last_event_id=last["id"])
        try:
            records = resumed.read_until(
                lambda r: json.loads(r["data"])["subject_id"] == later[-1])
        finally:
            resumed.close()
        ids = [r["id"] for r in records]
        logged = self.ok(t["api"].get(f"/v1/events?after_id={last['id']}"))["events"]
        self.assertEqual(ids, [e["id"] for e in logged][:len(ids)])
        self.assertEqual([json.loads(r["data"])["subject_id"] for r in records
                          if r["event"] == "broadcast.queued"], later)
        # after_id in the query works the same; a bad id is a problem.
        bad = EventStream(server, token, query="?after_id=abc")
        self.assertEqual(bad.status, 400)
        bad.close()


class SqliteCommandTests(CommandTests, ServerTestCase):
    STORE = "sqlite"


class PostgresCommandTests(CommandTests, ServerTestCase):
    STORE = "postgres"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PostgresServer()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        super().tearDownClass()


if __name__ == "__main__":
    unittest.main()
