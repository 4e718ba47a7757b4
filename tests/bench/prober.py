#!/usr/bin/env python3
"""Polls etcd's /health over TLS (the node's own client certificate) every
INTERVAL seconds until STOPFILE exists, and writes one line per probe to OUT:
`<unix time> <1 healthy | 0 not>`. Used by tests/bench/downtime.sh; stopped by
the stop file (or by its PID), never by name.

Usage: prober.py DRILL_DIR OUT STOPFILE [INTERVAL]
"""
import http.client
import json
import os
import ssl
import sys
import time

drill, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
node = json.load(open(os.path.join(drill, "drill.json")))["nodes"][0]
pki = os.path.join(node["root"], "etc/kubernetes/pki/etcd")
ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
ctx.load_cert_chain(os.path.join(pki, "healthcheck-client.crt"), os.path.join(pki, "healthcheck-client.key"))
ctx.check_hostname = False
port = node["clientPort"]
deadline = time.time() + 1800
with open(out, "w", buffering=1) as f:
    while not os.path.exists(stop) and time.time() < deadline:
        t = time.time()
        ok = 0
        try:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=0.5)
            c.request("GET", "/health")
            r = c.getresponse()
            body = r.read()
            ok = int(r.status == 200 and json.loads(body).get("health") == "true")
            c.close()
        except Exception:
            ok = 0
        f.write(f"{t:.3f} {ok}\n")
        time.sleep(max(0.0, interval - (time.time() - t)))
