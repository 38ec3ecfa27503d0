#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Run from the repository root when the sources change (the output is
committed; run.sh only reads it):

    python3 fuzz/make-seeds.py

- bgp_decode: the FRR, BIRD and GoBGP messages captured in
  src/bgp/testdata/ (each message, and each router's whole session as one
  stream).
- dns: query bytes as dig sends them, captured on a loopback UDP socket
  (dig from dnsutils is required), each behind the target's selector byte,
  and the inputs the target once failed on.
- config: the YAML examples of README.md and docs/, the topologies'
  configs, the built-in default config and fuzz/anypop.yaml.
- api_body, admin_state: request bodies as `anypop ctl` and curl send them,
  and admin-state files as the core writes them.
- fleet_report: the recorded fleet reports (src/fleet/wire/testdata/) and
  the example in docs/fleet.md.
- bgp_fsm, bgp_peer: none (structured inputs; they start from scratch).
"""
import glob
import os
import re
import shutil
import socket
import subprocess
import threading

OUT = "fuzz/seeds"


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def bgp():
    for router in ("frr", "bird", "gobgp"):
        stream = b""
        for path in sorted(glob.glob(f"src/bgp/testdata/{router}/*.hex")):
            hexdigits = "".join(
                line.split("#")[0] for line in open(path) if not line.startswith("#")
            )
            msg = bytes.fromhex("".join(hexdigits.split()))
            name = os.path.basename(path)[: -len(".hex")]
            write("bgp_decode", f"{router}-{name}", msg)
            if "notification" not in name:
                stream += msg
        write("bgp_decode", f"{router}-session", stream)


DIG_QUERIES = [
    ("www.cdn.example.net", "A", []),
    ("www.cdn.example.net", "AAAA", []),
    ("WwW.CdN.ExAmPlE.NeT", "A", ["+norec"]),
    ("api.cdn.example.net", "A", ["+subnet=198.51.100.0/24"]),
    ("eu.cdn.example.net", "AAAA", ["+subnet=2001:db8:100::/48"]),
    ("all.cdn.example.net", "A", ["+dnssec"]),
    ("big.cdn.example.net", "TXT", ["+noedns"]),
    ("big.cdn.example.net", "TXT", ["+bufsize=512"]),
    ("cdn.example.net", "MX", ["+nsid"]),
    ("cdn.example.net", "SOA", []),
    ("cdn.example.net", "ANY", ["+notcp"]),
    ("alias.cdn.example.net", "A", []),
    ("_sip._udp.cdn.example.net", "SRV", []),
    ("nothere.cdn.example.net", "A", []),
    ("deep.sub.cdn.example.net", "A", []),
    ("www.example.org", "A", ["+subnet=0.0.0.0/0"]),
    ("example.com", "A", []),
    ("id.server", "TXT", ["-c", "CH"]),
    ("www.cdn.example.net", "A", ["+cookie", "+edns=1"]),
]


# A question name that is a compression pointer into the header: the TCP
# path echoed the raw question bytes, which named part of the response's
# header instead.
DNS_REGRESSIONS = [
    ("question-pointer-into-header", bytes([
        17, 3, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 250, 1, 0, 0, 0, 0, 0, 1, 3, 93, 85,
        0, 0, 0, 242, 86, 78, 192, 0, 0, 25, 46, 1, 0, 0, 0, 0, 16,
    ])),
]


def dns():
    if shutil.which("dig") is None:
        raise SystemExit("dig not found: install dnsutils")
    for i, (name, qtype, opts) in enumerate(DIG_QUERIES):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        got = []
        t = threading.Thread(target=lambda: got.append(sock.recvfrom(4096)[0]))
        t.start()
        subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", name, qtype] + opts,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t.join()
        sock.close()
        q = got[0]
        slug = re.sub(r"[^a-z0-9]+", "-", f"{name}-{qtype}-{'-'.join(opts)}".lower()).strip("-")
        # Selector byte: PoP states (low nibble) and source (high nibble).
        write("dns", f"dig-{i:02}-{slug}", bytes([i % 5 | (i % 3) << 4]) + q)
    # Inputs the target once failed on (selector byte first).
    for name, data in DNS_REGRESSIONS:
        write("dns", f"regress-{name}", data)


def config():
    n = 0
    for path in ["README.md"] + sorted(glob.glob("docs/*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", open(path).read(), re.S):
            write("config", f"doc-{os.path.basename(path)[:-3]}-{n:02}.yaml", block)
            n += 1
    paths = sorted(glob.glob("topologies/*/anypop/*.yaml")) + [
        "src/config/default.yaml",
        "src/bgp/testdata/anypop.yaml",
        "fuzz/anypop.yaml",
    ]
    for path in paths:
        name = path.replace("/", "-")
        write("config", name, open(path).read())


API_BODIES = [
    "",
    "{}",
    '{"reason": "fibre cut", "duration": "30m", "mode": "graceful", "who": "ops@host"}',
    '{"reason": "maintenance", "duration": 1800, "mode": "immediate", "force": true}',
    '{"duration": "1h30m"}',
    '{"mode": "immediate", "who": "anypop ctl"}',
    '{"reason": "decommission", "force": false, "who": "ops"}',
    '{"who": "api"}',
]


def api():
    for i, b in enumerate(API_BODIES):
        write("api_body", f"body-{i:02}.json", b)


def admin():
    ov = lambda phase, until: (
        f'{{"phase": "{phase}", "reason": "fibre cut", "who": "ops@host", '
        f'"since": {{"secs_since_epoch": 1764460800, "nanos_since_epoch": 0}}, '
        f'"until": {until}}}'
    )
    until = '{"secs_since_epoch": 1764464400, "nanos_since_epoch": 500}'
    far = '{"secs_since_epoch": 9223372036854775000, "nanos_since_epoch": 0}'
    files = {
        "empty": '{"version": 1, "overrides": {}}',
        "drained": f'{{"version": 1, "overrides": {{"ams": {ov("drained", until)}}}}}',
        "phases": '{"version": 1, "overrides": {'
        + ", ".join(
            f'"{p}": {ov(ph, "null")}'
            for p, ph in [("ams", "dns_removed"), ("fra", "shutdown"), ("lon", "restoring")]
        )
        + "}}",
        "disabled": f'{{"version": 1, "overrides": {{"lon": {ov("disabled", "null")}, "gone": {ov("drained", until)}}}}}',
        # Hand-edited: an auto-undrain as far away as the format allows.
        "far": f'{{"version": 1, "overrides": {{"fra": {ov("drained", far)}}}}}',
    }
    for name, body in files.items():
        write("admin_state", f"{name}.json", body + "\n")


def fleet():
    for path in sorted(glob.glob("src/fleet/wire/testdata/*.json")):
        write("fleet_report", os.path.basename(path), open(path, "rb").read())
    doc = open("docs/fleet.md").read().split("### `GET /v1/fleet/report`")[1]
    write("fleet_report", "docs-example.json", doc.split("```json\n")[1].split("```")[0])


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    bgp()
    dns()
    config()
    api()
    admin()
    fleet()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))
