"""Nothing accepted is lost, nothing takes effect twice: the server is killed
with SIGKILL in the middle of a broadcast load and restarted on the same
data. Afterwards every broadcast the API accepted reaches a final state, and
the speakers (Paho clients that follow docs/device-protocol.md, deduplicating
by command id with a memory that survives reconnects, as flash does) played
each at most once — and every one that ends `played` exactly once.

The load client behaves like a careful payment system: a request whose
answer was lost (the server died) is retried with the same order id until it
gets an answer, so retries across the crash are exercised too.
"""

import json
import shutil
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

from harness import HOST, TIMEOUT, PostgresServer, Server, paho, wait_until
from device_signing import sign

SPEAKERS = 4
LOAD_THREADS = 3


def now_ms():
    return int(time.time() * 1000)


class Speaker:
    """A speaker with a flash-like memory of completed command ids."""

    def __init__(self, device_id, secret, port_fn):
        self.id = device_id
        self.secret = secret
        self.port_fn = port_fn
        self.lock = threading.Lock()
        self.completed = set()
        self.played = {}  # command id -> times played (must stay <= 1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            client = paho.Client(client_id=self.id, protocol=paho.MQTTv311, clean_session=True)
            _, user, password = sign(self.id, self.secret, now_ms())
            client.username_pw_set(user, password)
            client.on_message = self._on_message
            connected = threading.Event()
            gone = threading.Event()
            client.on_connect = lambda c, u, f, rc: (rc == 0 and c.subscribe(
                f"devices/{self.id}/commands", 1), connected.set())
            client.on_disconnect = lambda c, u, rc: gone.set()
            try:
                client.connect(HOST, self.port_fn(), 30)
            except OSError:
                time.sleep(0.1)
                continue
            client.loop_start()
            while not self.stop.is_set() and not gone.is_set():
                time.sleep(0.05)
            client.loop_stop()
            try:
                client.disconnect()
            except Exception:
                pass
            time.sleep(0.1)

    def _on_message(self, client, userdata, msg):
        cmd = json.loads(msg.payload)
        cid = cmd["id"]

        def send(channel, body):
            client.publish(f"devices/{self.id}/{channel}", json.dumps(body), qos=1)

        with self.lock:
            if cid in self.completed:
                send("acks", {"v": 1, "id": cid, "status": "received"})
                send("results", {"v": 1, "id": cid, "result": "played"})
                return
            if now_ms() > cmd.get("expires_at_ms", 0):
                send("results", {"v": 1, "id": cid, "result": "failed", "code": "expired"})
                self.completed.add(cid)
                return
            self.played[cid] = self.played.get(cid, 0) + 1
            self.completed.add(cid)
        send("acks", {"v": 1, "id": cid, "status": "received"})
        send("results", {"v": 1, "id": cid, "result": "played"})


class Load:
    """Broadcasts with unique order ids; an unanswered request is retried
    with the same order id until it is answered."""

    def __init__(self, base_fn, token, devices):
        self.base_fn = base_fn
        self.token = token
        self.devices = devices
        self.lock = threading.Lock()
        self.accepted = {}  # order id -> command id
        self.retries = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(LOAD_THREADS)]
        for t in self.threads:
            t.start()

    def _post(self, device, order_id):
        body = json.dumps({"amount": "1.00", "channel": "alipay", "order_id": order_id}).encode()
        req = urllib.request.Request(f"{self.base_fn()}/v1/devices/{device}/broadcasts",
                                     data=body, method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def _run(self, n):
        i = 0
        while not self.stop.is_set():
            order_id = f"L{n}-{i}"
            device = self.devices[i % len(self.devices)]
            i += 1
            while True:
                try:
                    cmd = self._post(device, order_id)
                    with self.lock:
                        self.accepted[order_id] = cmd["id"]
                    break
                except urllib.error.HTTPError as e:
                    if e.code < 500:
                        raise
                except (OSError, ValueError):
                    pass
                # No answer: retry the same order (even when stopping, as a
                # payment system would finish it).
                with self.lock:
                    self.retries += 1
                time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT * 3)


class DurabilityTests:
    STORE = "sqlite"
    pg = None

    def test_sigkill_under_load_loses_nothing_and_plays_nothing_twice(self):
        data_dir = tempfile.mkdtemp(prefix="counterlink-durability-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        url = self.pg.database("t_" + uuid.uuid4().hex[:12]) if self.STORE == "postgres" else ""
        servers = [Server(platform=True, allow_anonymous=False, store_url=url,
                          data_dir=data_dir).start()]
        admin_token = servers[0].admin_token
        self.addCleanup(lambda: servers[-1].stop(expect_code=None))

        def api(token=None):
            return servers[-1].api(token)

        tenant = api().post("/v1/tenants", {"name": "Durable", "kind": "aggregator"}).json
        key = api().post("/v1/api-keys", {"name": "load", "tenant_id": tenant["id"]}).json
        tapi = api(key["token"])
        product = tapi.post("/v1/products", {"name": "S", "type": "speaker"}).json
        devices = []
        for i in range(SPEAKERS):
            created = tapi.post("/v1/devices", {"product_id": product["id"],
                                                "serial": f"D{i:04d}"}).json
            devices.append((created["device"]["id"], created["secret"]))

        speakers = [Speaker(d, s, lambda: servers[-1].port) for d, s in devices]
        load = Load(lambda: f"http://{HOST}:{servers[-1].http_port}", key["token"],
                    [d for d, _ in devices])
        try:
            wait_until(lambda: len(load.accepted) >= 150, 30, message="load under way")
            servers[-1].kill()  # SIGKILL: no drain, no flush
            accepted_before = len(load.accepted)
            restarted = Server(platform=True, allow_anonymous=False, store_url=url,
                               data_dir=data_dir)
            restarted.admin_token = admin_token
            servers.append(restarted.start())
            wait_until(lambda: len(load.accepted) >= accepted_before + 150, 30,
                       message="load after the restart")
        finally:
            load.finish()

        accepted = dict(load.accepted)
        self.assertGreater(len(accepted), 300)
        self.assertEqual(len(set(accepted.values())), len(accepted),
                         "two orders answered with the same command")
        tapi = servers[-1].api(key["token"])
        final = {}

        def all_final():
            for order, cid in accepted.items():
                if cid in final:
                    continue
                c = tapi.get(f"/v1/commands/{cid}").json
                if c and c["state"] in ("played", "failed", "expired", "cancelled"):
                    final[cid] = c
            return len(final) == len(accepted)

        wait_until(all_final, 60, interval=0.2,
                   message=f"every accepted broadcast final ({len(final)}/{len(accepted)})")
        for s in speakers:
            s.stop.set()
        played = {}
        for s in speakers:
            with s.lock:
                for cid, n in s.played.items():
                    played[cid] = played.get(cid, 0) + n
        twice = {cid: n for cid, n in played.items() if n > 1}
        self.assertEqual(twice, {}, "commands that took effect twice")
        unknown = set(played) - set(accepted.values())
        self.assertEqual(unknown, set(), "devices played commands the API never accepted")
        for cid, c in final.items():
            if c["state"] == "played":
                self.assertEqual(played.get(cid), 1, f"{cid} is played but was not played once")
            else:
                self.assertEqual(played.get(cid, 0), 0, f"{cid} is {c['state']} but was played")
        states = [c["state"] for c in final.values()]
        # The devices were back within seconds: all of them played.
        self.assertEqual(states.count("played"), len(states), states)
        print(f"\n[{self.STORE}] accepted={len(accepted)} retries={load.retries} "
              f"played={sum(played.values())}")


class SqliteDurabilityTests(DurabilityTests, unittest.TestCase):
    STORE = "sqlite"


class PostgresDurabilityTests(DurabilityTests, unittest.TestCase):
    STORE = "postgres"

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()


if __name__ == "__main__":
    unittest.main()
