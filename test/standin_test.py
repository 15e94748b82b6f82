#!/usr/bin/env python3
"""The stand-in ImageKit's own test: its state is one state when it answers
in several processes (--processes, which the benchmark uses).

    python3 test/standin_test.py

Starts the stand-in with --processes 2 and sends each request on a new
connection, so that both processes answer (the kernel spreads connections
among them); checks that the file store, the fault queue, the config and
reset act as in one process.  Standard library only.
"""

import base64
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "private_standin_test"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class SharedStateTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        port_file = os.path.join(cls.dir.name, "port")
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "imagekit_standin.py"), "--host", "127.0.0.1",
             "--port", "0", "--private-key", KEY, "--url-endpoint", "https://ik.example/demo",
             "--port-file", port_file, "--processes", "2"],
            stdout=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        with open(port_file) as f:
            cls.port = int(f.read())

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.dir.cleanup()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, res.read()
        finally:
            conn.close()

    def control(self, method, name, obj=None):
        status, body = self.request(method, "/_standin/" + name,
                                    None if obj is None else json.dumps(obj))
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def upload(self, name, **fields):
        boundary = "standintest"
        parts = [("fileName", name)] + [(k, v) for k, v in fields.items()]
        body = b"".join(
            b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
            % (boundary.encode(), k.encode(), v.encode()) for k, v in parts)
        body += (b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                 b"Content-Type: image/png\r\n\r\n" % (boundary.encode(), name.encode())
                 + PNG + b"\r\n--%s--\r\n" % boundary.encode())
        status, answer = self.request("POST", "/api/v1/files/upload", body, {
            "Content-Type": "multipart/form-data; boundary=" + boundary,
            "Authorization": "Basic " + base64.b64encode(KEY.encode() + b":").decode()})
        return status, json.loads(answer)

    def many(self, count, call):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda i: call(i), range(count)))

    def setUp(self):
        self.control("POST", "reset", {})

    def test_both_processes_answer(self):
        self.many(40, lambda i: self.request("GET", "/source/img-%d-100.png" % i))
        stats = self.control("GET", "stats?brief=1")
        self.assertEqual(stats["downloads"], 40)
        self.assertEqual(len(stats["requests_per_process"]), 2)
        self.assertTrue(all(n > 0 for n in stats["requests_per_process"]), stats)

    def test_one_store(self):
        # every version of one path is numbered once, whichever process stored it
        answers = self.many(30, lambda i: self.upload("same.png", useUniqueFileName="false"))
        self.assertEqual(sorted(int(a["versionInfo"]["name"].split()[1]) for _, a in answers),
                         list(range(1, 31)))
        self.assertEqual(len({a["fileId"] for _, a in answers}), 1)
        # unique names never collide; overwriteFile=false lets exactly one in
        answers = self.many(30, lambda i: self.upload("u.png"))
        self.assertEqual(len({a["filePath"] for _, a in answers}), 30)
        answers = self.many(20, lambda i: self.upload(
            "once.png", useUniqueFileName="false", overwriteFile="false"))
        self.assertEqual(sorted(s for s, _ in answers), [200] + [400] * 19)
        stats = self.control("GET", "stats")
        self.assertEqual(stats["uploads"], 61)
        self.assertEqual(len(stats["files"]), 61)
        self.assertEqual(len(stats["paths"]), 32)
        self.assertEqual(stats["statuses"], {"200": 61, "400": 19})

    def test_faults_taken_once(self):
        self.control("POST", "faults", {"status": 503, "count": 7})
        answers = self.many(30, lambda i: self.upload("f%d.png" % i, useUniqueFileName="false"))
        self.assertEqual(sorted(s for s, _ in answers), [200] * 23 + [503] * 7)
        stats = self.control("GET", "stats?brief=1")
        self.assertEqual((stats["faults_consumed"], stats["faults_pending"]), (7, 0))
        self.control("POST", "faults", {"status": 500, "count": 3})
        self.assertEqual(self.control("DELETE", "faults")["cleared"], 3)
        self.assertEqual(self.control("GET", "faults"), [])
        answers = self.many(10, lambda i: self.upload("g%d.png" % i))
        self.assertEqual([s for s, _ in answers], [200] * 10)

    def test_config_and_reset(self):
        self.control("POST", "config", {"latency_ms": 200})
        started = time.monotonic()
        self.many(8, lambda i: self.request("GET", "/source/img-%d-100.png" % i))
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.many(10, lambda i: self.upload("r.png", useUniqueFileName="false"))
        self.control("POST", "reset", {})
        stats = self.control("GET", "stats")
        self.assertEqual((stats["uploads"], stats["downloads"], stats["files"], stats["paths"],
                          stats["latency_ms"]), (0, 0, [], {}, 0))
        answers = self.many(6, lambda i: self.upload("r.png", useUniqueFileName="false"))
        self.assertEqual(sorted(a["versionInfo"]["name"] for _, a in answers),
                         ["Version %d" % v for v in range(1, 7)])


if __name__ == "__main__":
    unittest.main()
