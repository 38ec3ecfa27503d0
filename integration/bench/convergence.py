#!/usr/bin/env python3
"""Convergence benchmark with traffic: anypop against ExaBGP's healthcheck.

Two PoPs (pa, pb) announce 203.0.113.0/24 to a transit FRR router (t); both
serve 203.0.113.10 (UDP port 7000, each answer names its PoP). t prefers pa
(pb's routes get local-pref 50). A client namespace (c) behind t sends one
request every 10 ms. For each failure kind the bench breaks pa, and times

- fib:    until t's kernel FIB sends 203.0.113.0/24 to pb (`ip -ts monitor route`),
- served: until the client's first answer from pb,
- lost:   requests sent after the failure that never got an answer,

then repairs pa and waits until traffic is back on pa (and a random part
of the check interval, so that failures do not land in step with the
probes). Both PoPs are run by
anypop first, then by ExaBGP with its healthcheck program (same interval,
rise and fall, one healthcheck per kind), in the same namespaces with the
same addresses. Prints a table; asserts nothing.

pa and pb hang off a switch namespace (sw), so cutting pa's port ("link")
leaves t's carrier up: only BFD (anypop, 3 x 100 ms) or the hold timer
(3 s, both) can tell t.

Run through integration/bench/convergence.sh (builds anypop, installs ExaBGP
from PyPI into target/exabgp-venv). Needs root, frr (zebra, bgpd, bfdd),
iproute2, curl. Also the service and client programs of the bench: run with
`service` / `client` as first argument (inside a namespace).
"""

import argparse
import datetime
import http.server
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SERVICE_ADDR = "203.0.113.10"
SERVICE_PORT = 7000
PREFIX = "203.0.113.0/24"
HEALTH_PORT = 8081
API_PORT = 8080
REQUEST_EVERY = 0.010
# (name, transit address, PoP address, ASN)
POPS = [("pa", "192.0.2.1", "192.0.2.2", 65001), ("pb", "192.0.2.9", "192.0.2.10", 65002)]
KINDS = ["process", "maintenance", "health", "link", "drain"]
EXABGP_KINDS = ["process", "maintenance", "health", "link"]
INTERVAL = 1.0
FAST_INTERVAL = 0.2
RISE = 3
# fall per kind, the same for both speakers: 1 for event sources (process,
# maintenance file), anypop's default 2 for the HTTP check.
FALL = {"process": 1, "maintenance": 1, "health": 2, "link": 1}
HOLD = 3


# ---------------------------------------------------------------- service


def service(args):
    """UDP: answers `<pop> <request>`; HTTP 127.0.0.1:8081/health: 500
    while the fail file exists, else 200."""
    pop, fail_file, pid_file = args
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((SERVICE_ADDR, SERVICE_PORT))

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 500 if os.path.exists(fail_file) else 200
            body = f"{pop} {code}\n".encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", HEALTH_PORT), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with open(pid_file + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(pid_file + ".tmp", pid_file)
    prefix = pop.encode() + b" "
    while True:
        data, peer = udp.recvfrom(512)
        udp.sendto(prefix + data, peer)


# ---------------------------------------------------------------- client


def client(args):
    """Sends `<seq>` every 10 ms to the service address; logs `s seq t` for
    each request and `r seq pop t` for each answer (realtime clock)."""
    out_path, seconds = args[0], float(args[1])
    out = open(out_path, "w", buffering=1 << 16)
    lock = threading.Lock()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((SERVICE_ADDR, SERVICE_PORT))
    sock.settimeout(0.2)
    stop = time.time() + seconds

    def receive():
        while time.time() < stop + 2:
            try:
                data = sock.recv(512)
            except socket.timeout:
                continue
            except OSError:
                # ICMP errors while no route exists: counted as lost.
                continue
            t = time.time()
            parts = data.split()
            if len(parts) == 2:
                with lock:
                    out.write(f"r {parts[1].decode()} {parts[0].decode()} {t:.6f}\n")

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    seq = 0
    next_at = time.time()
    last_flush = next_at
    while time.time() < stop:
        now = time.time()
        with lock:
            out.write(f"s {seq} {now:.6f}\n")
        try:
            sock.send(str(seq).encode())
        except OSError:
            pass
        seq += 1
        next_at += REQUEST_EVERY
        if now - last_flush > 0.05:
            with lock:
                out.flush()
            last_flush = now
        delay = next_at - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.time()
    rx.join()
    with lock:
        out.flush()


# ---------------------------------------------------------------- lab


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def wait(pred, timeout, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Lab:
    def __init__(self, anypop_bin, exabgp_python, reps):
        self.tag = f"cv{os.getpid()}x"
        self.dir = tempfile.mkdtemp(prefix=f"anypop-convergence-{self.tag}-")
        os.chmod(self.dir, 0o755)
        self.anypop_bin = anypop_bin
        self.exabgp_python = exabgp_python
        self.reps = reps
        self.namespaces = []
        self.procs = []  # (name, Popen) of everything started, killed at the end
        self.frr_pids = []
        self.services = {}
        self.speakers = {}
        self.client = None
        self.monitor = None

    def ns(self, name):
        return f"{self.tag}{name}"

    def ip(self, node, *args):
        return run("ip", "-n", self.ns(node), *args)

    def start(self, name, cmd, log):
        f = open(os.path.join(self.dir, log), "ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        self.procs.append((name, p))
        return p

    def build(self):
        for n in ["t", "sw", "pa", "pb", "c"]:
            run("ip", "netns", "add", self.ns(n))
            self.namespaces.append(self.ns(n))
            self.ip(n, "link", "set", "lo", "up")
        for n in ["t", "sw"]:
            run("ip", "netns", "exec", self.ns(n), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for n in ["t", "pa", "pb", "c"]:
            for k in ["all", "default"]:
                run("ip", "netns", "exec", self.ns(n), "sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0")
        for pop, t_addr, p_addr, _ in POPS:
            # t:eth-pX -- sw:X-t [bridge brX] sw:X-p -- pX:eth0
            run("ip", "link", "add", f"eth-{pop}", "netns", self.ns("t"), "type", "veth",
                "peer", "name", f"{pop}-t", "netns", self.ns("sw"))
            run("ip", "link", "add", f"{pop}-p", "netns", self.ns("sw"), "type", "veth",
                "peer", "name", "eth0", "netns", self.ns(pop))
            self.ip("sw", "link", "add", f"br{pop}", "type", "bridge")
            for dev in [f"{pop}-t", f"{pop}-p"]:
                self.ip("sw", "link", "set", dev, "master", f"br{pop}")
                self.ip("sw", "link", "set", dev, "up")
            self.ip("sw", "link", "set", f"br{pop}", "up")
            self.ip("t", "addr", "add", f"{t_addr}/29", "dev", f"eth-{pop}")
            self.ip("t", "link", "set", f"eth-{pop}", "up")
            self.ip(pop, "addr", "add", f"{p_addr}/29", "dev", "eth0")
            self.ip(pop, "link", "set", "eth0", "up")
            self.ip(pop, "addr", "add", f"{SERVICE_ADDR}/32", "dev", "lo")
            self.ip(pop, "route", "add", "default", "via", t_addr)
            os.makedirs(os.path.join(self.dir, pop), exist_ok=True)
        run("ip", "link", "add", "eth-c", "netns", self.ns("t"), "type", "veth",
            "peer", "name", "eth0", "netns", self.ns("c"))
        self.ip("t", "addr", "add", "198.51.100.1/30", "dev", "eth-c")
        self.ip("t", "link", "set", "eth-c", "up")
        self.ip("c", "addr", "add", "198.51.100.2/30", "dev", "eth0")
        self.ip("c", "link", "set", "eth0", "up")
        self.ip("c", "route", "add", "default", "via", "198.51.100.1")

    def start_frr(self):
        d = os.path.join(self.dir, "frr")
        os.makedirs(os.path.join(d, "run"))
        neighbors, afi = "", ""
        for pop, _, p_addr, asn in POPS:
            neighbors += (
                f" neighbor {p_addr} remote-as {asn}\n"
                f" neighbor {p_addr} timers 1 {HOLD}\n"
                f" neighbor {p_addr} timers connect 1\n"
                f" neighbor {p_addr} bfd profile fast\n"
            )
            afi += f"  neighbor {p_addr} activate\n  neighbor {p_addr} route-map DENY-ALL out\n"
            if pop == "pb":
                afi += f"  neighbor {p_addr} route-map BACKUP in\n"
        conf = (
            "frr defaults traditional\nhostname t\n!\n"
            "bfd\n profile fast\n  detect-multiplier 3\n  receive-interval 100\n"
            "  transmit-interval 100\n !\n!\n"
            "route-map DENY-ALL deny 10\n!\n"
            "route-map BACKUP permit 10\n set local-preference 50\n!\n"
            "router bgp 65000\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n"
            " no bgp default ipv4-unicast\n no bgp network import-check\n"
            " bgp graceful-restart\n bgp graceful-restart notification\n"
            f"{neighbors} address-family ipv4 unicast\n{afi} exit-address-family\n!\n"
        )
        with open(os.path.join(d, "frr.conf"), "w") as f:
            f.write(conf)
        with open(os.path.join(d, "zebra.conf"), "w") as f:
            f.write("hostname t\n")
        run("chown", "-R", "frr:frr", d)
        for daemon, cfg, sock in [("zebra", "zebra.conf", "zserv.api"),
                                  ("bfdd", "frr.conf", "bfdd.vty"),
                                  ("bgpd", "frr.conf", "bgpd.vty")]:
            run("ip", "netns", "exec", self.ns("t"), f"/usr/lib/frr/{daemon}", "-d",
                "-f", os.path.join(d, cfg), "-i", os.path.join(d, "run", f"{daemon}.pid"),
                "--vty_socket", os.path.join(d, "run"), "-z", os.path.join(d, "run", "zserv.api"),
                "-A", "127.0.0.1", "-P", "0", "--log", f"file:{d}/{daemon}.log")
            if not wait(lambda: os.path.exists(os.path.join(d, "run", sock)), 20):
                raise RuntimeError(f"FRR {daemon} did not start (see {d})")
            with open(os.path.join(d, "run", f"{daemon}.pid")) as f:
                self.frr_pids.append(int(f.read().split()[0]))
        self.frr_dir = d

    def start_monitor(self):
        path = os.path.join(self.dir, "fib.log")
        env = dict(os.environ, TZ="UTC")
        f = open(path, "w")
        self.monitor = subprocess.Popen(["ip", "-ts", "-n", self.ns("t"), "monitor", "route"],
                                        stdout=f, stderr=subprocess.DEVNULL, env=env)
        self.procs.append(("monitor", self.monitor))
        self.fib_log = path

    def fib_events(self, since):
        """(time, line) of route changes for the prefix after `since`."""
        out = []
        with open(self.fib_log) as f:
            for line in f:
                if PREFIX not in line or not line.startswith("["):
                    continue
                stamp, _, rest = line[1:].partition("] ")
                try:
                    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f")
                except ValueError:
                    continue
                t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
                if t >= since:
                    out.append((t, rest.strip()))
        return out

    def fib_via(self):
        out = self.ip("t", "route", "show", PREFIX)
        for pop, _, p_addr, _ in POPS:
            if f"via {p_addr} " in out:
                return pop
        return None

    # -- the service

    def start_service(self, pop):
        d = os.path.join(self.dir, pop)
        pid_file = os.path.join(d, "service.pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        p = self.start(f"service-{pop}", ["ip", "netns", "exec", self.ns(pop), sys.executable,
                                          os.path.abspath(__file__), "service", pop,
                                          os.path.join(d, "health.fail"), pid_file],
                       f"{pop}/service.log")
        if not wait(lambda: os.path.exists(pid_file), 10):
            raise RuntimeError(f"service of {pop} did not start")
        self.services[pop] = p

    def kill_service(self, pop):
        p = self.services.pop(pop)
        p.kill()
        p.wait()  # reaped at once: a zombie would still pass `kill -0`

    # -- speakers

    def anypop_config(self, pop, p_addr, asn, t_addr):
        d = os.path.join(self.dir, pop)
        return f"""node: {{name: {pop}, pop: {pop}, router_id: {p_addr}, asn: {asn}}}
bgp:
  peers:
    - name: t
      address: {t_addr}
      remote_asn: 65000
      hold_time: {HOLD}s
      connect_retry: 1s
      families: [ipv4]
      bfd: {{min_tx: 100ms, min_rx: 100ms, multiplier: 3}}
pops:
  - name: {pop}
    prefixes: [{PREFIX}]
    drain: {{dns_wait: 0s, settle: 2s}}
    checks:
      - {{name: process, type: process, pid_file: {d}/service.pid, interval: {INTERVAL}s, fast_interval: {FAST_INTERVAL}s, rise: {RISE}, fall: {FALL['process']}}}
      - {{name: maintenance, type: file, path: {d}/maintenance, healthy_when: absent, interval: {INTERVAL}s, fast_interval: {FAST_INTERVAL}s, rise: {RISE}, fall: {FALL['maintenance']}}}
      - {{name: health, type: http, url: "http://127.0.0.1:{HEALTH_PORT}/health", interval: {INTERVAL}s, fast_interval: {FAST_INTERVAL}s, timeout: 500ms, rise: {RISE}, fall: {FALL['health']}}}
api:
  listen: 127.0.0.1:{API_PORT}
"""

    def exabgp_config(self, pop, p_addr, asn, t_addr, kind):
        d = os.path.join(self.dir, pop)
        command = {
            "process": f"kill -0 $(cat {d}/service.pid)",
            "maintenance": "true",
            "health": f"curl -sf -m 1 http://127.0.0.1:{HEALTH_PORT}/health",
            "link": "true",
        }[kind]
        # The healthcheck's options as a file (`key = value`): no quoting
        # of the command inside ExaBGP's `run` line.
        hc_conf = os.path.join(d, "healthcheck.conf")
        with open(hc_conf, "w") as f:
            f.write(f"no-syslog\nno-ip-setup\nwithdraw-on-down\ninterval = {INTERVAL}\n"
                    f"fast-interval = {FAST_INTERVAL}\nrise = {RISE}\nfall = {FALL[kind]}\n"
                    f"timeout = 1\nip = {PREFIX}\nnext-hop = {p_addr}\n"
                    f"disable = {d}/maintenance\ncommand = {command}\n")
        hc = f"{self.exabgp_python} -m exabgp healthcheck --config {hc_conf}"
        return f"""process healthcheck {{
    run {hc};
    encoder text;
}}
neighbor {t_addr} {{
    router-id {p_addr};
    local-address {p_addr};
    local-as {asn};
    peer-as 65000;
    hold-time {HOLD};
    family {{ ipv4 unicast; }}
    api {{ processes [ healthcheck ]; }}
}}
"""

    def start_speakers(self, speaker, kind=None):
        self.stop_speakers()
        for pop, t_addr, p_addr, asn in POPS:
            d = os.path.join(self.dir, pop)
            if speaker == "anypop":
                path = os.path.join(d, "anypop.yaml")
                with open(path, "w") as f:
                    f.write(self.anypop_config(pop, p_addr, asn, t_addr))
                cmd = ["ip", "netns", "exec", self.ns(pop), self.anypop_bin, "run", "--config", path]
                env = None
            else:
                path = os.path.join(d, "exabgp.conf")
                with open(path, "w") as f:
                    f.write(self.exabgp_config(pop, p_addr, asn, t_addr, kind))
                cmd = ["ip", "netns", "exec", self.ns(pop), self.exabgp_python, "-m", "exabgp", path]
            log = open(os.path.join(d, f"{speaker}.log"), "ab")
            env = dict(os.environ, **{"exabgp.daemon.user": "root", "exabgp.api.cli": "false",
                                      "exabgp.daemon.daemonize": "false",
                                      "exabgp.log.destination": "stdout"})
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                 start_new_session=True)
            self.procs.append((f"{speaker}-{pop}", p))
            self.speakers[pop] = p
        if not self.wait_steady(60):
            raise RuntimeError(f"{speaker}: traffic never settled on pa (see {self.dir})")

    def stop_speakers(self):
        for pop, p in list(self.speakers.items()):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.speakers = {}
        # Both routes gone from t before the next speaker starts.
        wait(lambda: self.fib_via() is None, 30)

    # -- traffic

    def start_client(self, seconds):
        self.client_log = os.path.join(self.dir, "client.log")
        self.client_pos, self.sent, self.got, self.last_seq = 0, {}, {}, -1
        self.client = self.start("client", ["ip", "netns", "exec", self.ns("c"), sys.executable,
                                            os.path.abspath(__file__), "client", self.client_log,
                                            str(seconds)], "client.stderr")

    def traffic(self, since):
        """{seq: send time} and {seq: (pop, receive time)} of requests sent
        at or after `since` (the client's log is read incrementally)."""
        try:
            with open(self.client_log) as f:
                f.seek(self.client_pos)
                chunk = f.read()
        except FileNotFoundError:
            return {}, {}
        done = chunk.rfind("\n") + 1  # complete lines only
        self.client_pos += len(chunk[:done].encode())
        for line in chunk[:done].splitlines():
            parts = line.split()
            try:
                if parts[0] == "s" and len(parts) == 3:
                    self.sent[int(parts[1])] = float(parts[2])
                    self.last_seq = max(self.last_seq, int(parts[1]))
                elif parts[0] == "r" and len(parts) == 4:
                    self.got[int(parts[1])] = (parts[2], float(parts[3]))
            except (ValueError, IndexError):
                continue
        # Requests are numbered in send order: scan back from the newest.
        sent = {}
        seq = self.last_seq
        while seq >= 0 and self.sent.get(seq, 0) >= since:
            sent[seq] = self.sent[seq]
            seq -= 1
        return sent, {s: self.got[s] for s in sent if s in self.got}

    def served_by(self, pop, since, span):
        """True if every request sent in [now - span, now - 0.1] was
        answered by `pop` (and there were some)."""
        now = time.time()
        sent, got = self.traffic(max(since, now - span))
        window = [s for s, t in sent.items() if t <= now - 0.1]
        return len(window) > 5 and all(got.get(s, ("", 0))[0] == pop for s in window)

    def bgp_paths(self):
        """How many paths t has for the prefix (2: pa's and the backup)."""
        r = subprocess.run(["vtysh", "--vty_socket", os.path.join(self.frr_dir, "run"), "-c",
                            f"show bgp ipv4 unicast {PREFIX} json"], capture_output=True, text=True)
        try:
            return len(json.loads(r.stdout).get("paths", []))
        except ValueError:
            return 0

    def bfd_up(self, peer):
        r = subprocess.run(["vtysh", "--vty_socket", os.path.join(self.frr_dir, "run"), "-c",
                            "show bfd peers json"], capture_output=True, text=True)
        try:
            return any(p.get("peer") == peer and p.get("status") == "up"
                       for p in json.loads(r.stdout))
        except (ValueError, AttributeError):
            return False

    def wait_steady(self, timeout):
        """Traffic on pa and pb's path in t's table: a failure then has
        somewhere to go."""
        start = time.time()
        return wait(lambda: self.fib_via() == "pa" and self.served_by("pa", start, 0.5)
                    and self.bgp_paths() == 2, timeout, step=0.1)

    # -- failures

    def api(self, pop, path, body):
        return run("ip", "netns", "exec", self.ns(pop), "curl", "-sf", "-m", "5", "-X", "POST",
                   "-H", "content-type: application/json", "-d", json.dumps(body),
                   f"http://127.0.0.1:{API_PORT}{path}")

    def inject(self, kind):
        d = os.path.join(self.dir, "pa")
        t0 = time.time()
        if kind == "process":
            self.kill_service("pa")
        elif kind == "maintenance":
            open(os.path.join(d, "maintenance"), "w").close()
        elif kind == "health":
            open(os.path.join(d, "health.fail"), "w").close()
        elif kind == "link":
            self.ip("sw", "link", "set", "pa-p", "down")
        elif kind == "drain":
            self.api("pa", "/v1/pops/pa/drain", {"reason": "convergence bench", "force": True})
        return t0

    def repair(self, kind):
        d = os.path.join(self.dir, "pa")
        if kind == "process":
            self.start_service("pa")
        elif kind == "maintenance":
            os.unlink(os.path.join(d, "maintenance"))
        elif kind == "health":
            os.unlink(os.path.join(d, "health.fail"))
        elif kind == "link":
            self.ip("sw", "link", "set", "pa-p", "up")
        elif kind == "drain":
            self.api("pa", "/v1/pops/pa/enable", {})

    def measure(self, speaker, kind, timeout):
        if speaker == "anypop" and kind == "link" and not wait(
                lambda: self.bfd_up(POPS[0][2]), 30, 0.2):
            raise RuntimeError(f"BFD to pa not up on t (see {self.dir})")
        # A failure lands anywhere within the checks' interval, as in
        # production (the repair before is in step with the probes).
        time.sleep(random.uniform(0, INTERVAL))
        t0 = self.inject(kind)
        moved = wait(lambda: self.served_by("pb", t0, 0.3), timeout, step=0.05)
        time.sleep(1.0)  # late answers
        sent, got = self.traffic(t0)
        fib = next((t for t, line in self.fib_events(t0) if f"via {POPS[1][2]} " in line), None)
        served = min((rt for pop, rt in got.values() if pop == "pb"), default=None)
        end = time.time() - 1.2
        lost = sum(1 for s, t in sent.items() if t < end and s not in got)
        self.repair(kind)
        if speaker == "anypop" and kind == "link":
            # BFD flap damping would hold the next cut's session down (2 s,
            # 4 s, ... after repeated failures): each repetition starts with
            # fresh speakers, so each cut is a first failure.
            self.start_speakers("anypop")
        if not self.wait_steady(60):
            raise RuntimeError(f"{kind}: traffic did not come back to pa (see {self.dir})")
        # Let BFD, rise counters and the session settle before the next one.
        time.sleep(2.0 if kind == "link" else 0.5)
        return {
            "fib": None if fib is None or not moved else fib - t0,
            "served": None if served is None or not moved else served - t0,
            "lost": lost,
        }

    def cleanup(self):
        for _, p in self.procs:
            if p.poll() is None:
                try:
                    if p in self.speakers.values():
                        os.killpg(p.pid, signal.SIGKILL)
                    else:
                        p.kill()
                except ProcessLookupError:
                    pass
                p.wait()
        for pid in reversed(self.frr_pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self.frr_pids:
            wait(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z"), 10, 0.1)
        for n in self.namespaces:
            run("ip", "netns", "del", n, check=False)


def summary(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return "—"
    return f"{statistics.median(v) * 1000:.0f} ({v[0] * 1000:.0f}–{v[-1] * 1000:.0f})"


def lost_summary(values):
    return f"{statistics.median(values):.0f} ({min(values)}–{max(values)})" if values else "—"


def ratio(a, b):
    a = [x for x in a if x is not None]
    b = [x for x in b if x is not None]
    if not a or not b:
        return "—"
    return f"{statistics.median(b) / statistics.median(a):.1f}×"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anypop", required=True, help="the anypop binary")
    ap.add_argument("--exabgp-python", help="a python with exabgp installed (omit: anypop only)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--keep", action="store_true", help="keep the lab directory")
    a = ap.parse_args()
    kinds = [k for k in a.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            ap.error(f"unknown kind {k!r} (one of {', '.join(KINDS)})")

    lab = Lab(os.path.abspath(a.anypop), a.exabgp_python, a.reps)
    results = {}
    started = time.time()
    try:
        lab.build()
        lab.start_frr()
        lab.start_monitor()
        lab.start_service("pa")
        lab.start_service("pb")
        # The client runs for the whole bench (bounded: 2 h at most).
        lab.start_client(7200)
        speakers = [("anypop", kinds)]
        if a.exabgp_python:
            speakers.append(("exabgp", [k for k in kinds if k in EXABGP_KINDS]))
        for speaker, ks in speakers:
            if speaker == "anypop":
                lab.start_speakers("anypop")
            for kind in ks:
                if speaker == "exabgp":
                    lab.start_speakers("exabgp", kind)
                rows = []
                for i in range(a.reps):
                    r = lab.measure(speaker, kind, 30)
                    rows.append(r)
                    f = "—" if r["fib"] is None else f"{r['fib'] * 1000:.0f} ms"
                    s = "—" if r["served"] is None else f"{r['served'] * 1000:.0f} ms"
                    print(f"{speaker:7} {kind:12} #{i + 1:2}: fib {f:>8}, served {s:>8}, "
                          f"lost {r['lost']}", flush=True)
                results[(speaker, kind)] = rows
            lab.stop_speakers()
    finally:
        lab.cleanup()
        if a.keep:
            print(f"lab directory kept: {lab.dir}")
        else:
            shutil.rmtree(lab.dir, ignore_errors=True)

    print()
    print(f"{a.reps} repetitions per kind, {time.time() - started:.0f} s; "
          f"median (min–max); requests every {REQUEST_EVERY * 1000:.0f} ms")
    print()
    print("| failure | anypop → transit FIB | anypop → client on pb | anypop lost "
          "| ExaBGP → transit FIB | ExaBGP → client on pb | ExaBGP lost | ExaBGP / anypop (FIB) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        ap_rows = results.get(("anypop", kind), [])
        ex_rows = results.get(("exabgp", kind), [])
        cols = [summary([r["fib"] for r in ap_rows]), summary([r["served"] for r in ap_rows]),
                lost_summary([r["lost"] for r in ap_rows])]
        if ex_rows:
            cols += [summary([r["fib"] for r in ex_rows]), summary([r["served"] for r in ex_rows]),
                     lost_summary([r["lost"] for r in ex_rows]),
                     ratio([r["fib"] for r in ap_rows], [r["fib"] for r in ex_rows])]
        else:
            cols += ["not supported"] + ["—"] * 3
        print(f"| {kind} | " + " | ".join(cols) + " |")
    print()
    print("times in ms from the failure; — : no move seen within 30 s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "service":
        service(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        client(sys.argv[2:])
    else:
        main()
