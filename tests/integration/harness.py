"""Integration-test harness: a real `counterlink serve` process and real MQTT peers.

Standard library plus Debian's python3-paho-mqtt (1.6.1) only.

Pieces:
  Server          starts `$COUNTERLINK_BIN serve` on free ports with a temp
                  config dir, scrapes /metrics, stops it with SIGTERM and
                  asserts a clean exit (code 0).
  mosquitto_pub   runs the mosquitto_pub CLI with a timeout.
  MosquittoSub    runs mosquitto_sub in the background and collects messages.
  RawClient       hand-built MQTT bytes over a socket, for malformed and
                  out-of-order packets; reads and parses the server's replies
                  and detects the close.
  PahoClient      a paho client (3.1.1 or 5.0, tcp or websockets) that collects
                  messages and acknowledgements thread-safely, with waits.

Every wait has a bounded timeout; nothing sleeps where an event can be awaited.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

try:
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # pragma: no cover - reported clearly below
    sys.path.append("/usr/lib/python3/dist-packages")
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
DEFAULT_BIN = "/work/main/build/dev/counterlink"
# Generous for a sanitizer build on two shared cores, yet bounded.
TIMEOUT = float(os.environ.get("COUNTERLINK_TEST_TIMEOUT", "10"))
# How long to watch for something that must NOT happen.
QUIET = float(os.environ.get("COUNTERLINK_TEST_QUIET", "0.7"))

V31, V311, V5 = 3, 4, 5


def binary():
    return os.environ.get("COUNTERLINK_BIN", DEFAULT_BIN)


def wait_until(predicate, timeout=TIMEOUT, interval=0.02, message="condition"):
    """Polls `predicate` until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# The server


class ServerError(AssertionError):
    pass


def _yaml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Server:
    """`counterlink serve` on free loopback ports.

    settings: dict of dotted config keys -> values, passed as --set key=value
              (e.g. {"gateway.max_connections": 3, "gateway.users.0.username": "u"}).
    listeners: extra listener dicts appended after tcp and ws
               (e.g. {"name": "tls", "kind": "tls", "tls": {"cert_file": ...}}).
    """

    def __init__(self, settings=None, workers=2, allow_anonymous=True, listeners=(),
                 log_level="info", start_timeout=None, env=None, platform=False,
                 store_url="", data_dir=None):
        """platform: devices authenticate with signed credentials (device_auth);
        off for the broker-only suites, which connect anonymous clients.
        store_url: "" = SQLite in the data dir; or a PostgreSQL URL.
        data_dir: keep state across restarts (the caller owns the directory)."""
        self.platform = platform
        self.store_url = store_url
        self.data_dir = data_dir
        # The operator token the server is told to ensure at start.
        self.admin_token = ("ak_" + "".join(secrets.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
                                            for _ in range(26))
                            + ".sk_" + secrets.token_hex(20))
        self.settings = dict(settings or {})
        self.workers = workers
        self.allow_anonymous = allow_anonymous
        self.extra_listeners = list(listeners)
        self.log_level = log_level
        self.start_timeout = start_timeout or max(TIMEOUT, 15)
        self.env = env
        self.proc = None
        self.dir = None
        self.ports = {}
        self.returncode = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------

    def _write_config(self):
        data_dir = self.data_dir or os.path.join(self.dir, "data")
        lines = [
            f"data_dir: {_yaml_scalar(data_dir)}",
            "log:",
            f"  level: {self.log_level}",
            "  format: text",
            "http:",
            "  enabled: true",
            f"  bind: {HOST}",
            "  port: 0",
            "grpc:",
            f"  bind: {HOST}",
            "  port: 0",
            "store:",
            f"  url: {_yaml_scalar(self.store_url)}",
            "security:",
            f"  bootstrap_admin_token: {_yaml_scalar(self.admin_token)}",
            "device_auth:",
            f"  enabled: {_yaml_scalar(self.platform)}",
            "gateway:",
            f"  workers: {self.workers}",
            f"  allow_anonymous: {_yaml_scalar(self.allow_anonymous)}",
            "  listeners:",
        ]
        listeners = [{"name": "tcp", "kind": "tcp"}, {"name": "ws", "kind": "ws"}]
        listeners += self.extra_listeners
        for listener in listeners:
            entry = {"bind": HOST, "port": 0}
            entry.update(listener)
            first = True
            for key, value in entry.items():
                prefix = "    - " if first else "      "
                first = False
                if isinstance(value, dict):
                    lines.append(f"{prefix}{key}:")
                    for k, v in value.items():
                        lines.append(f"        {k}: {_yaml_scalar(v)}")
                else:
                    lines.append(f"{prefix}{key}: {_yaml_scalar(value)}")
        path = os.path.join(self.dir, "counterlink.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self):
        exe = binary()
        if not os.access(exe, os.X_OK):
            raise ServerError(f"counterlink binary not found at {exe}: build it or set COUNTERLINK_BIN")
        self.dir = tempfile.mkdtemp(prefix="counterlink-it-")
        config = self._write_config()
        args = [exe, "serve", "--config", config]
        if self.settings:
            args.append("--set")
            args += [f"{k}={_set_value(v)}" for k, v in self.settings.items()]
        self.log_path = os.path.join(self.dir, "server.log")
        self._log_file = open(self.log_path, "wb")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir, env=env)
        deadline = time.monotonic() + self.start_timeout
        while True:
            text = self.log
            if "counterlink.ready" in text:
                break
            if self.proc.poll() is not None:
                self._fail_start(f"exited with code {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._fail_start(f"not ready after {self.start_timeout:.0f}s")
            time.sleep(0.02)
        for name, port in re.findall(r"counterlink\.listening name=(\S+) port=(\d+)", self.log):
            self.ports[name] = int(port)
        for needed in ("tcp", "ws", "http"):
            if needed not in self.ports:
                self._fail_start(f"no 'counterlink.listening name={needed}' line")
        return self

    def _fail_start(self, why):
        log = self.log
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._cleanup_dir()
        raise ServerError(f"counterlink serve {why}; its log:\n{log}")

    def stop(self, expect_code=0, timeout=None):
        """SIGTERM, then wait; asserts the exit code (None = don't check)."""
        if self._stopped or self.proc is None:
            return self.returncode
        self._stopped = True
        timeout = timeout or max(TIMEOUT, 15)
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise ServerError(f"counterlink serve did not exit within {timeout:.0f}s of "
                                  f"SIGTERM; its log:\n{self.log}")
            if expect_code is not None and self.returncode != expect_code:
                raise ServerError(f"counterlink serve exited with code {self.returncode} "
                                  f"(expected {expect_code}); its log:\n{self.log}")
            return self.returncode
        finally:
            self._cleanup_dir()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._stopped = True
        self._cleanup_dir()

    def _cleanup_dir(self):
        if getattr(self, "_log_file", None):
            self._log_text_at_stop = self.log
            self._log_file.close()
            self._log_file = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            # The test already failed: stop, but do not mask its error.
            try:
                self.stop(expect_code=None)
            except Exception:
                self.kill()
        return False

    # -- accessors ---------------------------------------------------------------

    @property
    def port(self):
        return self.ports["tcp"]

    @property
    def ws_port(self):
        return self.ports["ws"]

    @property
    def http_port(self):
        return self.ports["http"]

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self):
        if getattr(self, "_log_text_at_stop", None) is not None and self.dir is None:
            return self._log_text_at_stop
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=TIMEOUT):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log), timeout, message=f"log line /{pattern}/")

    def http_get(self, path, timeout=TIMEOUT):
        url = f"http://{HOST}:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    @property
    def grpc_port(self):
        return self.ports.get("grpc")

    def api(self, token=None):
        """A JSON client for the REST API, as the operator unless `token` is given
        ("" = no credentials)."""
        return ApiClient(f"http://{HOST}:{self.http_port}",
                         self.admin_token if token is None else token)

    def metrics_text(self):
        status, body = self.http_get("/metrics")
        if status != 200:
            raise ServerError(f"GET /metrics answered {status}: {body[:200]}")
        return body

    def metric(self, name, labels=None):
        """Value of one sample of `name` whose labels include `labels`; 0.0 if absent."""
        labels = labels or {}
        total = None
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(have.get(k) == str(v) for k, v in labels.items()):
                total = (total or 0.0) + float(m.group(4))
        return total if total is not None else 0.0

    def wait_metric(self, name, labels=None, at_least=1, timeout=TIMEOUT):
        """Waits until metric(name, labels) >= at_least; returns the value."""
        return wait_until(
            lambda: (lambda v: v if v >= at_least else None)(self.metric(name, labels)),
            timeout, message=f"{name}{labels or ''} >= {at_least}")

    def subscriptions(self):
        return self.metric("counterlink_mqtt_subscriptions")

    def wait_subscriptions(self, count, timeout=TIMEOUT):
        return self.wait_metric("counterlink_mqtt_subscriptions", at_least=count, timeout=timeout)


class ApiResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None

    @property
    def problem_code(self):
        return (self.json or {}).get("code") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.text[:300]}>"


class ApiClient:
    """Minimal REST client: JSON in, ApiResponse out; never raises on HTTP errors."""

    def __init__(self, base, token):
        self.base = base
        self.token = token

    def request(self, method, path, body=None, headers=None, raw=None, content_type=None,
                timeout=None):
        data = raw
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if content_type:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout or max(TIMEOUT, 30)) as r:
                return ApiResponse(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return ApiResponse(e.code, dict(e.headers), e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body if body is not None else {}, **kw)

    def patch(self, path, body, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


class PostgresServer:
    """A throwaway PostgreSQL cluster from scripts/pg-test-server (Debian's binaries)."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                          "pg-test-server")

    def __init__(self):
        self.dir = None
        self.url = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="counterlink-pg-")
        out = subprocess.run([self.SCRIPT, "start", self.dir], capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise ServerError("could not start PostgreSQL for the tests (run scripts/bootstrap):\n"
                              + out.stdout + out.stderr)
        self.url = out.stdout.strip().splitlines()[-1]
        return self

    def database(self, name):
        """Creates an empty database and returns its URL."""
        admin = self.url
        subprocess.run(["psql", admin, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True,
                       capture_output=True, timeout=60)
        return admin.rsplit("/", 1)[0] + "/" + name

    def stop(self):
        if self.dir:
            subprocess.run([self.SCRIPT, "stop", self.dir], capture_output=True, timeout=120)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _set_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ServerTestCase(unittest.TestCase):
    """Starts a Server per test through start_server(), stopped by cleanup."""

    def start_server(self, **kwargs):
        server = Server(**kwargs).start()
        self.addCleanup(self._stop_server, server)
        return server

    def _stop_server(self, server):
        if server._stopped:
            return
        outcome = getattr(self, "_outcome", None)
        failed = False
        if outcome is not None:
            result = getattr(outcome, "result", None)
            errors = getattr(outcome, "errors", None)  # Python < 3.11
            if errors:
                failed = any(exc for _, exc in errors)
            elif result is not None and not getattr(outcome, "success", True):
                failed = True
        if failed:
            try:
                server.stop(expect_code=None)
            except Exception:
                server.kill()
        else:
            server.stop()

    def assertServerAlive(self, server):
        self.assertTrue(server.alive, f"server died; its log:\n{server.log[-4000:]}")
        # ... and still serves MQTT: a fresh client connects and round-trips.
        with PahoClient(server, "alive-check", protocol=V311) as c:
            c.subscribe("alive/check", 1)
            c.publish("alive/check", b"ok", qos=1)
            c.wait_messages(1)


# --------------------------------------------------------------------------------------
# mosquitto command-line clients

VERSIONS = {V31: "mqttv31", V311: "mqttv311", V5: "mqttv5"}


def mosquitto_pub(server, *args, version=V311, timeout=TIMEOUT, port=None, check=True):
    """Runs mosquitto_pub; returns the CompletedProcess (output as text)."""
    cmd = ["mosquitto_pub", "-h", HOST, "-p", str(port or server.port), "-V", VERSIONS[version]]
    cmd += [str(a) for a in args]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} did not finish in {timeout}s: {e.stderr}")
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: "
                             f"{proc.stdout}{proc.stderr}")
    return proc


class MosquittoSub:
    """mosquitto_sub in the background. Messages are parsed from a fixed -F
    format; `-d` debug lines tell when the subscription is acknowledged."""

    FORMAT = "MSG\t%t\t%q\t%r\t%x"

    def __init__(self, server, *args, version=V311, port=None, wait_subscribed=True,
                 extra_cmd=()):
        # stdbuf: mosquitto_sub block-buffers stdout into a pipe.
        self.cmd = ["stdbuf", "-oL", "mosquitto_sub", "-h", HOST, "-p", str(port or server.port),
                    "-V", VERSIONS[version], "-d", "-F", self.FORMAT]
        self.cmd += [str(a) for a in args] + list(extra_cmd)
        self.lines = []
        self.messages = []  # (topic, payload bytes, qos, retain)
        self.eof = False  # the reader has seen the end of the output
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait_subscribed:
            self.wait_output("Subscribed (mid")

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if line.startswith("MSG\t"):
                    parts = line.split("\t")
                    if len(parts) >= 5:
                        self.messages.append((parts[1], bytes.fromhex(parts[4]),
                                              int(parts[2]), parts[3] == "1"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    @property
    def output(self):
        with self._cond:
            return "\n".join(self.lines)

    def wait_output(self, text, timeout=TIMEOUT):
        with self._cond:
            self._cond.wait_for(lambda: any(text in l for l in self.lines) or self.eof,
                                timeout)
            if any(text in l for l in self.lines):
                return
        raise AssertionError(f"mosquitto_sub never printed {text!r} (exited={self.proc.poll()}); "
                             f"output:\n{self.output}")

    def wait_messages(self, count, timeout=TIMEOUT):
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count or self.eof, timeout)
            if len(self.messages) >= count:
                return list(self.messages)
        raise AssertionError(f"mosquitto_sub got {len(self.messages)} of {count} messages; "
                             f"output:\n{self.output}")

    def payloads(self):
        with self._cond:
            return [m[1] for m in self.messages]

    def wait_exit(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"mosquitto_sub did not exit; output:\n{self.output}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self.proc.stdout.close()

    def kill(self):
        """SIGKILL: the client vanishes without DISCONNECT."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# --------------------------------------------------------------------------------------
# Raw MQTT over a socket

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# MQTT 5.0 property identifiers
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_CONTENT_TYPE = 0x03
P_RESPONSE_TOPIC = 0x08
P_CORRELATION_DATA = 0x09
P_SUBSCRIPTION_ID = 0x0B
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_WILL_DELAY = 0x18
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_USER_PROPERTY = 0x26
P_MAXIMUM_PACKET_SIZE = 0x27

_BYTE_PROPS = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_U16_PROPS = {0x13, 0x21, 0x22, 0x23}
_U32_PROPS = {0x02, 0x11, 0x18, 0x27}
_VARINT_PROPS = {0x0B}
_STRING_PROPS = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BINARY_PROPS = {0x09, 0x16}


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(data, offset):
    mult, value = 1, 0
    for i in range(4):
        b = data[offset + i]
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return value, offset + i + 1
    raise ValueError("bad varint")


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def encode_properties(props):
    """props: list of (id, value) pairs (lists keep order and allow duplicates)."""
    if props is None:
        return b""
    body = bytearray()
    for pid, value in props:
        body += varint(pid)
        if pid in _BYTE_PROPS:
            body.append(value)
        elif pid in _U16_PROPS:
            body += struct.pack("!H", value)
        elif pid in _U32_PROPS:
            body += struct.pack("!I", value)
        elif pid in _VARINT_PROPS:
            body += varint(value)
        elif pid in _STRING_PROPS or pid in _BINARY_PROPS:
            body += mqtt_str(value)
        elif pid == P_USER_PROPERTY:
            body += mqtt_str(value[0]) + mqtt_str(value[1])
        else:
            raise ValueError(f"unknown property {pid:#x}")
    return varint(len(body)) + bytes(body)


def decode_properties(data, offset):
    length, offset = read_varint(data, offset)
    end = offset + length
    props = {}
    while offset < end:
        pid, offset = read_varint(data, offset)
        if pid in _BYTE_PROPS:
            value = data[offset]
            offset += 1
        elif pid in _U16_PROPS:
            value = struct.unpack_from("!H", data, offset)[0]
            offset += 2
        elif pid in _U32_PROPS:
            value = struct.unpack_from("!I", data, offset)[0]
            offset += 4
        elif pid in _VARINT_PROPS:
            value, offset = read_varint(data, offset)
        elif pid in _STRING_PROPS or pid in _BINARY_PROPS:
            n = struct.unpack_from("!H", data, offset)[0]
            value = bytes(data[offset + 2:offset + 2 + n])
            if pid in _STRING_PROPS:
                value = value.decode("utf-8", "replace")
            offset += 2 + n
        elif pid == P_USER_PROPERTY:
            n = struct.unpack_from("!H", data, offset)[0]
            k = bytes(data[offset + 2:offset + 2 + n]).decode()
            offset += 2 + n
            n = struct.unpack_from("!H", data, offset)[0]
            v = bytes(data[offset + 2:offset + 2 + n]).decode()
            offset += 2 + n
            value = (k, v)
        else:
            raise ValueError(f"unknown property {pid:#x} in server packet")
        if pid in (P_USER_PROPERTY, P_SUBSCRIPTION_ID):
            props.setdefault(pid, []).append(value)
        else:
            props[pid] = value
    return props, end


def packet(ptype, flags, body):
    body = bytes(body)
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect_packet(client_id="", version=V311, clean=True, keepalive=60, username=None,
                   password=None, will=None, properties=None):
    """will: dict(topic, payload, qos=0, retain=False, properties=[...])."""
    name, level = ("MQIsdp", 3) if version == V31 else ("MQTT", version)
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mqtt_str(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += encode_properties(properties or [])
    body += mqtt_str(client_id)
    if will:
        if version == V5:
            body += encode_properties(will.get("properties", []))
        body += mqtt_str(will["topic"]) + mqtt_str(will.get("payload", b""))
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_str(password)
    return packet(CONNECT, 0, body)


def publish_packet(topic, payload=b"", qos=0, packet_id=None, retain=False, dup=False,
                   version=V311, properties=None):
    flags = (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", packet_id or 1)
    if version == V5:
        body += encode_properties(properties or [])
    body += payload.encode() if isinstance(payload, str) else payload
    return packet(PUBLISH, flags, body)


def ack_packet(ptype, packet_id, version=V311, reason=None, properties=None):
    flags = 0x02 if ptype == PUBREL else 0
    body = struct.pack("!H", packet_id)
    if version == V5 and (reason is not None or properties is not None):
        body += bytes([reason or 0])
        if properties is not None:
            body += encode_properties(properties)
    return packet(ptype, flags, body)


def subscribe_packet(packet_id, filters, version=V311, properties=None, flags=0x02):
    """filters: list of (filter, options byte)."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += encode_properties(properties or [])
    for f, options in filters:
        body += mqtt_str(f) + bytes([options])
    return packet(SUBSCRIBE, flags, body)


def unsubscribe_packet(packet_id, filters, version=V311, properties=None):
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += encode_properties(properties or [])
    for f in filters:
        body += mqtt_str(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def disconnect_packet(version=V311, reason=0, properties=None):
    if version != V5 or (reason == 0 and not properties):
        return packet(DISCONNECT, 0, b"")
    return packet(DISCONNECT, 0, bytes([reason]) + encode_properties(properties or []))


class Packet:
    """A packet received from the server, parsed for the fields tests check."""

    def __init__(self, first_byte, body, version):
        self.type = first_byte >> 4
        self.flags = first_byte & 0x0F
        self.body = body
        self.props = {}
        self.reason = None
        self.reasons = []
        self.packet_id = None
        t = self.type
        if t == CONNACK:
            self.session_present = bool(body[0] & 1)
            self.reason = body[1]
            if version == V5 and len(body) > 2:
                self.props, _ = decode_properties(body, 2)
        elif t == PUBLISH:
            self.qos = (self.flags >> 1) & 3
            self.dup = bool(self.flags & 8)
            self.retain = bool(self.flags & 1)
            n = struct.unpack_from("!H", body, 0)[0]
            self.topic = bytes(body[2:2 + n]).decode("utf-8", "replace")
            off = 2 + n
            if self.qos:
                self.packet_id = struct.unpack_from("!H", body, off)[0]
                off += 2
            if version == V5:
                self.props, off = decode_properties(body, off)
            self.payload = bytes(body[off:])
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.packet_id = struct.unpack_from("!H", body, 0)[0]
            self.reason = body[2] if len(body) > 2 else 0
            if version == V5 and len(body) > 3:
                self.props, _ = decode_properties(body, 3)
        elif t in (SUBACK, UNSUBACK):
            self.packet_id = struct.unpack_from("!H", body, 0)[0]
            off = 2
            if version == V5:
                self.props, off = decode_properties(body, off)
            self.reasons = list(body[off:])
        elif t in (DISCONNECT, AUTH):
            self.reason = body[0] if body else 0
            if version == V5 and len(body) > 1:
                self.props, _ = decode_properties(body, 1)

    @property
    def reason_string(self):
        return self.props.get(P_REASON_STRING)

    def __repr__(self):
        names = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
                 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
                 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}
        extra = ""
        if self.reason is not None:
            extra += f" reason=0x{self.reason:02x}"
        if self.packet_id is not None:
            extra += f" id={self.packet_id}"
        if self.type == PUBLISH:
            extra += f" topic={self.topic!r} qos={self.qos} dup={self.dup} retain={self.retain}"
        if self.props:
            extra += f" props={self.props}"
        return f"<{names.get(self.type, self.type)}{extra}>"


class Closed(Exception):
    pass


class RawClient:
    """A socket speaking hand-built MQTT. recv_packet() parses the server's
    packets; expect_closed() asserts the server closed the connection."""

    def __init__(self, server=None, port=None, version=V311, timeout=TIMEOUT):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((HOST, port or server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed()
        self.buf += chunk

    def recv_packet(self, timeout=None):
        """Next packet; raises AssertionError on timeout, Closed on close."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                if len(self.buf) >= 2:
                    try:
                        length, off = read_varint(self.buf, 1)
                    except IndexError:
                        length = None
                    if length is not None and len(self.buf) >= off + length:
                        first = self.buf[0]
                        body = bytes(self.buf[off:off + length])
                        del self.buf[:off + length]
                        return Packet(first, body, self.version)
                self._fill(deadline)
        except socket.timeout:
            raise AssertionError(f"no packet from the server within {timeout or self.timeout}s")

    def expect(self, ptype, timeout=None):
        p = self.recv_packet(timeout)
        if p.type != ptype:
            raise AssertionError(f"expected packet type {ptype}, got {p!r}")
        return p

    def expect_closed(self, timeout=None):
        """Reads until the server closes; returns the packets received before."""
        got = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                got.append(self.recv_packet(max(0.01, deadline - time.monotonic())))
            except Closed:
                return got
            except AssertionError:
                raise AssertionError(f"the server did not close the connection within "
                                     f"{timeout or self.timeout}s; received {got}")

    def expect_disconnect(self, reason, timeout=None):
        """5.0: a DISCONNECT with `reason`, then the close. Returns the DISCONNECT."""
        packets = self.expect_closed(timeout)
        disconnects = [p for p in packets if p.type == DISCONNECT]
        if not disconnects or disconnects[-1].reason != reason:
            raise AssertionError(f"expected DISCONNECT 0x{reason:02x} then close, got {packets}")
        return disconnects[-1]

    def assert_silent(self, duration=QUIET):
        """Nothing arrives (and no close) for `duration` seconds."""
        try:
            p = self.recv_packet(duration)
        except AssertionError:
            return
        except Closed:
            raise AssertionError("the server closed the connection")
        raise AssertionError(f"unexpected packet {p!r}")

    def connect(self, client_id="", clean=True, keepalive=60, expect_reason=0, **kwargs):
        self.send(connect_packet(client_id, self.version, clean, keepalive, **kwargs))
        p = self.expect(CONNACK)
        if expect_reason is not None and p.reason != expect_reason:
            raise AssertionError(f"CONNACK reason 0x{p.reason:02x}, expected "
                                 f"0x{expect_reason:02x}: {p!r}")
        return p

    def subscribe(self, filters, packet_id=1, properties=None):
        """filters: list of (filter, options). Returns the SUBACK."""
        self.send(subscribe_packet(packet_id, filters, self.version, properties))
        return self.expect(SUBACK)

    def publish(self, topic, payload=b"", qos=0, packet_id=None, retain=False, dup=False,
                properties=None):
        self.send(publish_packet(topic, payload, qos, packet_id, retain, dup, self.version,
                                 properties))

    def ack(self, ptype, packet_id, reason=None):
        self.send(ack_packet(ptype, packet_id, self.version, reason))

    def disconnect(self, reason=0, properties=None):
        self.send(disconnect_packet(self.version, reason, properties))
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with a TCP RST and no DISCONNECT."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------------------
# paho clients


class Message:
    def __init__(self, msg):
        self.topic = msg.topic
        self.payload = bytes(msg.payload)
        self.qos = msg.qos
        self.retain = bool(msg.retain)
        self.dup = bool(getattr(msg, "dup", False))
        self.mid = msg.mid
        props = getattr(msg, "properties", None)
        self.properties = props
        self.user_properties = list(getattr(props, "UserProperty", []) or []) if props else []
        sub_ids = getattr(props, "SubscriptionIdentifier", None) if props else None
        if sub_ids is None:
            sub_ids = []
        elif not isinstance(sub_ids, list):
            sub_ids = [sub_ids]
        self.subscription_ids = sub_ids

    def prop(self, name, default=None):
        return getattr(self.properties, name, default) if self.properties else default

    def __repr__(self):
        return f"<Message {self.topic} {self.payload[:40]!r} qos={self.qos} retain={self.retain}>"


class PahoClient:
    """A paho client on its own network thread, collecting everything.

    protocol: V311 (default V5) or V31; transport "tcp" or "websockets".
    connect_properties: dict of paho Properties attribute -> value for CONNECT.
    """

    def __init__(self, server, client_id="", protocol=V5, clean=True, transport="tcp",
                 port=None, username=None, password=None, keepalive=60,
                 connect_properties=None, will=None, tls=None, ws_path="/mqtt",
                 connect=True, expect_success=True):
        self.server = server
        self.protocol = protocol
        proto = {V31: paho.MQTTv31, V311: paho.MQTTv311, V5: paho.MQTTv5}[protocol]
        kwargs = dict(client_id=client_id, protocol=proto, transport=transport)
        if protocol != V5:
            kwargs["clean_session"] = clean
        try:
            self.client = paho.Client(reconnect_on_failure=False, **kwargs)
        except TypeError:  # very old paho
            self.client = paho.Client(**kwargs)
        self.clean = clean
        self.keepalive = keepalive
        self.port = port or (server.ws_port if transport == "websockets" else server.port)
        self.connect_properties = connect_properties
        self._cond = threading.Condition()
        self.messages = []
        self.connack = None  # (flags, rc, properties)
        self.disconnected = None  # (rc, properties)
        self.subacks = {}  # mid -> (reason codes, properties)
        self.unsubacks = {}
        self.published = {}  # mid -> True once acked (paho on_publish)
        if transport == "websockets":
            self.client.ws_set_options(path=ws_path)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will:
            wprops = None
            if will.get("properties"):
                wprops = Properties(PacketTypes.WILLMESSAGE)
                for k, v in will["properties"].items():
                    setattr(wprops, k, v)
            self.client.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
                                 will.get("retain", False), properties=wprops)
        if tls:
            import ssl
            tls = dict(tls)
            tls.setdefault("tls_version", ssl.PROTOCOL_TLS_CLIENT)
            self.client.tls_set(**tls)
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        if connect:
            self.connect(expect_success=expect_success)

    # -- callbacks (paho network thread) -------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self._cond:
            self.connack = (flags, rc, properties)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append(Message(msg))
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self._cond:
            self.disconnected = (rc, properties)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self._cond:
            self.subacks[mid] = (granted, properties)
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, properties=None, reasons=None):
        with self._cond:
            self.unsubacks[mid] = (reasons, properties)
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid):
        with self._cond:
            self.published[mid] = True
            self._cond.notify_all()

    # -- actions -----------------------------------------------------------------

    def _wait(self, predicate, what, timeout=TIMEOUT):
        with self._cond:
            if self._cond.wait_for(predicate, timeout):
                return
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def connect(self, expect_success=True, timeout=TIMEOUT):
        props = None
        kwargs = {}
        if self.protocol == V5:
            props = Properties(PacketTypes.CONNECT)
            for k, v in (self.connect_properties or {}).items():
                setattr(props, k, v)
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = props
        with self._cond:
            self.connack = None
            self.disconnected = None
        self.client.connect(HOST, self.port, self.keepalive, **kwargs)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None or self.disconnected is not None,
                   "CONNACK", timeout)
        if expect_success and self.reason_code != 0:
            raise AssertionError(f"connection refused: {self.connack} {self.disconnected}")
        return self

    @property
    def reason_code(self):
        if self.connack is None:
            return None
        rc = self.connack[1]
        return rc.value if hasattr(rc, "value") else int(rc)

    @property
    def connack_properties(self):
        return self.connack[2] if self.connack else None

    @property
    def session_present(self):
        return bool(self.connack[0].get("session present")) if self.connack else None

    def subscribe(self, topic, qos=0, options=None, properties=None, timeout=TIMEOUT):
        """Returns the list of granted QoS / reason code ints from the SUBACK.
        `topic` may be a list of (filter, qos or SubscribeOptions)."""
        if self.protocol == V5:
            if isinstance(topic, list):
                arg = topic
            else:
                arg = [(topic, options or SubscribeOptions(qos=qos))]
            props = None
            if properties:
                props = Properties(PacketTypes.SUBSCRIBE)
                for k, v in properties.items():
                    setattr(props, k, v)
            rc, mid = self.client.subscribe(arg, properties=props)
        else:
            rc, mid = self.client.subscribe(topic if isinstance(topic, list) else [(topic, qos)])
        if rc != 0:
            raise AssertionError(f"subscribe failed locally: rc={rc}")
        self._wait(lambda: mid in self.subacks, f"SUBACK for {topic}", timeout)
        granted = self.subacks[mid][0]
        return [g.value if hasattr(g, "value") else int(g) for g in granted]

    def unsubscribe(self, topic, timeout=TIMEOUT):
        rc, mid = self.client.unsubscribe(topic)
        self._wait(lambda: mid in self.unsubacks, f"UNSUBACK for {topic}", timeout)
        reasons = self.unsubacks[mid][0]
        if reasons is None:
            return []
        if not isinstance(reasons, list):
            reasons = [reasons]
        return [r.value if hasattr(r, "value") else int(r) for r in reasons]

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True,
                timeout=TIMEOUT):
        props = None
        if properties and self.protocol == V5:
            props = Properties(PacketTypes.PUBLISH)
            for k, v in properties.items():
                setattr(props, k, v)
        info = self.client.publish(topic, payload, qos, retain, properties=props)
        if info.rc != 0:
            raise AssertionError(f"publish failed locally: rc={info.rc}")
        if wait:
            self._wait(lambda: info.mid in self.published or self.disconnected is not None,
                       f"acknowledgement of publish to {topic}", timeout)
            if info.mid not in self.published:
                raise AssertionError(f"disconnected before the publish was acknowledged: "
                                     f"{self.disconnected}")
        return info

    def wait_messages(self, count, timeout=TIMEOUT):
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            if len(self.messages) >= count:
                return list(self.messages)
            raise AssertionError(f"got {len(self.messages)} of {count} messages: {self.messages}")

    def assert_no_message(self, duration=QUIET, after=0):
        """No message beyond the first `after` arrives within `duration`."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) > after, duration)
            if len(self.messages) > after:
                raise AssertionError(f"unexpected messages: {self.messages[after:]}")

    def wait_disconnected(self, timeout=TIMEOUT):
        self._wait(lambda: self.disconnected is not None, "disconnection", timeout)
        rc = self.disconnected[0]
        return rc.value if hasattr(rc, "value") else int(rc)

    def disconnect(self, reason=None, properties=None):
        kwargs = {}
        if self.protocol == V5:
            if reason is not None:
                from paho.mqtt.reasoncodes import ReasonCodes
                kwargs["reasoncode"] = ReasonCodes(PacketTypes.DISCONNECT, identifier=reason)
            if properties:
                props = Properties(PacketTypes.DISCONNECT)
                for k, v in properties.items():
                    setattr(props, k, v)
                kwargs["properties"] = props
        self.client.disconnect(**kwargs)
        try:
            self._wait(lambda: self.disconnected is not None, "disconnect", TIMEOUT)
        finally:
            self.client.loop_stop()

    def close(self):
        """Stops the network thread; disconnects cleanly if still connected."""
        try:
            if self.disconnected is None and self.connack is not None:
                self.client.disconnect()
                with self._cond:
                    self._cond.wait_for(lambda: self.disconnected is not None, 2)
        finally:
            self.client.loop_stop()
            try:
                self.client.socket() and self.client.socket().close()
            except Exception:
                pass

    def drop(self):
        """Vanishes without DISCONNECT (the socket is closed under paho)."""
        sock = self.client.socket()
        sock = getattr(sock, "_socket", sock)  # unwrap paho's WebsocketWrapper
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except (OSError, AttributeError):
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._wait(lambda: self.disconnected is not None, "local disconnect after drop")
        self.client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def v5_props(packet_type, **values):
    props = Properties(packet_type)
    for k, v in values.items():
        setattr(props, k, v)
    return props
