"""The device simulator (`counterlink sim`) against a real `counterlink serve`:
speakers play broadcasts, printers print jobs (in parts, running out of paper
and resuming), scan boxes scan codes whose answers come back, and a device
that drops off gets what it missed when it returns — all through the real
protocol, checked through the public API.
"""

import os
import signal
import subprocess
import tempfile
import time
import unittest

from harness import TIMEOUT, ServerTestCase, binary, wait_until

FINAL = ("played", "printed", "shown", "failed", "expired", "cancelled")


class SimulatorTests(ServerTestCase):

    def start_sim(self, server, token, tenant, *args):
        log = tempfile.NamedTemporaryFile(prefix="sim-", suffix=".log", delete=False)
        self.addCleanup(os.unlink, log.name)
        proc = subprocess.Popen(
            [binary(), "sim", "--api", f"http://127.0.0.1:{server.http_port}",
             "--token", token, "--tenant", tenant, "--mqtt", f"127.0.0.1:{server.port}",
             "--report-s", "1", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(TIMEOUT)
        self.addCleanup(stop)
        self.sim_log = log.name
        return proc

    def sim_output(self):
        with open(self.sim_log, errors="replace") as f:
            return f.read()

    def devices(self, api, kind):
        products = {p["name"]: p["id"] for p in api.get("/v1/products").json["products"]}
        pid = products[{"speaker": "Simulated speaker", "printer": "Simulated printer",
                        "scanbox": "Simulated scan box"}[kind]]
        return [d["id"] for d in api.get(f"/v1/devices?product_id={pid}").json["devices"]]

    def wait_final(self, api, ids, timeout=30):
        states = {}

        def done():
            for cid in ids:
                if states.get(cid) not in FINAL:
                    states[cid] = api.get(f"/v1/commands/{cid}").json["state"]
            return all(s in FINAL for s in states.values())

        wait_until(done, timeout, interval=0.1, message=f"final states {states}")
        return states

    def test_simulated_fleet_plays_prints_and_scans_through_the_real_protocol(self):
        server = self.start_server(platform=True, allow_anonymous=False,
                                   settings={"scans.answer_timeout_ms": 1500,
                                             "commands.sweep_interval_ms": 100})
        admin = server.api()
        tenant = admin.post("/v1/tenants", {"name": "Sim", "kind": "other"}).json["id"]
        receipts = tempfile.mkdtemp(prefix="sim-receipts-")
        sim = self.start_sim(server, server.admin_token, tenant,
                             "--speakers", "3", "--printers", "2", "--scanboxes", "1",
                             "--paper-out-every", "3", "--paper-refill-ms", "500",
                             "--scan-rate", "120", "--receipts-dir", receipts)
        api = server.api()  # the operator acts on the tenant's devices
        wait_until(lambda: "Simulated scan box" in str(api.get("/v1/products?tenant_id="
                                                               + tenant).json),
                   TIMEOUT * 2, message="sim provisioned")
        wait_until(lambda: "connected=6" in self.sim_output(), TIMEOUT * 2,
                   message="six devices connected")
        speakers = self.devices(api, "speaker")
        printers = self.devices(api, "printer")
        self.assertEqual((len(speakers), len(printers)), (3, 2))

        broadcasts = [api.post(f"/v1/devices/{speakers[i % 3]}/broadcasts",
                               {"amount": f"{i + 1}.00", "channel": "alipay",
                                "order_id": f"SIM-{i}"}).json["id"] for i in range(9)]
        receipt = "<C><B>收银小票 Receipt</B></C>\n" + "".join(
            f"Item {n:02d} 商品 x1 {n}.00\n" for n in range(60)) + "<QR>https://example.com/o/1</QR><CUT>"
        jobs = [api.post(f"/v1/devices/{printers[i % 2]}/print-jobs", {"content": receipt}).json
                for i in range(6)]
        self.assertGreater(jobs[0]["print_job"]["parts"], 1, "the job is sent in parts")
        states = self.wait_final(api, broadcasts + [j["id"] for j in jobs], timeout=45)
        self.assertEqual(set(states[b] for b in broadcasts), {"played"})
        self.assertEqual(set(states[j["id"]] for j in jobs), {"printed"})
        # Paper ran out (every third job) and the queue resumed.
        paper = [e for e in api.get(f"/v1/events?types=print_job.waiting&page_size=1000").json[
            "events"]]
        self.assertTrue(paper, "a printer ran out of paper on the way")
        self.assertEqual(paper[0]["data"]["code"], "paper_out")
        # What a printer printed is the job's ESC/POS, reassembled from its parts.
        printed = os.listdir(receipts)
        self.assertEqual(len(printed), 6)
        with open(os.path.join(receipts, printed[0]), "rb") as f:
            data = f.read()
        self.assertEqual(len(data), jobs[0]["print_job"]["escpos_bytes"])
        # Scans: unanswered ones time out and the box is told "unknown".
        box = self.devices(api, "scanbox")[0]
        wait_until(lambda: any(s["state"] == "timed_out" for s in
                               api.get(f"/v1/devices/{box}/scans").json.get("scans", [])),
                   20, message="a scan timed out")
        timed_out = [s for s in api.get(f"/v1/devices/{box}/scans").json["scans"]
                     if s["state"] == "timed_out"][0]
        self.assertEqual(self.wait_final(api, [timed_out["result_command_id"]])[
            timed_out["result_command_id"]], "shown")
        self.assertIn("sim.play", self.sim_output())
        sim.send_signal(signal.SIGTERM)
        self.assertEqual(sim.wait(TIMEOUT), 0)


if __name__ == "__main__":
    unittest.main()
