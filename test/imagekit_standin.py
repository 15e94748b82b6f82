#!/usr/bin/env python3
"""Local stand-in for ImageKit's upload API, for the extension's tests.

The machines that run the tests cannot reach ImageKit, so this server answers
``POST /api/v1/files/upload`` the way the real service does according to
/work/shared/imagekit-api/openapi-v1.0.0.yaml (schema ``FileUploadV1`` in,
``Upload`` out, ``{"message", "help"}`` errors, an ``x-ik-requestId`` header on
every answer).  It also serves deterministic source images for download tests
and has a small JSON control API with which a test injects faults and reads
what the server saw.  Standard library only (Python 3.11).

Usage::

    python3 test/imagekit_standin.py --host 127.0.0.1 --port 0 \\
        --private-key KEY --url-endpoint https://ik.imagekit.io/demo \\
        --port-file PATH [--max-file-size 26214400] [--latency-ms 0] [--verbose]
        [--state-file PATH] [--processes N] [--trace PATH]

The bound port is written to PATH (atomically: PATH.tmp, then rename) and
``imagekit stand-in listening on http://HOST:PORT`` is printed.  SIGTERM or
SIGINT stops the server cleanly.

With ``--state-file PATH`` the file store (filePath -> sha256, file ids and
versions) outlives the process: every stored file is appended to PATH as a
JSON line at once, and a server started with the same PATH loads it back, so
a stand-in killed (even with SIGKILL) and started again on the same port
still knows what was uploaded before (the chaos soak, test/chaos/, does
this).  Only the store is kept: counters, the ``files`` list, faults and
config start afresh in each process.  ``/_standin/reset`` empties PATH too.

With ``--processes N`` the server answers in N processes listening on one
port (``SO_REUSEPORT``: the kernel spreads the connections among them), for
the benchmark, whose ceiling one Python process would be.  They keep one
state (see SharedState): the same store, faults taken exactly once, stats
added up (plus ``requests_per_process``).  The tests use one process.

Upload API (``POST /api/v1/files/upload``, multipart/form-data)
    HTTP Basic auth, user = private key, password ignored (the spec's raw form
    ``Authorization: Basic <private key>`` is accepted too).  No/unusable
    credentials -> 401, wrong key -> 403, Basic auth mixed with
    signature/token/expire/publicKey -> 400.  ``file`` (binary part with a
    filename, http(s) URL fetched with an 8 s timeout, or base64 / base64 data
    URI) and ``fileName`` are required; booleans must be ``true``/``false``;
    ``transformation``, ``customMetadata``, ``extensions`` are JSON strings;
    ``tags`` and ``responseFields`` are comma-separated (tags: no ``%``, at
    most 500 characters in all); ``folder`` holds letters, digits, ``/``,
    ``_``, ``-`` (the spec's) and ``.``.  Files are kept as
    filePath -> sha256.  Every upload request is answered ``latency_ms`` after
    it arrived (it is checked meanwhile, and its file stored at the end).

Source files (``GET /source/<name>``)
    ``img-<seed>-<bytes>.png``: a valid 64x64 PNG of exactly <bytes> bytes
    (or the smallest possible PNG if <bytes> is smaller), the same bytes for the
    same seed and different bytes for different seeds.  ``*.html``: an HTML
    page.  Hostile ones: ``redirect?to=URL`` (302 to URL), ``loop.png`` (302 to
    itself), ``empty.png`` (200, no bytes), ``endless.png`` (a chunked body
    that does not end).  ``missing*`` and anything else: 404.  Each GET waits
    ``latency_ms``.

Control API (JSON in, JSON out; never delayed, never affected by faults)
    POST /_standin/reset   clear stats, the fault queue and stored files;
                           latency, private key and max file size go back to
                           the command-line values.
    POST /_standin/config  {"latency_ms": N, "private_key": "...",
                            "max_file_size": N}, any subset.
    POST /_standin/faults  a fault object or a list of them, appended to a FIFO.
                           Each upload request takes one unit of the head fault
                           on arrival (before auth and parsing); a fault has
                           "count" units (default 1).  Kinds:
          {"status": N, "headers": {...}, "body": {...} or "text"}
              answer N (default body {"message": <reason>, "help": ""};
              429 gets X-RateLimit-Limit/-Reset/-Interval unless given)
          {"action": "drop"}       read the request, close without answering
          {"action": "truncate"}   200 with the Content-Length of a full upload
                                   answer, send half of it, close
          {"action": "garbage"}    200 text/html "<html>not json</html>"
          {"action": "json", "body": <any JSON>, "status": 200}
          {"action": "raw", "status": N, "headers": {...}, "body_b64": "..."}
              exactly that (plus Content-Length if not given)
          {"action": "delay", "ms": M}   sleep M ms, then handle normally
          "drop" and "truncate" accept "process": true: the upload is then
          really performed (stored, counted) and only the answer is lost.
    GET  /_standin/faults  the pending fault queue.
    DELETE /_standin/faults  empty the fault queue (stats and files are kept);
                           answers {"ok": true, "cleared": <units dropped>}.
    GET  /_standin/stats   counters, the uploaded files and their fields,
                           content hashes, stored paths (see State.snapshot).
                           ``?brief=1`` leaves out ``files``, ``hashes`` and
                           ``paths``: the counters only, cheap to poll.
"""

import argparse
import asyncio
import base64
import binascii
import ctypes
import email.message
import email.utils
import fcntl
import functools
import hashlib
import heapq
import hmac
import http
import json
import mmap
import multiprocessing
import os
import random
import re
import secrets
import signal
import socket
import string
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

UPLOAD_PATH = "/api/v1/files/upload"
HELP = "For support kindly contact us at support@imagekit.io ."
JSON_TYPE = "application/json; charset=utf-8"
URL_FETCH_TIMEOUT = 8.0

BOOLEAN_FIELDS = (
    "useUniqueFileName", "overwriteFile", "isPrivateFile", "overwriteAITags",
    "overwriteTags", "overwriteCustomMetadata", "isPublished",
)
BOOLEAN_DEFAULTS = {
    "useUniqueFileName": True, "overwriteFile": True, "isPrivateFile": False,
    "overwriteAITags": True, "overwriteTags": True,
    "overwriteCustomMetadata": True, "isPublished": True,
}
CLIENT_AUTH_FIELDS = ("signature", "token", "expire", "publicKey")
RESPONSE_FIELDS = {
    "tags", "customCoordinates", "isPrivateFile", "embeddedMetadata",
    "isPublished", "customMetadata", "metadata", "selectedFieldsSchema",
}
POST_TRANSFORMATION_KEYS = {
    "transformation": ({"type", "value"}, {"type", "value"}),
    "gif-to-video": ({"type"}, {"type", "value"}),
    "thumbnail": ({"type"}, {"type", "value"}),
    "abs": ({"type", "value", "protocol"}, {"type", "value", "protocol"}),
}
EXTENSION_NAMES = {
    "google-auto-tagging", "aws-auto-tagging", "remove-bg",
    "ai-auto-description", "ai-tasks",
}
FILE_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9.\-]")
FOLDER_CHARS = re.compile(r"[A-Za-z0-9/_.\-]*")
SOURCE_IMAGE = re.compile(r"^img-(.+)-(\d+)\.png$")
ALNUM = string.ascii_letters + string.digits
FAULT_ACTIONS = {"drop", "truncate", "garbage", "json", "raw", "delay"}


class UploadError(Exception):
    """An error answer of the upload API: HTTP status and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message):
    return UploadError(400, message)


def json_bytes(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_body(message):
    return {"message": message, "help": HELP}


# --------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------

class State:
    """Everything the server remembers; all access goes through one lock.

    The counters are plain attributes here; SharedState keeps them in memory
    that several processes share.  Everything else (the file store, the fault
    queue, the config) changes only through change(), so that SharedState can
    replay the changes another process made.
    """

    def __init__(self, private_key, latency_ms, max_file_size, url_endpoint,
                 state_file=None):
        self.lock = threading.Lock()
        self.count_lock = self.lock     # what the counters alone need
        self.cli_private_key = private_key
        self.cli_latency_ms = latency_ms
        self.cli_max_file_size = max_file_size
        self.url_endpoint = url_endpoint.rstrip("/")
        self.state_file = None
        self.reset()
        if state_file is not None:
            self.load_store(state_file)
            self.state_file = open(state_file, "a", encoding="utf-8")

    def reset(self):
        with self.lock:
            if self.state_file is not None:
                self.state_file.truncate(0)
                self.state_file.flush()
            self.forget()
            self.requests = 0
            self.uploads = 0
            self.statuses = {}
            self.in_flight = 0
            self.max_in_flight = 0
            self.auth_failures = 0
            self.faults_consumed = 0
            self.dropped = 0
            self.downloads = 0
            self.download_statuses = {}
            self.downloads_in_flight = 0
            self.max_downloads_in_flight = 0

    def clear(self):
        """Forget the store, the faults and the config (the lock held)."""
        self.private_key = self.cli_private_key
        self.latency_ms = self.cli_latency_ms
        self.max_file_size = self.cli_max_file_size
        self.faults = []
        self.files = []
        self.hashes = {}
        self.paths = {}
        self.path_meta = {}          # filePath -> {"fileId", "version"}

    def total(self, name):
        """A counter's value in all processes (see SharedState)."""
        return getattr(self, name)

    def forget(self):
        """What reset() does to the store, the faults and the config."""
        self.clear()

    def change(self, op, *args):
        """Apply one change of the store, the faults or the config (the lock held)."""
        getattr(self, "apply_" + op)(*args)

    def apply_config(self, cfg):
        if "latency_ms" in cfg:
            self.latency_ms = cfg["latency_ms"]
        if "private_key" in cfg:
            self.private_key = cfg["private_key"]
        if "max_file_size" in cfg:
            self.max_file_size = cfg["max_file_size"]

    def apply_take_fault(self):
        head = self.faults[0]
        head["count"] -= 1
        if head["count"] <= 0:
            self.faults.pop(0)

    def apply_add_faults(self, faults):
        self.faults.extend(faults)

    def apply_clear_faults(self):
        self.faults = []

    def apply_store(self, path, sha256, meta, record):
        self.path_meta[path] = meta
        self.paths[path] = sha256
        self.hashes[sha256] = self.hashes.get(sha256, 0) + 1
        self.files.append(record)

    def configure(self, cfg):
        with self.lock:
            self.change("config", cfg)

    def settings(self):
        with self.lock:
            return self.settings_now()

    def settings_now(self):
        """The settings (the lock held, or the copy known to be current)."""
        return {"latency_ms": self.latency_ms, "private_key": self.private_key,
                "max_file_size": self.max_file_size}

    # -- upload request accounting -----------------------------------------

    def upload_started(self):
        """Count an arriving upload request and take one unit of the head fault."""
        with self.count_lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.total("in_flight"))
        return self.take_fault()

    def take_fault(self):
        """One unit of the head fault (a copy of it), or None."""
        with self.lock:
            if not self.faults:
                return None
            head = self.faults[0]
            self.change("take_fault")
            self.faults_consumed += 1
            return dict(head)

    def upload_finished(self, status):
        with self.count_lock:
            self.in_flight -= 1
            if status is None:
                self.dropped += 1
            else:
                key = str(status)
                self.statuses[key] = self.statuses.get(key, 0) + 1

    def auth_failed(self):
        with self.count_lock:
            self.auth_failures += 1

    def download_started(self):
        with self.count_lock:
            self.downloads += 1
            self.downloads_in_flight += 1
            self.max_downloads_in_flight = max(self.max_downloads_in_flight,
                                               self.total("downloads_in_flight"))

    def download_finished(self, status):
        with self.count_lock:
            self.downloads_in_flight -= 1
            key = str(status)
            self.download_statuses[key] = self.download_statuses.get(key, 0) + 1

    def add_faults(self, faults):
        with self.lock:
            self.change("add_faults", faults)
            return len(self.faults)

    def clear_faults(self):
        with self.lock:
            units = sum(f["count"] for f in self.faults)
            self.change("clear_faults")
            return units

    def pending_faults(self):
        with self.lock:
            return [dict(f) for f in self.faults]

    # -- file store ----------------------------------------------------------

    def load_store(self, path):
        """Load the store saved in ``path`` by an earlier process (--state-file)."""
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue            # a line cut short by a kill
                self.paths[entry["path"]] = entry["sha256"]
                self.path_meta[entry["path"]] = {
                    "fileId": entry["fileId"], "version": entry["version"],
                    "versionId": entry["versionId"]}
                self.hashes[entry["sha256"]] = self.hashes.get(entry["sha256"], 0) + 1

    def save_stored(self, path, sha256, meta):
        """Append one stored file to the --state-file (with the lock held)."""
        if self.state_file is None:
            return
        self.state_file.write(json.dumps(dict(meta, path=path, sha256=sha256)) + "\n")
        self.state_file.flush()

    def store(self, folder, base_name, unique, overwrite, sha256, record):
        """Pick the final name, store the file, and return (name, path, meta).

        With ``unique`` a random suffix is drawn until the path is free; without
        it an existing path is replaced (new version) unless ``overwrite`` is
        false, which is an error.
        """
        with self.lock:
            while True:
                name = unique_name(base_name) if unique else base_name
                path = folder + name
                if path not in self.paths or not unique:
                    break
            meta = self.path_meta.get(path)
            if meta is not None and not overwrite:
                raise bad_request(
                    "A file with the same name already exists at the exact location. "
                    "We could not overwrite it because both overwriteFile and "
                    "useUniqueFileName are set to false.")
            if meta is None:
                file_id = secrets.token_hex(12)
                meta = {"fileId": file_id, "version": 1, "versionId": file_id}
            else:
                meta = {"fileId": meta["fileId"], "version": meta["version"] + 1,
                        "versionId": secrets.token_hex(12)}
            self.change("store", path, sha256, meta,
                        dict(record, name=name, filePath=path, fileId=meta["fileId"]))
            self.save_stored(path, sha256, meta)
            self.uploads += 1
            return name, path, dict(meta)

    def snapshot(self, brief=False):
        """Counters and, unless ``brief``, the files, hashes and paths."""
        with self.lock:
            snap = {
                "requests": self.requests,
                "uploads": self.uploads,
                "statuses": dict(self.statuses),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "auth_failures": self.auth_failures,
                "faults_consumed": self.faults_consumed,
                "faults_pending": sum(f["count"] for f in self.faults),
                "dropped": self.dropped,
                "downloads": self.downloads,
                "download_statuses": dict(self.download_statuses),
                "downloads_in_flight": self.downloads_in_flight,
                "max_downloads_in_flight": self.max_downloads_in_flight,
                "latency_ms": self.latency_ms,
                "max_file_size": self.max_file_size,
            }
            if not brief:
                snap["files"] = [dict(f) for f in self.files]
                snap["hashes"] = dict(self.hashes)
                snap["paths"] = dict(self.paths)
            return snap


class SharedCounter:
    """A counter of SharedState: this process's own, in the shared memory."""

    def __init__(self, slot):
        self.slot = slot

    def __get__(self, obj, owner=None):
        return self if obj is None else obj.mine[self.slot]

    def __set__(self, obj, value):
        obj.mine[self.slot] = value


class SharedStatuses:
    """One process's counts per HTTP status, as the dict State keeps."""

    def __init__(self, counts):
        self.counts = counts

    def get(self, key, default=None):
        return self.counts[int(key) - 100] or default

    def __setitem__(self, key, value):
        self.counts[int(key) - 100] = value

    def __getitem__(self, key):
        return self.counts[int(key) - 100]

    def keys(self):
        return [str(i + 100) for i, n in enumerate(self.counts) if n]


class SharedStatusField:
    def __init__(self, which):
        self.which = which

    def __get__(self, obj, owner=None):
        return self if obj is None else SharedStatuses(obj.my_statuses[self.which])

    def __set__(self, obj, value):
        counts = obj.my_statuses[self.which]
        counts[:] = [0] * len(counts)
        for key, n in value.items():
            counts[int(key) - 100] = n


class SharedLock:
    """The lock of SharedState: a lock between processes which, once taken,
    brings this process's copy of the store, faults and config up to date."""

    def __init__(self, state):
        self.state = state
        self.lock = multiprocessing.Lock()

    def __enter__(self):
        self.lock.acquire()
        try:
            self.state.catch_up()
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc):
        self.lock.release()


class SharedState(State):
    """The State of a stand-in served by several processes (--processes).

    Each process counts in its own block of a shared memory map, without a
    lock; a snapshot adds the blocks up (the in-flight maxima are the largest
    sums a process saw, read without a lock).  The store, the fault queue and
    the config are each process's own copy, kept identical through a log: a
    process appends every change() it makes to a shared file under the lock,
    and replays the others' changes whenever it takes the lock.
    /_standin/reset starts the log afresh (a new epoch).  Whichever process
    answers a request (the kernel's choice) sees the same store, faults and
    config, and a fault is taken exactly once.
    """

    COUNTERS = ("requests", "uploads", "in_flight", "max_in_flight", "auth_failures",
                "faults_consumed", "dropped", "downloads", "downloads_in_flight",
                "max_downloads_in_flight")
    STATUSES = 500                       # 100..599
    BLOCK = len(COUNTERS) + 2 * STATUSES
    HEADER = 3                           # the log's epoch and end, control changes

    def __init__(self, processes, *args, **kwargs):
        self.memory = mmap.mmap(-1, 8 * (self.HEADER + processes * self.BLOCK))
        self.header = (ctypes.c_int64 * self.HEADER).from_buffer(self.memory)
        self.blocks = [(ctypes.c_int64 * self.BLOCK).from_buffer(
            self.memory, 8 * (self.HEADER + i * self.BLOCK)) for i in range(processes)]
        self.log = tempfile.TemporaryFile()
        self.records = tempfile.TemporaryFile()
        fcntl.fcntl(self.records.fileno(), fcntl.F_SETFL,       # each write appends
                    fcntl.fcntl(self.records.fileno(), fcntl.F_GETFL) | os.O_APPEND)
        self.unwritten = []
        self.log_epoch = 0
        self.log_pos = 0
        self.control_seen = 0
        self.serve_as(0)
        super().__init__(*args, **kwargs)
        self.lock = SharedLock(self)
        self.count_lock = threading.Lock()     # this process's threads

    def serve_as(self, index):
        """Count in block ``index`` from now on (each process its own)."""
        block = self.blocks[index]
        self.mine = block
        self.my_statuses = [
            (ctypes.c_int64 * self.STATUSES).from_buffer(
                block, 8 * (len(self.COUNTERS) + i * self.STATUSES)) for i in range(2)]

    statuses = SharedStatusField(0)
    download_statuses = SharedStatusField(1)

    def total(self, name):
        slot = self.COUNTERS.index(name)
        return sum(block[slot] for block in self.blocks)

    def forget(self):
        """Zero every process's counters and start the log afresh: every
        process clears its copy when it next takes the lock (catch_up)."""
        for block in self.blocks:
            block[:] = [0] * self.BLOCK
        self.clear()
        self.log.truncate(0)
        self.records.truncate(0)
        self.header[0] += 1
        self.header[1] = 0
        self.header[2] += 1
        self.log_epoch = self.header[0]
        self.log_pos = 0
        self.control_seen = self.header[2]

    def current(self):
        """Whether this process's copy of the faults and the config is up to
        date (read without the lock; other processes' stores do not matter)."""
        return self.control_seen == self.header[2]

    def apply_store(self, path, sha256, meta, record=None):
        """Store ``path``; the files' records are in self.records (see change)."""
        self.path_meta[path] = meta
        self.paths[path] = sha256
        self.hashes[sha256] = self.hashes.get(sha256, 0) + 1

    def change(self, op, *args):
        super().change(op, *args)
        if op == "store":
            # The record goes to a file of its own (store() appends it once
            # the lock is free), read by snapshot() alone: the log then holds
            # only what every store() needs, cheap to replay.
            self.unwritten.append(args[3])
            args = args[:3]
        entry = json_bytes([op] + list(args)) + b"\n"
        os.pwrite(self.log.fileno(), entry, self.header[1])
        self.header[1] += len(entry)
        self.log_pos = self.header[1]
        if op != "store":
            self.header[2] += 1
            self.control_seen = self.header[2]

    def store(self, *args):
        stored = super().store(*args)
        while self.unwritten:
            os.write(self.records.fileno(), json_bytes(self.unwritten.pop(0)) + b"\n")
        return stored

    def catch_up(self):
        self.control_seen = self.header[2]
        if self.log_epoch != self.header[0]:
            self.clear()
            self.log_epoch = self.header[0]
            self.log_pos = 0
        end = self.header[1]
        if end > self.log_pos:
            data = os.pread(self.log.fileno(), end - self.log_pos, self.log_pos)
            self.log_pos = end
            for line in data.split(b"\n")[:-1]:
                op, *args = json.loads(line)
                State.change(self, op, *args)

    # The counters need no lock between processes, and a request takes the
    # lock only to take a fault (and to store a file).

    def settings(self):
        return self.settings_now() if self.current() else super().settings()

    def take_fault(self):
        if self.current() and not self.faults:
            return None
        return super().take_fault()

    def snapshot(self, brief=False):
        snap = super().snapshot(brief)
        if not brief:
            with self.lock:
                data = os.pread(self.records.fileno(),
                                os.fstat(self.records.fileno()).st_size, 0)
            snap["files"] = [json.loads(line) for line in data.split(b"\n")[:-1]]
        for name in self.COUNTERS:
            values = [block[self.COUNTERS.index(name)] for block in self.blocks]
            snap[name] = max(values) if name.startswith("max_") else sum(values)
        for which, key in enumerate(("statuses", "download_statuses")):
            counts = {}
            for block in self.blocks:
                base = len(self.COUNTERS) + which * self.STATUSES
                for i in range(self.STATUSES):
                    if block[base + i]:
                        counts[str(100 + i)] = counts.get(str(100 + i), 0) + block[base + i]
            snap[key] = counts
        snap["requests_per_process"] = [
            block[self.COUNTERS.index("requests")] + block[self.COUNTERS.index("downloads")]
            for block in self.blocks]
        return snap


for _slot, _name in enumerate(SharedState.COUNTERS):
    setattr(SharedState, _name, SharedCounter(_slot))


# --------------------------------------------------------------------------
# Control API validation
# --------------------------------------------------------------------------

def validate_config(cfg):
    if not isinstance(cfg, dict):
        raise ValueError("config must be a JSON object")
    unknown = set(cfg) - {"latency_ms", "private_key", "max_file_size"}
    if unknown:
        raise ValueError("unknown config keys: %s" % ", ".join(sorted(unknown)))
    if "latency_ms" in cfg and not is_number(cfg["latency_ms"], minimum=0):
        raise ValueError("latency_ms must be a number >= 0")
    if "private_key" in cfg and not isinstance(cfg["private_key"], str):
        raise ValueError("private_key must be a string")
    if "max_file_size" in cfg and not (is_number(cfg["max_file_size"], minimum=1)
                                       and isinstance(cfg["max_file_size"], int)):
        raise ValueError("max_file_size must be an integer >= 1")
    return cfg


def is_number(value, minimum=None):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and (minimum is None or value >= minimum)


def validate_fault(fault):
    """Check one fault object and return a normalised copy."""
    if not isinstance(fault, dict):
        raise ValueError("a fault must be a JSON object")
    fault = dict(fault)
    count = fault.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be an integer >= 1")
    fault["count"] = count
    action = fault.get("action")
    if action is None:
        if not isinstance(fault.get("status"), int) or not 100 <= fault["status"] <= 599:
            raise ValueError("a fault needs an integer status (100-599) or an action")
        action = "status"
    elif action not in FAULT_ACTIONS:
        raise ValueError("unknown action %r" % action)
    if "headers" in fault and not (isinstance(fault["headers"], dict) and all(
            isinstance(v, (str, int, float)) for v in fault["headers"].values())):
        raise ValueError("headers must be an object of strings")
    if action == "raw":
        if not isinstance(fault.get("status"), int):
            raise ValueError("raw needs an integer status")
        try:
            base64.b64decode(fault.get("body_b64", ""), validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ValueError("body_b64 is not base64: %s" % exc) from None
    if action == "delay" and not is_number(fault.get("ms"), minimum=0):
        raise ValueError("delay needs ms >= 0")
    if action == "json" and "body" not in fault:
        raise ValueError("json needs a body")
    fault["kind"] = action
    return fault


# --------------------------------------------------------------------------
# Multipart parsing
# --------------------------------------------------------------------------

class Part:
    """One multipart/form-data part."""

    def __init__(self, name, filename, content_type, data):
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.data = data

    def text(self):
        return self.data.decode("utf-8", "replace")


def header_params(content_type_value):
    msg = email.message.Message()
    msg["Content-Type"] = content_type_value
    return msg


SIMPLE_FORM_TYPE = re.compile(r"multipart/form-data; boundary=([A-Za-z0-9'()+_,./:=?-]{1,70})")
SIMPLE_DISPOSITION = re.compile(
    r'Content-Disposition: form-data; name="([A-Za-z0-9_.-]+)"(?:; filename="([^"\\%\x00-\x1f]*)")?'
    r'(?:\r\nContent-Type: ([A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+))?')


def multipart_boundary(content_type):
    """The boundary of a multipart/form-data Content-Type, or None."""
    if not content_type:
        return None
    simple = SIMPLE_FORM_TYPE.fullmatch(content_type)
    if simple:                          # what clients send; the email module agrees
        return simple.group(1).encode("latin-1")
    msg = header_params(content_type)
    if msg.get_content_type() != "multipart/form-data":
        return None
    boundary = msg.get_param("boundary")
    if not boundary or not isinstance(boundary, str):
        return None
    return boundary.encode("latin-1", "replace")


def parse_part(raw):
    """Split one part into headers and data; return a Part or None."""
    if raw.startswith(b"\r\n"):
        head, data = b"", raw[2:]
    else:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return None
        head, data = raw[:end], raw[end + 4:]
        simple = SIMPLE_DISPOSITION.fullmatch(head.decode("latin-1"))
        if simple and head.isascii():   # what clients send; the email module agrees
            return Part(simple.group(1), simple.group(2), simple.group(3), data)
    msg = email.message.Message()
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            key, _, value = line.partition(":")
            msg[key.strip()] = value.strip()
    if msg.get("Content-Disposition") is None:
        return None
    name = msg.get_param("name", header="content-disposition")
    filename = msg.get_filename()
    if isinstance(name, tuple):
        name = email.utils.collapse_rfc2231_value(name)
    if name is None:
        return None
    return Part(name, filename, msg.get("Content-Type"), data)


def parse_multipart(body, boundary):
    """Parse a multipart body (bytes); raise UploadError if malformed."""
    dash = b"--" + boundary
    if body.startswith(dash):
        pos = len(dash)
    else:
        first = body.find(b"\r\n" + dash)
        if first < 0:
            raise bad_request("Your request contains a malformed multipart/form-data body.")
        pos = first + 2 + len(dash)
    parts = []
    while True:
        if body[pos:pos + 2] == b"--":
            return parts
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise bad_request("Your request contains a malformed multipart/form-data body.")
        start = eol + 2
        end = body.find(b"\r\n" + dash, start)
        if end < 0:
            raise bad_request("Your request contains a malformed multipart/form-data body.")
        part = parse_part(body[start:end])
        if part is not None:
            parts.append(part)
        pos = end + 2 + len(dash)


# --------------------------------------------------------------------------
# Upload field handling
# --------------------------------------------------------------------------

def sanitize_file_name(name):
    return FILE_NAME_BAD_CHARS.sub("_", name)


def unique_name(name):
    suffix = "".join(secrets.choice(ALNUM) for _ in range(9))
    dot = name.rfind(".")
    if dot > 0:
        return "%s_%s%s" % (name[:dot], suffix, name[dot:])
    return "%s_%s" % (name, suffix)


def normalize_folder(folder):
    folder = "/" + (folder or "").strip() + "/"
    return re.sub(r"/{2,}", "/", folder)


def check_folder(fields):
    """The spec's folder characters (and ".", which the extension allows)."""
    folder = fields.get("folder")
    if folder is not None and not FOLDER_CHARS.fullmatch(folder):
        raise bad_request("Your request contains invalid folder parameter.")


def parse_booleans(fields):
    values = {}
    for key in BOOLEAN_FIELDS:
        if key not in fields:
            values[key] = BOOLEAN_DEFAULTS[key]
        elif fields[key] in ("true", "false"):
            values[key] = fields[key] == "true"
        else:
            raise bad_request("Your request contains invalid %s parameter. "
                              "It must be true or false." % key)
    return values


def parse_json_field(fields, key):
    if key not in fields:
        return None
    try:
        return json.loads(fields[key])
    except ValueError:
        raise bad_request("Your request contains invalid %s parameter. "
                          "It must be a valid JSON string." % key) from None


def check_transformation(value):
    invalid = bad_request("Invalid transformation parameter. The file could not be "
                          "uploaded because the transformation field is invalid.")
    if not isinstance(value, dict) or set(value) - {"pre", "post"}:
        raise invalid
    if "pre" in value and not isinstance(value["pre"], str):
        raise invalid
    if "post" in value:
        if not isinstance(value["post"], list):
            raise invalid
        for item in value["post"]:
            check_post_transformation(item, invalid)


def check_post_transformation(item, invalid):
    if not isinstance(item, dict) or item.get("type") not in POST_TRANSFORMATION_KEYS:
        raise invalid
    required, allowed = POST_TRANSFORMATION_KEYS[item["type"]]
    keys = set(item)
    if not required <= keys or keys - allowed:
        raise invalid
    if any(not isinstance(item[k], str) for k in keys):
        raise invalid
    if item["type"] == "abs" and item["protocol"] not in ("hls", "dash"):
        raise invalid


def parse_tags(fields):
    if "tags" not in fields:
        return None
    tags = [t.strip() for t in fields["tags"].split(",") if t.strip()]
    if any("%" in t for t in tags) or sum(len(t) for t in tags) > 500:
        raise bad_request("Your request contains invalid tags parameter.")
    return tags or None


def parse_response_fields(fields):
    if "responseFields" not in fields:
        return set()
    wanted = {f.strip() for f in fields["responseFields"].split(",") if f.strip()}
    unknown = wanted - RESPONSE_FIELDS
    if unknown:
        raise bad_request("Your request contains invalid responseFields parameter: %s."
                          % ", ".join(sorted(unknown)))
    return wanted


def check_custom_coordinates(fields):
    value = fields.get("customCoordinates")
    if value is not None and value != "" and \
            not re.fullmatch(r"\d+,\d+,\d+,\d+", value.replace(" ", "")):
        raise bad_request("Your request contains invalid customCoordinates parameter.")


def fetch_url(url, limit):
    """Download ``url`` as ImageKit would (8 s timeout); at most limit+1 bytes."""
    try:
        with urllib.request.urlopen(url, timeout=URL_FETCH_TIMEOUT) as resp:
            return resp.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise bad_request("Your request contains invalid file parameter. The file "
                          "could not be fetched from the URL: %s" % exc) from None


def decode_base64_file(value):
    value = value.strip()
    match = re.match(r"^data:[^,]*;base64,", value, re.IGNORECASE)
    if match:
        value = value[match.end():]
    value = re.sub(r"\s+", "", value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("Your request contains invalid file parameter. It must be "
                          "a binary file, a base64 string or a URL.") from None


def resolve_file(part, limit):
    """The file's bytes and how they were sent ("binary", "url", "base64")."""
    if part.filename is not None:
        return part.data, "binary"
    value = part.text().strip()
    if re.match(r"^https?://", value, re.IGNORECASE):
        return fetch_url(value, limit), "url"
    return decode_base64_file(value), "base64"


# --------------------------------------------------------------------------
# Image inspection
# --------------------------------------------------------------------------

def image_size(data):
    """(kind, width, height) for PNG/JPEG/GIF/WebP bytes; kind None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return ("png",) + struct.unpack(">II", data[16:24])
        return "png", None, None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) >= 10:
            return ("gif",) + struct.unpack("<HH", data[6:10])
        return "gif", None, None
    if data.startswith(b"\xff\xd8\xff"):
        return ("jpeg",) + jpeg_size(data)
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp",) + webp_size(data)
    return None, None, None


def jpeg_size(data):
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None, None
        marker = data[pos + 1]
        if marker == 0xFF:              # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):      # end of image / start of scan
            return None, None
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None, None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    return None, None


def webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None, None


def is_video(data):
    return data[4:8] == b"ftyp" or data.startswith(b"\x1a\x45\xdf\xa3")


# --------------------------------------------------------------------------
# Source images
# --------------------------------------------------------------------------

def png_chunk(kind, payload):
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def tiles_png(seed):
    """A bare valid 64x64 RGB PNG of 4x4 tiles, their colours drawn from ``seed``."""
    rng = random.Random(seed)
    palette = [rng.randbytes(3) for _ in range(16)]
    # 64 rows of 4 tiles (a filter byte first), 16 identical rows per tile row
    rows = b"".join((b"\x00" + b"".join(palette[ty * 4 + tx] * 16 for tx in range(4))) * 16
                    for ty in range(4))
    head = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    return head + png_chunk(b"IDAT", zlib.compress(rows, 9)), png_chunk(b"IEND", b"")


SOURCE_PICTURE = tiles_png("imagekit stand-in")


PADDED_CACHE_MAX = 4 * 1024 * 1024     # the padding of sources up to this size is kept


def padded_prefix(size):
    """The picture and its "raNd" chunk up to the seed's digest, for ``size``
    bytes in all, with the CRC so far (sizes up to PADDED_CACHE_MAX are kept)."""
    body, tail = SOURCE_PICTURE
    pad = size - len(body) - len(tail) - 12
    data = b"raNd" + bytes(pad - 32)
    return body + struct.pack(">I", pad) + data, zlib.crc32(data)


cached_padded_prefix = functools.lru_cache(maxsize=16)(padded_prefix)


def source_png(seed, size):
    """A valid 64x64 RGB PNG of ``size`` bytes, deterministic in ``seed``.

    The picture is 4x4 tiles of colours; a private ancillary chunk ("raNd")
    pads the file to exactly ``size`` bytes and ends with the SHA-256 of the
    seed, so that different seeds give different bytes (the rest of it is
    zeros: a source costs a copy, so that the stand-in serves downloads
    faster than a worker takes them).  When ``size`` leaves no room for that
    chunk, the tiles' colours are drawn from the seed instead and the bare
    picture is returned.
    """
    body, tail = SOURCE_PICTURE
    if size - len(body) - len(tail) - 12 < 32:
        body, tail = tiles_png(seed)
        return body + tail
    prefix, crc = (cached_padded_prefix if size <= PADDED_CACHE_MAX else padded_prefix)(size)
    digest = hashlib.sha256(str(seed).encode("utf-8")).digest()
    return b"".join((prefix, digest, struct.pack(">I", zlib.crc32(digest, crc)), tail))


def source_html(name):
    return ("<!DOCTYPE html>\n<html><head><title>%s</title></head>"
            "<body><p>This is not an image.</p></body></html>\n" % name).encode("utf-8")


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
#
# One thread, one asyncio event loop: a connection is a coroutine, so the
# waits (latency, "delay" faults) cost no thread and the GIL is never fought
# over.  The only blocking work, fetching a "file" given as a URL (which may
# point back at this server), runs in the loop's thread pool.

SERVER_VERSION = "ImageKitStandin/1.0"
MAX_HEAD = 65536                        # request line plus headers
MAX_HEADERS = 100
REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class ClientGone(Exception):
    """The client closed the connection before sending its whole body."""


class Headers(dict):
    """Request headers by lower-case name (the first of repeated ones)."""

    def get(self, name, default=None):
        return super().get(name.lower(), default)


def http_date(_cache=[0, b""]):
    now = int(time.time())
    if _cache[0] != now:
        _cache[0] = now
        _cache[1] = email.utils.formatdate(now, usegmt=True).encode("ascii")
    return _cache[1]


class Handler:
    """One request on one connection: parsed head in, buffered answer out."""

    def __init__(self, server, reader, writer, method, path, version, headers):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.command = method
        self.path = path
        self.request_version = version
        self.headers = headers
        self.out = []
        connection = headers.get("Connection", "").lower()
        if version == "HTTP/1.0":
            self.close_connection = connection != "keep-alive"
        else:
            self.close_connection = connection == "close"

    # -- plumbing ------------------------------------------------------------

    @property
    def state(self):
        return self.server.state

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s - - [%s] %s\n" % (
                self.writer.get_extra_info("peername", ("-",))[0],
                time.strftime("%d/%b/%Y %H:%M:%S"), fmt % args))

    def send_response_only(self, status, reason=None):
        self.log_message('"%s %s %s" %s', self.command, self.path, self.request_version, status)
        self.out.append(b"HTTP/1.1 %d %s\r\n" % (
            status, (reason or REASONS.get(status, "")).encode("latin-1", "replace")))

    def send_response(self, status, reason=None):
        self.send_response_only(status, reason)
        self.out.append(b"Server: %s\r\nDate: %s\r\n" % (SERVER_VERSION.encode(), http_date()))

    def send_header(self, key, value):
        self.out.append(b"%s: %s\r\n" % (key.encode("latin-1"), str(value).encode("latin-1")))

    def end_headers(self):
        self.out.append(b"\r\n")

    def write(self, data):
        self.out.append(data)

    def flush(self):
        if self.out:
            self.writer.write(b"".join(self.out))
            self.out = []

    async def read_body(self):
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return await self.read_chunked()
            length = self.headers.get("Content-Length")
            if length is None:
                return b""
            try:
                length = int(length)
                if length < 0:
                    raise ValueError
            except ValueError:
                raise UploadError(400, "Invalid Content-Length header.") from None
            return await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            raise ClientGone() from None

    async def read_chunked(self):
        out = bytearray()
        while True:
            line = await self.reader.readline()
            if not line:
                raise ClientGone()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise UploadError(400, "Invalid chunked encoding.") from None
            if size == 0:
                while await self.reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += await self.reader.readexactly(size)
            await self.reader.readline()

    def send_bytes(self, status, body, content_type=JSON_TYPE, headers=None,
                   request_id=True, head_only=False):
        """Send a complete answer; ``headers`` override the defaults."""
        merged = {}
        if request_id:
            merged["x-ik-requestid"] = ("x-ik-requestId", str(uuid.uuid4()))
        if content_type:
            merged["content-type"] = ("Content-Type", content_type)
        for key, value in (headers or {}).items():
            merged[key.lower()] = (key, str(value))
        merged.setdefault("content-length", ("Content-Length", str(len(body))))
        if self.close_connection:
            merged["connection"] = ("Connection", "close")
        self.send_response(status)
        for key, value in merged.values():
            self.send_header(key, value)
        self.end_headers()
        if not head_only:
            self.write(body)
        self.flush()

    def send_json(self, status, obj, headers=None):
        self.send_bytes(status, json_bytes(obj), headers=headers)

    def send_error(self, code, message=None):
        """Protocol-level errors (bad request line etc.) as JSON too."""
        self.close_connection = True
        self.send_json(code, {"message": message or REASONS.get(code, "Error"), "help": HELP})

    def route_path(self):
        return self.path.split("?", 1)[0]

    # -- dispatch --------------------------------------------------------------

    async def dispatch(self):
        method = self.command
        if (self.request_version == "HTTP/1.1"
                and self.headers.get("Expect", "").lower() == "100-continue"):
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.writer.drain()
        try:
            body = await self.read_body()
        except ClientGone:
            self.close_connection = True
            return
        except UploadError as exc:
            self.close_connection = True
            self.send_json(exc.status, error_body(exc.message))
            return
        path = self.route_path()
        if path == UPLOAD_PATH and method == "POST":
            await self.handle_upload_request(body)
        elif path.startswith("/source/") and method in ("GET", "HEAD"):
            await self.handle_source(path[len("/source/"):], method == "HEAD")
        elif path.startswith("/_standin/"):
            self.handle_control(method, path[len("/_standin/"):], body)
        else:
            self.send_json(404, {"message": "Not Found", "help": HELP})

    def handle_control(self, method, name, body):
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as exc:
            self.send_json(400, {"error": "invalid JSON: %s" % exc})
            return
        try:
            if method == "POST" and name == "reset":
                self.state.reset()
                self.send_json(200, {"ok": True})
            elif method == "POST" and name == "config":
                self.state.configure(validate_config(data or {}))
                self.send_json(200, dict(self.state.settings(), ok=True))
            elif method == "POST" and name == "faults":
                items = data if isinstance(data, list) else [data]
                faults = [validate_fault(f) for f in items]
                pending = self.state.add_faults(faults)
                self.send_json(200, {"ok": True, "added": len(faults), "queued": pending})
            elif method == "GET" and name == "faults":
                self.send_json(200, self.state.pending_faults())
            elif method == "DELETE" and name == "faults":
                self.send_json(200, {"ok": True, "cleared": self.state.clear_faults()})
            elif method == "GET" and name == "stats":
                query = urllib.parse.parse_qs(self.path.partition("?")[2])
                brief = query.get("brief", ["0"])[0] not in ("0", "")
                self.send_json(200, self.state.snapshot(brief))
            else:
                self.send_json(404, {"error": "unknown control endpoint %s %s" % (method, name)})
        except ValueError as exc:
            self.send_json(400, {"error": str(exc)})

    # -- source files --------------------------------------------------------

    async def handle_source(self, name, head_only):
        if head_only:
            await self.send_source(name, True)
            return
        arrived = time.monotonic()
        self.state.download_started()
        status = None
        try:
            await self.server.latency_sleep(arrived)
            status = await self.send_source(name, False)
        finally:
            self.state.download_finished(status)

    async def send_hostile_source(self, name):
        """Sources that try to hurt a downloader; None if name is not one."""
        if name == "redirect":
            query = urllib.parse.parse_qs(self.path.partition("?")[2])
            target = query.get("to", ["/source/missing"])[0]
            self.send_bytes(302, b"", "text/plain", headers={"Location": target})
            return 302
        if name == "loop.png":
            self.send_bytes(302, b"", "text/plain",
                            headers={"Location": "/source/loop.png"})
            return 302
        if name == "empty.png":
            self.send_bytes(200, b"", "image/png")
            return 200
        if name == "endless.png":
            # a chunked body that never ends (for 60 s at the most)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.flush()
            chunk = b"\x89PNG\r\n\x1a\n" + bytes(65528)
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline:
                    self.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await self.writer.drain()
            except OSError:
                pass
            self.close_connection = True
            return 200
        return None

    async def send_source(self, name, head_only):
        hostile = None if head_only else await self.send_hostile_source(name)
        if hostile is not None:
            return hostile
        match = SOURCE_IMAGE.match(name)
        if name.startswith("missing") or not (match or name.endswith(".html")):
            self.send_json(404, {"message": "Not Found", "help": HELP})
            return 404
        if match:
            data = source_png(match.group(1), int(match.group(2)))
            self.send_bytes(200, data, "image/png", head_only=head_only)
        else:
            self.send_bytes(200, source_html(name), "text/html; charset=utf-8",
                            head_only=head_only)
        return 200

    # -- upload ----------------------------------------------------------------

    async def handle_upload_request(self, body):
        arrived = time.monotonic()
        fault = self.state.upload_started()
        status = None
        try:
            # The request is checked while the latency runs (the file is
            # stored after it): what is left to do at the deadline is small,
            # so that answers due at once are not late (scenario 1).
            checked = None if fault is not None else await self.check_upload_request(body)
            await self.server.latency_sleep(arrived)
            if fault is not None and fault["kind"] == "delay":
                await asyncio.sleep(fault["ms"] / 1000.0)
                fault = None
            if fault is None:
                status = await self.answer_upload(body, checked)
            else:
                status = await self.apply_fault(fault, body)
        finally:
            self.state.upload_finished(status)

    async def check_upload_request(self, body):
        """check_upload() of the request, or the UploadError to answer."""
        try:
            return await self.check_request(body)
        except UploadError as exc:
            return exc

    async def answer_upload(self, body, checked=None):
        """Handle an upload for real; return the status sent."""
        try:
            if checked is None:
                checked = await self.check_request(body)
            elif isinstance(checked, UploadError):
                raise checked
            result = store_upload(self.state, checked)
        except UploadError as exc:
            self.send_json(exc.status, error_body(exc.message))
            return exc.status
        self.send_json(200, result)
        return 200

    async def perform_upload(self, body):
        return store_upload(self.state, await self.check_request(body))

    async def check_request(self, body):
        state = self.state
        settings = state.settings()
        auth_present = check_auth(self.headers.get("Authorization"),
                                  settings["private_key"], state)
        boundary = multipart_boundary(self.headers.get("Content-Type"))
        if boundary is None:
            raise bad_request("Your request contains invalid Content-Type. "
                              "The upload API accepts multipart/form-data only.")
        parts = parse_multipart(body, boundary)
        if any(p.name == "file" and p.filename is None for p in parts):
            # the file may be a URL to fetch (perhaps from this very server)
            return await asyncio.get_running_loop().run_in_executor(
                None, check_upload, settings, parts, auth_present)
        return check_upload(settings, parts, auth_present)

    async def apply_fault(self, fault, body):
        """Answer according to a fault; return the status sent (None: none)."""
        kind = fault["kind"]
        if kind == "drop":
            if fault.get("process"):
                await self.perform_upload_quietly(body)
            self.close_connection = True
            return None
        if kind == "truncate":
            answer = await self.perform_upload_quietly(body) if fault.get("process") else None
            self.send_truncated(answer or fake_upload_answer(self.state))
            return 200
        if kind == "garbage":
            self.send_bytes(200, b"<html>not json</html>", "text/html")
            return 200
        if kind == "json":
            status = fault.get("status", 200)
            self.send_bytes(status, json_bytes(fault["body"]), headers=fault.get("headers"))
            return status
        if kind == "raw":
            self.send_raw(fault)
            return fault["status"]
        return self.send_status_fault(fault)

    async def perform_upload_quietly(self, body):
        try:
            return await self.perform_upload(body)
        except UploadError:
            return None

    def send_truncated(self, answer):
        body = json_bytes(answer)
        self.close_connection = True
        self.send_response(200)
        self.send_header("x-ik-requestId", str(uuid.uuid4()))
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.write(body[:len(body) // 2])
        self.flush()

    def send_raw(self, fault):
        body = base64.b64decode(fault.get("body_b64", ""))
        headers = {k.lower(): (k, str(v)) for k, v in fault.get("headers", {}).items()}
        headers.setdefault("content-length", ("Content-Length", str(len(body))))
        if headers.get("connection", ("", ""))[1].lower() == "close":
            self.close_connection = True
        self.send_response_only(fault["status"], fault.get("reason"))
        for key, value in headers.values():
            self.send_header(key, value)
        self.end_headers()
        self.write(body)
        self.flush()

    def send_status_fault(self, fault):
        status = fault["status"]
        headers = {}
        if status == 429:
            headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Reset": "1000",
                       "X-RateLimit-Interval": "1000"}
        lower = {k.lower() for k in fault.get("headers", {})}
        headers = {k: v for k, v in headers.items() if k.lower() not in lower}
        headers.update(fault.get("headers", {}))
        body = fault.get("body")
        if body is None:
            reason = REASONS.get(status, "Error")
            body = {"message": reason, "help": ""}
        data = body.encode("utf-8") if isinstance(body, str) else json_bytes(body)
        self.send_bytes(status, data, headers=headers)
        return status


class Timer:
    """Sleeps that end on time: a thread wakes each at its deadline.

    asyncio's own timers wake up to a millisecond late (epoll's resolution)
    and later still while the loop is busy; the latency-bound benchmark
    measures against latency_ms exactly (scenario 1).
    """

    def __init__(self, loop):
        self.loop = loop
        self.cond = threading.Condition()
        self.heap = []                  # (deadline, sequence, future)
        self.sequence = 0
        threading.Thread(target=self.run, name="stand-in timer", daemon=True).start()

    def run(self):
        with self.cond:
            while True:
                delay = self.heap[0][0] - time.monotonic() if self.heap else None
                if delay is None or delay > 0:
                    self.cond.wait(delay)
                    continue
                future = heapq.heappop(self.heap)[2]
                self.loop.call_soon_threadsafe(Timer.wake, future)

    @staticmethod
    def wake(future):
        if not future.done():           # not cancelled (the client left)
            future.set_result(None)

    def sleep_until(self, deadline):
        """A future done at ``deadline`` (time.monotonic())."""
        future = self.loop.create_future()
        with self.cond:
            self.sequence += 1
            heapq.heappush(self.heap, (deadline, self.sequence, future))
            self.cond.notify()
        return future


class Server:
    """What every connection shares: the state, whether to log requests, and
    the timer for latency_ms."""

    def __init__(self, state, verbose, timer, trace=None):
        self.state = state
        self.verbose = verbose
        self.timer = timer
        self.trace = trace              # --trace: a line per request

    async def latency_sleep(self, since):
        """Wait until latency_ms after ``since`` (time.monotonic())."""
        ms = self.state.settings()["latency_ms"]
        if ms:
            await self.timer.sleep_until(since + ms / 1000.0)


def parse_head(head):
    """(method, path, version, Headers) from a request head, or (status, message)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:
        return 400, "Bad request syntax"
    lines = text.split("\r\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return 400, "Bad request syntax (%r)" % lines[0]
    method, path, version = words
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return 505, "Invalid HTTP version (%s)" % version
    headers = Headers()
    count = 0
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return 400, "Bad header line (%r)" % line
        count += 1
        if count > MAX_HEADERS:
            return 431, "Too many headers"
        headers.setdefault(name.lower(), value.strip())
    return method, path, version, headers


async def serve_connection(server, reader, writer):
    """Answer the requests of one connection until it closes."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = writer.get_extra_info("peername", ("-", 0))
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return                  # the client closed the connection
            except asyncio.LimitOverrunError:
                head = None
            parsed = (431, "Request header fields too large") if head is None \
                else parse_head(head[:-4])
            if len(parsed) == 2:
                handler = Handler(server, reader, writer, "-", "-", "HTTP/1.1", Headers())
                handler.send_error(*parsed)
                await writer.drain()
                return
            handler = Handler(server, reader, writer, *parsed)
            arrived = time.time()
            await handler.dispatch()
            handler.flush()
            await writer.drain()
            if server.trace is not None:
                server.trace.write("%s:%d %.6f %.6f %s %s\n" % (
                    client[0], client[1], arrived, time.time(), parsed[0],
                    parsed[1].split("?", 1)[0]))
            if handler.close_connection:
                return
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(args, state, sock):
    """Answer connections on the listening socket until SIGTERM or SIGINT."""
    trace = open(args.trace, "a", buffering=1) if args.trace else None
    server = Server(state, args.verbose, Timer(asyncio.get_running_loop()), trace)
    listener = await asyncio.start_server(
        lambda r, w: serve_connection(server, r, w), sock=sock, limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    listener.close()


def check_auth(header, private_key, state):
    """Check HTTP Basic auth; raise 401/403; return True (auth is present)."""
    user = basic_auth_user(header, private_key)
    if not user:
        state.auth_failed()
        raise UploadError(401, "Your request does not contain private API key.")
    if not hmac.compare_digest(user.encode("utf-8"), private_key.encode("utf-8")):
        state.auth_failed()
        raise UploadError(403, "Your account cannot be authenticated.")
    return True


def basic_auth_user(header, private_key):
    """The user part of a Basic Authorization header, or None if unusable.

    Besides base64("key:password") the spec allows the raw key after "Basic".
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is not None and ":" in decoded:
        return decoded.split(":", 1)[0]
    if hmac.compare_digest(credentials.encode("utf-8"), private_key.encode("utf-8")):
        return credentials
    return None


def check_upload(settings, parts, auth_present):
    """Validate the parsed multipart request: what store_upload() needs."""
    fields = {}
    file_part = None
    for part in parts:
        if part.name == "file":
            if file_part is None:
                file_part = part
        else:
            fields[part.name] = part.text()
    if auth_present and any(k in fields for k in CLIENT_AUTH_FIELDS):
        raise bad_request("Your request contains both signature and basic auth parameter. "
                          "Use only one method, you might be exposing your private API key.")
    if file_part is None:
        raise bad_request("Missing file parameter for upload")
    if not fields.get("fileName"):
        raise bad_request("Missing fileName parameter for upload")
    flags = parse_booleans(fields)
    transformation = parse_json_field(fields, "transformation")
    if "transformation" in fields:
        check_transformation(transformation)
    custom_metadata = parse_json_field(fields, "customMetadata")
    if "customMetadata" in fields and not isinstance(custom_metadata, dict):
        raise bad_request("Your request contains invalid customMetadata parameter. "
                          "It must be a JSON object.")
    extensions = parse_json_field(fields, "extensions")
    if "extensions" in fields and not (isinstance(extensions, list) and all(
            isinstance(e, dict) and isinstance(e.get("name"), str) for e in extensions)):
        raise bad_request("Your request contains invalid extensions parameter.")
    tags = parse_tags(fields)
    wanted = parse_response_fields(fields)
    check_custom_coordinates(fields)
    check_folder(fields)

    max_size = settings["max_file_size"]
    data, source = resolve_file(file_part, max_size)
    if not data:
        raise bad_request("Your request contains invalid file parameter. The file is empty.")
    if len(data) > max_size:
        raise bad_request("File size exceeds the maximum allowed limit of %d bytes. "
                          "Your request contains invalid file parameter. "
                          "The file size exceeds limits." % max_size)
    kind, width, height = image_size(data)
    if transformation and (transformation.get("pre") or transformation.get("post")) \
            and kind is None and not is_video(data):
        raise bad_request("The file could not be uploaded because transformations are "
                          "supported only for image and video files.")

    sha256 = hashlib.sha256(data).hexdigest()
    record = {
        "fileName": fields["fileName"],
        "folder": fields.get("folder"),
        "sha256": sha256,
        "size": len(data),
        "useUniqueFileName": fields.get("useUniqueFileName"),
        "transformation": fields.get("transformation"),
        "fields": dict(fields),
        "file_source": source,
        "file_part_filename": file_part.filename,
        "file_part_content_type": file_part.content_type,
        "width": width,
        "height": height,
    }
    return (fields, flags, tags, wanted, custom_metadata, extensions, data, kind, width,
            height, sha256, record)


def store_upload(state, checked):
    """Store a file check_upload() took, and build the answer."""
    (fields, flags, tags, wanted, custom_metadata, extensions, data, kind, width, height,
     sha256, record) = checked
    name, path, meta = state.store(normalize_folder(fields.get("folder", "/")),
                                   sanitize_file_name(fields["fileName"]),
                                   flags["useUniqueFileName"], flags["overwriteFile"],
                                   sha256, record)
    answer = {
        "fileId": meta["fileId"],
        "name": name,
        "size": len(data),
        "versionInfo": {"id": meta["versionId"], "name": "Version %d" % meta["version"]},
        "filePath": path,
        "url": state.url_endpoint + path,
        "fileType": "image" if kind else "non-image",
    }
    if width is not None and height is not None:
        answer["height"] = height
        answer["width"] = width
    answer.update({
        "thumbnailUrl": state.url_endpoint + "/tr:n-ik_ml_thumbnail" + path,
        "AITags": None,
        "isPrivateFile": flags["isPrivateFile"],
        "tags": tags,
        "description": fields.get("description"),
    })
    if custom_metadata is not None or "customMetadata" in wanted:
        answer["customMetadata"] = custom_metadata or {}
    if "isPublished" in wanted:
        answer["isPublished"] = flags["isPublished"]
    if "customCoordinates" in wanted:
        answer["customCoordinates"] = fields.get("customCoordinates") or None
    if extensions:
        answer["extensionStatus"] = {e["name"]: "success" for e in extensions
                                     if e["name"] in EXTENSION_NAMES}
    return answer


def fake_upload_answer(state):
    """A plausible Upload answer for faults that need one without an upload."""
    file_id = secrets.token_hex(12)
    name = unique_name("truncated.png")
    return {
        "fileId": file_id, "name": name, "size": 1234,
        "versionInfo": {"id": file_id, "name": "Version 1"},
        "filePath": "/" + name, "url": state.url_endpoint + "/" + name,
        "fileType": "image", "height": 64, "width": 64,
        "thumbnailUrl": state.url_endpoint + "/tr:n-ik_ml_thumbnail/" + name,
        "AITags": None, "isPrivateFile": False, "tags": None, "description": None,
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description="Local stand-in for ImageKit's upload API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--private-key", required=True)
    parser.add_argument("--url-endpoint", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--max-file-size", type=int, default=26214400)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--state-file", help="keep the file store in this file "
                        "across restarts (JSON lines)")
    parser.add_argument("--trace", help="append a line per request to this file: "
                        "client, arrival and end (Unix time), method, path")
    parser.add_argument("--processes", type=int, default=1,
                        help="answer requests in this many processes (the benchmark's "
                        "ceiling); the state is shared")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    return args


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def listen(host, port, count):
    """``count`` listening sockets on one port (SO_REUSEPORT: the kernel spreads
    the connections among them)."""
    socks = [socket.create_server((host, port), backlog=256, reuse_port=count > 1)]
    port = socks[0].getsockname()[1]
    while len(socks) < count:
        socks.append(socket.create_server((host, port), backlog=256, reuse_port=True))
    return socks, port


def start_helpers(socks, state):
    """Fork a process for each socket but the first; return the socket this
    process serves and the helpers' pids (none in a helper)."""
    pids = []
    for index, sock in enumerate(socks[1:], 1):
        pid = os.fork()
        if pid == 0:
            state.serve_as(index)
            # Die with the first process, even when it is killed with SIGKILL.
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
            for other in socks:
                if other is not sock:
                    other.close()
            return sock, []
        pids.append(pid)
    for sock in socks[1:]:
        sock.close()
    return socks[0], pids


def main(argv=None):
    args = parse_args(argv)
    state_args = (args.private_key, args.latency_ms, args.max_file_size, args.url_endpoint,
                  args.state_file)
    state = SharedState(args.processes, *state_args) if args.processes > 1 \
        else State(*state_args)
    socks, port = listen(args.host, args.port, args.processes)
    sock, helpers = start_helpers(socks, state)
    if sock is socks[0]:
        write_port_file(args.port_file, port)
        print("imagekit stand-in listening on http://%s:%d" % (args.host, port), flush=True)
    try:
        asyncio.run(serve(args, state, sock))
    finally:
        for pid in helpers:
            os.kill(pid, signal.SIGTERM)
        for pid in helpers:
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
