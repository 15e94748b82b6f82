#!/usr/bin/env python3
"""The chaos soak's driver: drains rows through the pipeline while it injects
faults at random, then asserts that nothing was lost and prints a table.

Run it through test/chaos/soak.sh (which installs, builds, makes the scratch
directory and runs this as the postgres user); by hand:

    python3 soak.py --work DIR [--pg-bin DIR] [--rows N] [--seed S] [--short]
                    [--span SECONDS] [--markdown FILE]

What it does, in order:

1. starts the stand-in ImageKit (test/imagekit_standin.py, with --state-file
   so that its store survives being killed) and a throwaway cluster in DIR:
   imagekit_ext preloaded, two workers, a random private key, short retry
   delays; creates soak_images (id, url) and attaches it;
2. the chaos phase, SPAN seconds long: inserts the rows in batches spread over
   the span (COPY, with explicit ids, each batch idempotent), the sources being
   the stand-in's /source/img-<seed>.<i>-<bytes>.png over rows/4 distinct
   images (so most content is deduplicated) and 1 % missing-*.png (404, a
   permanent fallback); at random times drawn from the seeded PRNG it
   - SIGKILLs a worker (the postmaster then restarts every backend),
   - restarts the cluster with pg_ctl restart -m immediate,
   - queues HTTP faults for a share of the next uploads (500, 503, 429 with
     Retry-After or X-RateLimit-Reset, dropped connections, dropped after the
     upload was stored, truncated answers, with or without storing, answers
     slower than imagekit.timeout),
   - kills the stand-in (SIGKILL) and starts it again on the same port 20 s
     later (an outage: sources and uploads both unreachable),
   - freezes the stand-in (SIGSTOP) for a few seconds (requests time out);
   the process faults fall in the first 55 % of the span, so that the last
   worker lifetime is long enough to judge its memory;
3. waits until the queue is drained (every job done or fallback);
4. clears the faults, calls imagekit.retry_fallbacks() and waits again;
5. checks and prints the table; exits 1 if any check failed.

The worker's memory is sampled from /proc/<pid>/status (RssAnon: the
process's private heap; shared buffers are RssShmem and left out) every few
seconds, per process: a worker killed or restarted is a new lifetime.
"""

import argparse
import datetime
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
URL_ENDPOINT = "https://ik.imagekit.io/demo"
FOLDER = "/coffee-images/"

PROFILES = {
    # rows, batches, span (s), stand-in latency (ms), fault counts, outage and
    # freeze lengths (s), memory sampling period (s), least lifetime judged (s)
    "long": dict(rows=20000, batches=40, span=600, latency_ms=100,
                 faults=dict(sigkill=6, restart=5, outage=2, freeze=2, http=25),
                 outage_s=20, freeze_s=8, sample_s=3, mem_min_span=120,
                 drain_timeout=1500),
    "short": dict(rows=2000, batches=10, span=60, latency_ms=100,
                  faults=dict(sigkill=2, restart=1, outage=1, freeze=1, http=5),
                  outage_s=10, freeze_s=5, sample_s=1, mem_min_span=30,
                  drain_timeout=300),
}
MISSING_SHARE = 0.01
# memory: a lifetime's RssAnon may grow by this much from the median of its
# first third of samples to the median of its last third
MEM_LIMIT_KB = 2048
MEM_LIMIT_SHARE = 0.20
# the HTTP fault kinds a burst draws from ("mixed": each faulty request any kind)
HTTP_KINDS = ["500", "503", "429-retry-after", "429-ratelimit-reset", "drop",
              "drop-stored", "truncate", "truncate-stored", "timeout", "mixed"]


class Fail(Exception):
    """The soak cannot go on (a wait timed out, set-up failed)."""


class Broken(Fail):
    """Something that must not happen happened; never retried."""


def now():
    return time.monotonic()


def say(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------

class Cluster:
    def __init__(self, work, pg_bin, port):
        self.work = work
        self.pg_bin = pg_bin
        self.port = port
        self.data = os.path.join(work, "data")
        self.log = os.path.join(work, "server.log")

    def bin(self, name):
        return os.path.join(self.pg_bin, name)

    def init(self, conf):
        subprocess.run([self.bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = ''\n")
            f.write("unix_socket_directories = '%s'\n" % self.work)
            f.write("port = %d\n" % self.port)
            for line in conf:
                f.write(line + "\n")

    def pg_ctl(self, *args, timeout=120):
        res = subprocess.run([self.bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                              "-t", "90"] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise Fail("pg_ctl %s failed: %s" % (" ".join(args), res.stdout.strip()))

    def start(self):
        self.pg_ctl("start")

    def restart_immediate(self):
        self.pg_ctl("-m", "immediate", "restart")

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            subprocess.run([self.bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql(self, sql, stdin=None, timeout=120):
        return subprocess.run([self.bin("psql"), "-X", "-q", "-At", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1", "-h", self.work, "-p", str(self.port),
                               "-d", "postgres", "-c", sql],
                              input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)

    def q(self, sql, stdin=None, wait=120):
        """Run sql; retry while the server is down or restarting, for up to wait s."""
        deadline = now() + wait
        while True:
            try:
                res = self.psql(sql, stdin)
                if res.returncode == 0:
                    return res.stdout.rstrip("\n")
                err = res.stderr.strip()
                if res.returncode != 2:     # 2: no connection, or it was lost
                    raise Fail("query failed: %s\n  %s" % (sql[:200], err))
            except subprocess.TimeoutExpired:
                err = "psql timed out"
            if now() > deadline:
                raise Fail("query failed for %d s: %s\n  %s" % (wait, sql[:200], err))
            time.sleep(1)

    def rows(self, sql, wait=120):
        out = self.q(sql, wait=wait)
        return [line.split("\t") for line in out.split("\n")] if out else []

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def worker_pids(self):
        """The imagekit workers among the postmaster's children, from /proc."""
        pm = self.postmaster_pid()
        if pm is None:
            return []
        try:
            with open("/proc/%d/task/%d/children" % (pm, pm)) as f:
                children = [int(p) for p in f.read().split()]
        except OSError:
            return []
        pids = []
        for pid in children:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if b"imagekit worker" in f.read():
                        pids.append(pid)
            except OSError:
                pass
        return sorted(pids)


def read_memory(pid):
    """(VmRSS, RssAnon) of pid in kB, or None if it is gone."""
    values = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None
    if len(values) != 2:
        return None
    return values["VmRSS"], values["RssAnon"]


# --------------------------------------------------------------------------
# The stand-in ImageKit
# --------------------------------------------------------------------------

class Standin:
    def __init__(self, work, key, latency_ms):
        self.work = work
        self.key = key
        self.latency_ms = latency_ms
        self.script = os.path.join(HERE, "imagekit_standin.py")
        if not os.path.exists(self.script):
            self.script = os.path.join(HERE, "..", "imagekit_standin.py")
        self.state_file = os.path.join(work, "standin.state")
        self.port = 0
        self.proc = None
        self.frozen = False
        self.totals = {}                # counters of the processes killed so far

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        port_file = os.path.join(self.work, "standin.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        log = open(os.path.join(self.work, "standin.log"), "a")
        self.proc = subprocess.Popen(
            [sys.executable, self.script, "--host", "127.0.0.1", "--port", str(self.port),
             "--private-key", self.key, "--url-endpoint", URL_ENDPOINT,
             "--port-file", port_file, "--state-file", self.state_file,
             "--latency-ms", str(self.latency_ms)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        with open(os.path.join(self.work, "standin.pid"), "w") as f:
            f.write("%d\n" % self.proc.pid)
        deadline = now() + 15
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or now() > deadline:
                raise Fail("the stand-in did not start (see standin.log)")
            time.sleep(0.1)
        with open(port_file) as f:
            self.port = int(f.read())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL it, keeping its counters (read just before)."""
        try:
            self.accumulate(self.call("GET", "/_standin/stats?brief=1"))
        except (OSError, ValueError):
            pass
        self.proc.kill()
        self.proc.wait()

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self):
        if self.alive():
            if self.frozen:
                self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def accumulate(self, snap):
        for key in ("requests", "uploads", "dropped", "faults_consumed", "downloads"):
            self.totals[key] = self.totals.get(key, 0) + snap.get(key, 0)
        for group in ("statuses", "download_statuses"):
            acc = self.totals.setdefault(group, {})
            for status, n in snap.get(group, {}).items():
                acc[status] = acc.get(status, 0) + n

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return json.loads(res.read())


def fault_unit(kind, rng):
    """One faulty upload answer of the given kind (a stand-in fault object)."""
    if kind == "mixed":
        kind = rng.choice(HTTP_KINDS[:-1])
    if kind in ("500", "503"):
        return kind, {"status": int(kind)}
    if kind == "429-retry-after":
        return kind, {"status": 429, "headers": {"Retry-After": str(rng.randint(1, 2))}}
    if kind == "429-ratelimit-reset":
        return kind, {"status": 429, "headers": {"X-RateLimit-Reset": str(rng.randint(300, 1500))}}
    if kind == "drop":
        return kind, {"action": "drop"}
    if kind == "drop-stored":
        return kind, {"action": "drop", "process": True}
    if kind == "truncate":
        return kind, {"action": "truncate"}
    if kind == "truncate-stored":
        return kind, {"action": "truncate", "process": True}
    if kind == "timeout":
        # longer than imagekit.timeout (5 s): the worker gives up, the upload
        # is then stored all the same
        return kind, {"action": "delay", "ms": 6000}
    raise ValueError(kind)


def http_burst(kind, rng):
    """The fault list for the next 10..60 uploads, a share of them faulty."""
    n = rng.randint(10, 60)
    share = rng.uniform(0.2, 0.8)
    if kind == "timeout":
        n = rng.randint(3, 10)          # each one holds a request for 6 s
    faults, counts = [], {}
    for _ in range(n):
        if rng.random() < share:
            name, fault = fault_unit(kind, rng)
            counts[name] = counts.get(name, 0) + 1
        else:
            fault = {"action": "delay", "ms": 0}   # answered normally
        if faults and faults[-1] == fault:
            faults[-1]["count"] = faults[-1].get("count", 1) + 1
            continue
        faults.append(dict(fault))
    return faults, counts


# --------------------------------------------------------------------------
# The plan: rows and faults, all from the seed
# --------------------------------------------------------------------------

def md_text(text):
    return text.replace("<", "&lt;").replace("|", "\\|")


def slope(points):
    """Least-squares slope of [(x, y)]."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0


def make_rows(rng, nrows, seed, base_url):
    """[(id, url, image index or None)] and {image index: (name, bytes)}."""
    nimages = max(1, nrows // 4)
    images = {}
    rows = []
    for rid in range(1, nrows + 1):
        if rng.random() < MISSING_SHARE:
            rows.append((rid, "%s/source/missing-%s-%d.png" % (base_url, seed, rid), None))
            continue
        i = rng.randrange(nimages)
        if i not in images:
            images[i] = ("%s.%d" % (seed, i), rng.randint(1200, 4000))
        name, size = images[i]
        rows.append((rid, "%s/source/img-%s-%d.png" % (base_url, name, size), i))
    return rows, images


def make_fault_plan(rng, prof, span):
    """Sorted [(t, kind, arg)] over the span."""
    counts = prof["faults"]
    plan = []
    for kind in ("sigkill", "restart"):
        for _ in range(counts[kind]):
            plan.append((rng.uniform(0.05, 0.55) * span, kind, None))
    http_kinds = (["mixed"] * counts["http"] if counts["http"] < len(HTTP_KINDS)
                  else [HTTP_KINDS[i % len(HTTP_KINDS)] for i in range(counts["http"])])
    rng.shuffle(http_kinds)
    for kind in http_kinds:
        plan.append((rng.uniform(0.05, 0.95) * span, "http", kind))
    for _ in range(counts["outage"]):
        plan.append((rng.uniform(0.05, 0.80) * span, "outage", prof["outage_s"]))
    for _ in range(counts["freeze"]):
        plan.append((rng.uniform(0.05, 0.90) * span, "freeze", prof["freeze_s"]))
    plan.sort(key=lambda e: e[0])
    return plan


# --------------------------------------------------------------------------
# The soak
# --------------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.prof = dict(PROFILES["short" if args.short else "long"])
        if args.rows:
            self.prof["rows"] = args.rows
        if args.span:
            self.prof["span"] = args.span
        self.seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
        self.rng = random.Random(self.seed)
        self.work = args.work
        self.key = "private_soak_" + os.urandom(12).hex()
        self.standin = Standin(self.work, self.key, self.prof["latency_ms"])
        self.cluster = Cluster(self.work, args.pg_bin, 40000 + self.rng.randrange(20000))
        self.events = open(os.path.join(self.work, "events.log"), "a")
        self.t0 = now()
        self.samples = {}               # pid -> [(t, rss kB, anon kB)]
        self.injected = {}              # fault kind -> count
        self.http_units = {}            # HTTP fault unit kind -> count
        self.phase_times = {}
        self.results = []               # (check, expected, actual, ok)
        self.notes = []
        self.last_sample = -1e9

    def elapsed(self):
        return now() - self.t0

    def event(self, msg):
        line = "[%6.1fs] %s" % (self.elapsed(), msg)
        say(line)
        self.events.write(line + "\n")
        self.events.flush()

    # -- set-up ----------------------------------------------------------------

    def setup(self):
        self.standin.start()
        self.event("stand-in on port %d (state file %s)" % (self.standin.port,
                                                             self.standin.state_file))
        c = self.cluster
        c.init([
            "shared_preload_libraries = 'imagekit_ext'",
            "cluster_name = 'soak'",
            "max_connections = 40",
            "shared_buffers = 64MB",
            "restart_after_crash = on",
            "log_line_prefix = '%m [%p] %b '",
            "log_min_messages = debug1",
            "log_statement = 'ddl'",
            "imagekit.private_key = '%s'" % self.key,
            "imagekit.upload_endpoint = '%s/api/v1/files/upload'" % self.standin.base,
            "imagekit.url_endpoint = '%s'" % URL_ENDPOINT,
            "imagekit.allow_private_sources = on",
            "imagekit.workers = 2",
            "imagekit.max_concurrent_uploads = 4",
            "imagekit.batch_size = 32",
            "imagekit.max_retries = 3",
            "imagekit.retry_base_delay = '200ms'",
            "imagekit.retry_max_delay = '3s'",
            "imagekit.timeout = '5s'",
            "imagekit.connect_timeout = '2s'",
            "imagekit.lease_timeout = '30s'",
        ])
        c.start()
        self.event("cluster on port %d in %s" % (c.port, c.data))
        c.q("CREATE EXTENSION imagekit_ext;"
            "CREATE TABLE soak_images (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " url text NOT NULL);"
            "SELECT imagekit.attach('soak_images');")
        # the key in a logged statement (log_statement = ddl) and a reload:
        # neither may put it in the log
        c.q("ALTER SYSTEM SET imagekit.private_key = '%s'" % self.key)
        c.q("SELECT pg_reload_conf()")
        self.wait_for("two workers", lambda: len(c.worker_pids()) == 2, 60)

    def wait_for(self, what, cond, timeout, every=1.0):
        deadline = now() + timeout
        while not cond():
            if now() > deadline:
                raise Fail("timed out after %d s waiting for %s" % (timeout, what))
            time.sleep(every)
            self.sample_memory()

    # -- memory ----------------------------------------------------------------

    def sample_memory(self):
        t = self.elapsed()
        if t - self.last_sample < self.prof["sample_s"]:
            return
        self.last_sample = t
        for pid in self.cluster.worker_pids():
            mem = read_memory(pid)
            if mem is not None:
                self.samples.setdefault(pid, []).append((t, mem[0], mem[1]))

    # -- progress ----------------------------------------------------------------

    def progress(self, wait=120):
        """(inbox, queued, in_flight, done, fallback) of soak_images' jobs."""
        row = self.cluster.rows(
            "SELECT (SELECT count(*) FROM imagekit.inbox),"
            " count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'in_flight'),"
            " count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'fallback')"
            " FROM imagekit.jobs WHERE tbl = 'soak_images'::regclass", wait=wait)[0]
        return tuple(int(v) for v in row)

    def progress_line(self, inserted):
        try:
            p = self.progress(wait=5)
            jobs = "inbox %d queued %d in_flight %d done %d fallback %d" % p
        except Fail:
            jobs = "(server not answering)"
        mem = []
        for pid in self.cluster.worker_pids():
            m = read_memory(pid)
            if m:
                mem.append("%d:%.1f" % (pid, m[1] / 1024))
        return "rows %d/%d | %s | faults %d | worker RssAnon MB %s" % (
            inserted, self.prof["rows"], jobs, sum(self.injected.values()),
            " ".join(mem) or "-")

    # -- inserts -----------------------------------------------------------------

    def insert_batch(self, batch):
        lo, hi = batch[0][0], batch[-1][0]
        have = int(self.cluster.q(
            "SELECT count(*) FROM soak_images WHERE id BETWEEN %d AND %d" % (lo, hi), wait=5))
        if have == len(batch):
            return                      # committed before the connection was lost
        if have != 0:
            raise Broken("batch %d..%d half there (%d rows)" % (lo, hi, have))
        data = "".join("%d\t%s\n" % (rid, url) for rid, url, _ in batch)
        self.cluster.q("COPY soak_images (id, url) FROM STDIN", stdin=data, wait=5)

    # -- faults --------------------------------------------------------------------

    def inject(self, kind, arg, restores):
        """Inject one fault; False to try again a bit later."""
        s = self.standin
        if kind == "sigkill":
            pids = self.cluster.worker_pids()
            if not pids:
                return False
            pid = self.rng.choice(pids)
            os.kill(pid, signal.SIGKILL)
            self.event("FAULT sigkill worker pid %d" % pid)
        elif kind == "restart":
            self.event("FAULT pg_ctl restart -m immediate")
            t = now()
            self.cluster.restart_immediate()
            self.event("      server back after %.1f s" % (now() - t))
        elif kind == "http":
            if not s.alive() or s.frozen:
                return False
            faults, counts = http_burst(arg, self.rng)
            try:
                s.call("POST", "/_standin/faults", faults, timeout=5)
            except (OSError, ValueError):
                return False
            for name, n in counts.items():
                self.http_units[name] = self.http_units.get(name, 0) + n
            self.event("FAULT http %s: %d of the next %d uploads (%s)" % (
                arg, sum(counts.values()), sum(f.get("count", 1) for f in faults),
                ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        elif kind == "outage":
            if not s.alive() or s.frozen:
                return False
            s.kill()
            restores.append((self.elapsed() + arg, "restart stand-in"))
            self.event("FAULT stand-in killed (SIGKILL) for %d s" % arg)
        elif kind == "freeze":
            if not s.alive() or s.frozen:
                return False
            s.freeze()
            restores.append((self.elapsed() + arg, "thaw stand-in"))
            self.event("FAULT stand-in frozen (SIGSTOP) for %d s" % arg)
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return True

    def restore(self, what):
        if what == "restart stand-in":
            self.standin.start()
            self.event("      stand-in started again on port %d" % self.standin.port)
        else:
            self.standin.thaw()
            self.event("      stand-in thawed (SIGCONT)")

    # -- the phases --------------------------------------------------------------

    def chaos(self, rows):
        prof = self.prof
        span = prof["span"]
        nb = min(prof["batches"], len(rows))
        size = -(-len(rows) // nb)
        batches = [(i * span / nb, rows[i * size:(i + 1) * size]) for i in range(nb)]
        batches = [b for b in batches if b[1]]
        plan = make_fault_plan(self.rng, prof, span)
        self.planned = len(plan)
        self.event("chaos phase: %d rows in %d batches over %d s; %d faults planned: %s" % (
            len(rows), len(batches), span, len(plan),
            ", ".join("%s %d" % (k, v) for k, v in prof["faults"].items())))
        restores = []
        inserted = 0
        next_progress = 0
        start = self.elapsed()
        deadline = start + span + 600
        while batches or plan or restores:
            t = self.elapsed() - start
            if self.elapsed() > deadline:
                raise Fail("the chaos phase did not end (%d batches, %d faults left)"
                           % (len(batches), len(plan)))
            for r in [r for r in restores if r[0] <= self.elapsed()]:
                restores.remove(r)
                self.restore(r[1])
            if batches and batches[0][0] <= t:
                try:
                    self.insert_batch(batches[0][1])
                    inserted += len(batches[0][1])
                    batches.pop(0)
                except Broken:
                    raise
                except Fail as exc:
                    self.notes.append("insert retried: %s" % str(exc).split("\n")[0])
            if plan and plan[0][0] <= t:
                _, kind, arg = plan[0]
                if self.inject(kind, arg, restores):
                    plan.pop(0)
                else:
                    plan[0] = (t + 2, kind, arg)
                    plan.sort(key=lambda e: e[0])
            self.sample_memory()
            if self.elapsed() >= next_progress:
                self.event(self.progress_line(inserted))
                next_progress = self.elapsed() + 10
            time.sleep(0.5)
        self.inserted = inserted

    def drain(self, what, timeout):
        t = now()
        last = [0]

        def drained():
            p = self.progress()
            if now() - last[0] >= 10:
                self.event("%s: inbox %d queued %d in_flight %d done %d fallback %d"
                           % ((what,) + p))
                last[0] = now()
            return p[0] == 0 and p[1] == 0 and p[2] == 0
        self.wait_for(what, drained, timeout, every=2)
        self.event("%s: drained in %.1f s" % (what, now() - t))
        return self.progress()

    # -- checks --------------------------------------------------------------------

    def check(self, name, expected, actual, ok):
        self.results.append((name, str(expected), str(actual), bool(ok)))

    def memory_check(self):
        with open(os.path.join(self.work, "memory.tsv"), "w") as f:
            f.write("pid\tt_s\tVmRSS_kB\tRssAnon_kB\n")
            for pid, samples in self.samples.items():
                for t, rss, anon in samples:
                    f.write("%d\t%.1f\t%d\t%d\n" % (pid, t, rss, anon))
        min_span = min(self.prof["mem_min_span"], 0.4 * self.prof["span"])
        lifetimes = []
        for pid, samples in sorted(self.samples.items(), key=lambda kv: kv[1][0][0]):
            span = samples[-1][0] - samples[0][0]
            if span < min_span or len(samples) < 9:
                continue
            k = len(samples) // 3
            first = statistics.median(s[2] for s in samples[:k])
            last = statistics.median(s[2] for s in samples[-k:])
            limit = max(MEM_LIMIT_KB, MEM_LIMIT_SHARE * first)
            lifetimes.append(dict(pid=pid, span=span, n=len(samples), first=first, last=last,
                                  peak=max(s[2] for s in samples),
                                  rss_first=statistics.median(s[1] for s in samples[:k]),
                                  rss_last=statistics.median(s[1] for s in samples[-k:]),
                                  growth=last - first, limit=limit,
                                  slope=slope([(s[0], s[2]) for s in samples]) * 60,
                                  ok=last - first <= limit))
        self.lifetimes = lifetimes
        n_all = len(self.samples)
        if not lifetimes:
            self.check("worker memory flat (RssAnon, per process lifetime)",
                       "a lifetime >= %d s" % min_span,
                       "none long enough among %d" % n_all, False)
            return
        worst = max(lifetimes, key=lambda l: l["growth"] - l["limit"])
        self.check("worker memory flat (RssAnon, per process lifetime)",
                   "growth <= max(%d MB, %d %%)" % (MEM_LIMIT_KB // 1024, MEM_LIMIT_SHARE * 100),
                   "%d lifetimes judged of %d; worst %+.1f MB (%.1f -> %.1f MB over %d s)" % (
                       len(lifetimes), n_all, worst["growth"] / 1024, worst["first"] / 1024,
                       worst["last"] / 1024, worst["span"]),
                   all(l["ok"] for l in lifetimes))

    def final_checks(self, rows, images, after_chaos, requeued, after_retry):
        c = self.cluster
        n = len(rows)
        missing = [r for r in rows if r[2] is None]
        nvalid = n - len(missing)
        sha = {}
        t = now()
        sys.path.insert(0, os.path.dirname(self.standin.script))
        import imagekit_standin
        for i, (name, size) in images.items():
            sha[i] = hashlib.sha256(imagekit_standin.source_png(name, size)).hexdigest()
        used = {i for _, _, i in rows if i is not None}
        expected_url = {rid: (URL_ENDPOINT + FOLDER + sha[i] + ".png" if i is not None else url)
                        for rid, url, i in rows}
        self.event("expected content hashes of %d images computed in %.1f s" % (len(sha), now() - t))

        table = {int(r[0]): r for r in c.rows(
            "SELECT id, url, coalesce(imagekit_url, '') FROM soak_images")}
        jobs = {}
        for r in c.rows("SELECT row_key, state, coalesce(last_http_status, 0), "
                        "coalesce(content_hash, ''), attempts FROM imagekit.jobs "
                        "WHERE tbl = 'soak_images'::regclass"):
            jobs.setdefault(int(r[0]), []).append(r)
        assets = c.rows("SELECT content_hash, url, file_path FROM imagekit.assets")
        inbox = int(c.q("SELECT count(*) FROM imagekit.inbox"))
        stats = self.standin.call("GET", "/_standin/stats", timeout=120)
        self.standin.accumulate(stats)

        self.check("rows in the table (ids 1..N)", n,
                   sum(1 for rid, _, _ in rows if rid in table), len(table) == n and
                   all(rid in table for rid, _, _ in rows))
        self.check("rows with exactly one job (none lost)", n,
                   sum(1 for rid, _, _ in rows if len(jobs.get(rid, [])) == 1),
                   all(len(jobs.get(rid, [])) == 1 for rid, _, _ in rows))
        inbox_, queued, in_flight, done, fallback = after_chaos
        self.check("after the chaos: every job done or fallback", "%d (0 queued, 0 in flight)" % n,
                   "%d (%d done, %d fallback; %d queued, %d in flight, inbox %d)" % (
                       done + fallback, done, fallback, queued, in_flight, inbox_),
                   done + fallback == n and queued == 0 and in_flight == 0 and inbox_ == 0)
        states = {}
        for rid, _, _ in rows:
            for j in jobs.get(rid, []):
                states[j[1]] = states.get(j[1], 0) + 1
        self.check("after retry_fallbacks (%d re-queued): done" % requeued, nvalid,
                   states.get("done", 0), states.get("done", 0) == nvalid)
        miss_ok = sum(1 for rid, url, _ in missing
                      if [j[1] for j in jobs.get(rid, [])] == ["fallback"]
                      and jobs[rid][0][2] == "404" and table.get(rid, [0, 0, ""])[2] == url)
        self.check("missing sources: fallback, HTTP 404, the row keeps its source URL",
                   len(missing), miss_ok, miss_ok == len(missing)
                   and states.get("fallback", 0) == len(missing))
        self.check("nothing queued, in flight or in the inbox at the end", 0,
                   after_retry[1] + after_retry[2] + inbox,
                   after_retry[1] + after_retry[2] + inbox == 0)
        right = sum(1 for rid, _, i in rows if i is not None and rid in table
                    and table[rid][2] == expected_url[rid])
        self.check("rows holding the CDN URL of their own content", nvalid, right, right == nvalid)
        hashes_ok = sum(1 for rid, _, i in rows if i is not None and
                        [j[3] for j in jobs.get(rid, [])] == [sha[i]])
        self.check("done jobs' content_hash = SHA-256 of the source", nvalid, hashes_ok,
                   hashes_ok == nvalid)
        asset_hashes = [a[0] for a in assets]
        dup_assets = len(asset_hashes) - len(set(asset_hashes))
        want = {sha[i] for i in used}
        self.check("imagekit.assets: one row per distinct content, no duplicate",
                   "%d rows, 0 duplicates" % len(want),
                   "%d rows, %d duplicates" % (len(assets), dup_assets),
                   dup_assets == 0 and set(asset_hashes) == want)
        paths = stats["paths"]
        by_sha = {}
        for path, h in paths.items():
            by_sha.setdefault(h, set()).add(path)
        twice = {h: p for h, p in by_sha.items() if len(p) > 1}
        self.check("stand-in: no content stored under two names", 0, len(twice), not twice)
        bad_names = [p for p, h in paths.items() if p != FOLDER + h + ".png"]
        self.check("stand-in: every stored file named <sha256>.png", 0, len(bad_names),
                   not bad_names)
        stored_ok = sum(1 for a in assets if paths.get(a[2]) == a[0]
                        and a[1] == URL_ENDPOINT + a[2])
        self.check("every asset stored on the stand-in under its name, with its bytes",
                   len(want), "%d (stand-in holds %d files)" % (stored_ok, len(paths)),
                   stored_ok == len(want) and len(paths) == len(want))
        self.stats = stats
        self.ext_stats = c.q("SELECT row_to_json(s) FROM imagekit.stats() s")
        self.standin_reuploads = sum(v - 1 for v in stats["hashes"].values() if v > 1)

    def log_checks(self):
        """The server log, read once the cluster is stopped (shutdown included)."""
        c = self.cluster
        with open(c.log, "rb") as f:
            log = f.read()
        self.check("private key absent from the server log", 0,
                   "%d (log %.1f MB, %d lines)" % (log.count(self.key.encode()),
                                                    len(log) / 1e6, log.count(b"\n")),
                   log.count(self.key.encode()) == 0)
        crashes = [l for l in log.decode("utf-8", "replace").split("\n")
                   if ("terminated by signal" in l and "signal 9:" not in l)
                   or " PANIC: " in l or "TRAP:" in l]
        self.check("no crash (a signal other than our SIGKILL, PANIC, TRAP)", 0, len(crashes),
                   not crashes)
        self.crash_lines = crashes[:10]
        # information
        errors = {}
        for l in log.decode("utf-8", "replace").split("\n"):
            if " ERROR: " in l or " FATAL: " in l:
                msg = " ".join(l.split("] ", 1)[-1].split())
                errors[msg] = errors.get(msg, 0) + 1
        self.log_errors = sorted(errors.items(), key=lambda kv: -kv[1])

    # -- report --------------------------------------------------------------------

    def report(self):
        out = []
        w = [max(len(r[i]) for r in self.results + [("check", "expected", "actual", "")])
             for i in range(3)]
        fmt = "%%-%ds | %%-%ds | %%-%ds | %%s" % tuple(w)
        out.append(fmt % ("check", "expected", "actual", "ok"))
        out.append("-+-".join("-" * x for x in w) + "-+---")
        for name, exp, act, ok in self.results:
            out.append(fmt % (name, exp, act, "yes" if ok else "NO"))
        md = ["| check | expected | actual | ok |", "|---|---|---|---|"]
        for name, exp, act, ok in self.results:
            md.append("| %s | %s | %s | %s |" % (md_text(name), md_text(exp), md_text(act),
                                                 "yes" if ok else "**NO**"))
        return out, md

    def summary_lines(self):
        p = self.prof
        t = self.standin.totals
        lines = [
            "chaos soak: %s, seed %d, %d rows over %d images (%d missing sources), %s profile"
            % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               self.seed, p["rows"], self.nimages, self.nmissing,
               "short" if self.args.short else "long"),
            "durations: set-up %.0f s, chaos %.0f s (span %d s), drain after it %.0f s, "
            "retry_fallbacks drain %.0f s, checks %.0f s; total %.0f s"
            % (self.phase_times.get("setup", 0), self.phase_times.get("chaos", 0), p["span"],
               self.phase_times.get("drain", 0), self.phase_times.get("retry", 0),
               self.phase_times.get("checks", 0), self.elapsed()),
            "faults injected: %s (planned %d)" % (
                ", ".join("%s %d" % kv for kv in sorted(self.injected.items())),
                getattr(self, "planned", 0)),
            "HTTP fault answers queued: %s" % ", ".join(
                "%s %d" % kv for kv in sorted(self.http_units.items())),
            "stand-in (all its processes): %d upload requests, %d uploads stored "
            "(%d re-uploads of a stored name), %d dropped answers, statuses %s; "
            "%d downloads, statuses %s" % (
                t.get("requests", 0), t.get("uploads", 0), getattr(self, "standin_reuploads", 0),
                t.get("dropped", 0), json.dumps(t.get("statuses", {}), sort_keys=True),
                t.get("downloads", 0), json.dumps(t.get("download_statuses", {}),
                                                   sort_keys=True)),
        ]
        if getattr(self, "fallback_causes", None):
            lines.append("fallbacks after the chaos, by cause: " + "; ".join(
                "%s %s" % (n, cause) for cause, n in self.fallback_causes))
        if getattr(self, "ext_stats", None):
            lines.append("imagekit.stats() since the last restart: " + self.ext_stats)
        for l in getattr(self, "lifetimes", []):
            lines.append("worker pid %d: %d samples over %d s, RssAnon %.1f -> %.1f MB "
                         "(peak %.1f, limit +%.1f, trend %+.0f kB/min), VmRSS %.1f -> %.1f MB: %s" % (
                             l["pid"], l["n"], l["span"], l["first"] / 1024, l["last"] / 1024,
                             l["peak"] / 1024, l["limit"] / 1024, l["slope"], l["rss_first"] / 1024,
                             l["rss_last"] / 1024, "flat" if l["ok"] else "GROWS"))
        for msg, count in getattr(self, "log_errors", [])[:8]:
            lines.append("log: %dx %s" % (count, msg[:160]))
        for l in getattr(self, "crash_lines", []):
            lines.append("crash: " + l)
        for n in self.notes[:5]:
            lines.append("note: " + n)
        return lines

    def run(self):
        args = self.args
        ok = False
        try:
            t = now()
            self.setup()
            self.phase_times["setup"] = now() - t
            rows, images = make_rows(self.rng, self.prof["rows"], self.seed, self.standin.base)
            self.nimages = len(images)
            self.nmissing = sum(1 for r in rows if r[2] is None)
            t = now()
            self.chaos(rows)
            self.phase_times["chaos"] = now() - t
            t = now()
            after_chaos = self.drain("drain after the chaos", self.prof["drain_timeout"])
            self.phase_times["drain"] = now() - t
            self.fallback_causes = [(r[0], int(r[1])) for r in self.cluster.rows(
                "SELECT coalesce(regexp_replace(regexp_replace(last_error, 'request ID [0-9a-f-]+', "
                "'request ID _'), '[0-9]+', 'N', 'g'), '-')"
                " || ' (HTTP ' || coalesce(last_http_status, 0) || ')', count(*)"
                " FROM imagekit.jobs WHERE state = 'fallback' GROUP BY 1 ORDER BY 2 DESC LIMIT 6")]
            t = now()
            cleared = self.standin.call("DELETE", "/_standin/faults")["cleared"]
            requeued = int(self.cluster.q("SELECT imagekit.retry_fallbacks('soak_images')"))
            self.event("faults cleared (%d units left); retry_fallbacks re-queued %d jobs"
                       % (cleared, requeued))
            after_retry = self.drain("drain after retry_fallbacks", self.prof["drain_timeout"])
            self.phase_times["retry"] = now() - t
            t = now()
            self.final_checks(rows, images, after_chaos, requeued, after_retry)
            self.standin.stop()
            self.cluster.stop()
            self.log_checks()
            self.memory_check()
            self.phase_times["checks"] = now() - t
            ok = all(r[3] for r in self.results)
        except Fail as exc:
            self.check("the soak ran to the end", "yes", str(exc).split("\n")[0][:150], False)
            say("FAIL: %s" % exc)
        finally:
            self.standin.stop()
            self.cluster.stop()
        table, md = self.report()
        summary = self.summary_lines() if hasattr(self, "nimages") else []
        say("")
        for line in summary:
            say(line)
        say("")
        for line in table:
            say(line)
        say("")
        say("RESULT: %s" % ("all checks passed" if ok else "FAILED"))
        text = "".join("- %s\n" % md_text(line) for line in summary) + "\n" + "\n".join(md) + "\n"
        with open(os.path.join(self.work, "soak-result.md"), "w") as f:
            f.write(text)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(text)
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description="chaos soak driver (see test/chaos/soak.sh)")
    ap.add_argument("--work", required=True, help="scratch directory, writable")
    ap.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--rows", type=int, help="rows to drain (20000; 2000 with --short)")
    ap.add_argument("--seed", type=int, help="PRNG seed (default: random, printed)")
    ap.add_argument("--short", action="store_true", help="the CI size: 2000 rows, a few faults")
    ap.add_argument("--span", type=int, help="length of the chaos phase, s (600; 60 with --short)")
    ap.add_argument("--markdown", help="also write the summary and table to this file")
    args = ap.parse_args()
    if args.rows is not None and args.rows < 1:
        ap.error("--rows must be >= 1")
    if args.span is not None and args.span < 10:
        ap.error("--span must be >= 10")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
