"""The REST routes, three ways: the google.api.http annotations in proto/
(the source of truth), the OpenAPI document the server serves (and
docs/openapi.yaml), and what the live server actually routes. Each must
match the others exactly."""

import glob
import http.client
import os
import re
import subprocess
import unittest

from harness import HOST, TIMEOUT, ServerTestCase, binary

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def routes_in_protos():
    """{(METHOD, path template)} from every google.api.http rule in proto/."""
    routes = set()
    rule = re.compile(r'\b(get|post|put|patch|delete)\s*:\s*"([^"]+)"')
    for path in glob.glob(os.path.join(ROOT, "proto", "**", "*.proto"), recursive=True):
        with open(path) as f:
            text = re.sub(r"//[^\n]*", "", f.read())  # examples in comments do not count
        for block in re.findall(r"option\s*\(google\.api\.http\)\s*=\s*\{(.*?)\};", text, re.S):
            for method, template in rule.findall(block):
                routes.add((method.upper(), template))
    return routes


def routes_in_document(document):
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item if method in HTTP_METHODS}


def concrete(template):
    """A request path for a template: every {var} becomes a well-formed id."""
    prefixes = {"tenant_id": "tn_", "merchant_id": "mc_", "outlet_id": "st_", "key_id": "ak_",
                "product_id": "pd_", "device_id": "dv_"}
    return re.sub(r"\{([a-z_.]+)\}",
                  lambda m: prefixes.get(m.group(1), "x_") + "0" * 26, template)


class ApiRoutesTest(ServerTestCase):

    def test_document_lists_exactly_the_routes_annotated_in_the_protos(self):
        server = self.start_server(platform=True)
        answer = server.api("").get("/v1/openapi.json")
        self.assertEqual(answer.status, 200, answer)
        protos = routes_in_protos()
        self.assertGreaterEqual(len(protos), 25)
        self.assertEqual(routes_in_document(answer.json), protos)

    def test_every_documented_route_is_served(self):
        server = self.start_server(platform=True)
        document = server.api("").get("/v1/openapi.json").json
        api = server.api()  # operator: passes authentication everywhere
        for method, template in sorted(routes_in_document(document)):
            with self.subTest(f"{method} {template}"):
                body = None if method in ("GET", "DELETE") else {}
                content_type = None
                raw = None
                if template.endswith(":import"):
                    body, raw, content_type = None, b"serial\n", "text/csv"
                if template == "/v1/events/stream":
                    # A server stream never ends by itself: check its head only.
                    conn = http.client.HTTPConnection(HOST, server.http_port, timeout=TIMEOUT)
                    conn.request("GET", template,
                                 headers={"Authorization": f"Bearer {server.admin_token}"})
                    head = conn.getresponse()
                    self.assertEqual(head.status, 200)
                    self.assertTrue(head.getheader("Content-Type", "").startswith(
                        "text/event-stream"))
                    conn.close()
                    continue
                answer = api.request(method, concrete(template), body=body, raw=raw,
                                     content_type=content_type)
                # Anything but "no such route": validation errors, 404 for the
                # placeholder resource, and successes all prove the route exists.
                self.assertNotEqual(answer.problem_code, "route_not_found", answer)
                self.assertNotEqual(answer.status, 405, answer)
                if answer.status >= 400:
                    self.assertTrue(answer.headers.get("Content-Type", "").startswith(
                        "application/problem+json"), answer.headers)
        # ... and a route that is not documented is not served.
        answer = api.get("/v1/widgets")
        self.assertEqual((answer.status, answer.problem_code), (404, "route_not_found"))

    def test_committed_document_is_the_generated_one(self):
        generated = subprocess.run([binary(), "openapi"], capture_output=True, text=True,
                                   check=True).stdout
        with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
            self.assertEqual(f.read(), generated,
                             "docs/openapi.yaml is stale: run "
                             "`build/release/counterlink openapi > docs/openapi.yaml`")


if __name__ == "__main__":
    unittest.main()
