#!/usr/bin/env python3
"""vault_pki_double.py - a TEST DOUBLE of Vault's PKI secrets engine (no Vault server is packaged in Debian).

This is not Vault. It implements, over HTTPS on 127.0.0.1, only what meshca's Vault client uses,
with Vault's documented request and response shapes, so test/test-extca.c can drive the client:

  POST /v1/auth/cert/login          TLS client-certificate login -> auth.client_token, lease_duration
  POST /v1/<mount>/sign/<role>      signs the CSR for real (openssl ca) with common_name, uri_sans, ttl
  GET  /v1/<mount>/ca_chain         the CA as PEM
  GET  /v1/<mount>/ca/pem           the CA as PEM
  errors                            {"errors": ["..."]} with Vault's status codes

Checks: X-Vault-Token must be the token in --token-file or one issued by cert login (else 403
"permission denied"); X-Vault-Namespace must equal --namespace (else 403, as Vault answers a token
used outside its namespace). Roles: "mesh" (max_ttl 720h), "short" (max_ttl 1h); a ttl above
max_ttl is capped with Vault's real warning "TTL ... is longer than permitted maxTTL ...".

Fault knobs, chosen by the mount name so one running double serves every test:
  pki        normal           pki-5xx   HTTP 500 with a Vault multi-error body
  pki-slow   answers after --slow seconds (longer than the client's timeout)
  pki-bad    HTTP 200 with a malformed (truncated) JSON body
  pki-nochain  ca_chain is empty (the client falls back to ca/pem)

Only the Python standard library and the openssl CLI are used. Every request is logged to
--log as "METHOD PATH STATUS port=CLIENT_PORT" (never a header, so never a token; the
client port shows whether a connection was reused).
"""
import argparse
import datetime
import http.server
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time

MOUNTS = {"pki", "pki-slow", "pki-5xx", "pki-bad", "pki-nochain"}
ROLES = {"mesh": 720 * 3600, "short": 3600}


def go_duration(seconds):
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s"


def parse_ttl(text):
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"(\d+)(s|m|h|d)?", str(text))
    if not m:
        raise ValueError(f"error parsing ttl: time: invalid duration \"{text}\"")
    n = int(m.group(1))
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]


class State:
    def __init__(self, args):
        self.args = args
        self.tokens = {open(args.token_file).read().strip()}
        self.lock = threading.Lock()
        self.ca_pem = open(os.path.join(args.dir, "vault-ca.pem")).read()
        self.log = open(args.log, "a", buffering=1)
        cadir = os.path.join(args.dir, "ca-db")
        os.makedirs(os.path.join(cadir, "new"), exist_ok=True)
        open(os.path.join(cadir, "index.txt"), "a").close()
        with open(os.path.join(cadir, "serial"), "w") as f:
            f.write("01\n")   # -rand_serial is used; openssl ca still wants the file named
        self.cnf = os.path.join(cadir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(f"""[ca]
default_ca = d
[d]
database = {cadir}/index.txt
serial = {cadir}/serial
new_certs_dir = {cadir}/new
certificate = {args.dir}/vault-ca.pem
private_key = {args.dir}/vault-ca.key
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = optional
""")

    def sign(self, csr, cn, uris, ttl):
        now = datetime.datetime.now(datetime.timezone.utc)
        nb = (now - datetime.timedelta(seconds=30)).strftime("%Y%m%d%H%M%SZ")
        na = (now + datetime.timedelta(seconds=ttl)).strftime("%Y%m%d%H%M%SZ")
        with tempfile.TemporaryDirectory() as t:
            with open(f"{t}/csr.pem", "w") as f:
                f.write(csr)
            with open(f"{t}/ext.cnf", "w") as f:
                f.write("[leaf]\nbasicConstraints=critical,CA:FALSE\n"
                        "keyUsage=critical,digitalSignature,keyEncipherment\n"
                        "extendedKeyUsage=serverAuth,clientAuth\n"
                        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
                if uris:
                    f.write("subjectAltName=" + ",".join("URI:" + u for u in uris) + "\n")
            with self.lock:
                r = subprocess.run(
                    ["openssl", "ca", "-batch", "-config", self.cnf, "-in", f"{t}/csr.pem",
                     "-out", f"{t}/cert.pem", "-notext", "-rand_serial", "-utf8",
                     "-startdate", nb, "-enddate", na, "-subj", "/CN=" + cn,
                     "-extfile", f"{t}/ext.cnf", "-extensions", "leaf"],
                    capture_output=True, text=True)
            if r.returncode != 0:
                return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "openssl failed"
            return open(f"{t}/cert.pem").read(), None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vault-pki-test-double"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else (
            json.dumps(body).encode() if not isinstance(body, str) else body.encode())
        self.server.state.log.write(f"{self.command} {self.path} {status} port={self.client_address[1]}\n")
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def errors(self, status, *msgs):
        self.reply(status, {"errors": list(msgs)})

    def read_body(self):
        # Read before any answer: an unread body would be parsed as the next request on this
        # keep-alive connection.
        n = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(n) if n else b""

    def body(self):
        return json.loads(self.raw or b"{}")

    def authorized(self):
        st = self.server.state
        if (self.headers.get("X-Vault-Namespace") or "") != st.args.namespace:
            self.errors(403, "permission denied")
            return False
        if self.headers.get("X-Vault-Token") not in st.tokens:
            self.errors(403, "permission denied")
            return False
        return True

    def route(self):
        m = re.fullmatch(r"/v1/([a-z0-9-]+)/(sign/([A-Za-z0-9_.-]+)|ca_chain|ca/pem)", self.path)
        if not m or m.group(1) not in MOUNTS:
            self.errors(404, f"no handler for route \"{self.path[4:]}\". route entry not found.")
            return None
        mount = m.group(1)
        if mount == "pki-slow":
            time.sleep(self.server.state.args.slow)
        if mount == "pki-5xx":
            self.errors(500, "1 error occurred:\n\t* internal error: storage backend failed\n\n")
            return None
        if mount == "pki-bad":
            self.reply(200, '{"data": {"certificate": "-----BEGIN CERT')
            return None
        return mount, m.group(2), m.group(3)

    def do_GET(self):
        self.read_body()
        if not self.authorized():
            return
        r = self.route()
        if not r:
            return
        mount, what, _ = r
        if what.startswith("sign/"):
            self.errors(405, "1 error occurred:\n\t* unsupported operation\n\n")
            return
        if what == "ca_chain" and mount == "pki-nochain":
            self.reply(200, b"", "text/plain")
            return
        self.reply(200, self.server.state.ca_pem,
                   "application/pem-certificate-chain" if what == "ca_chain" else "application/pem-certificate")

    def do_POST(self):
        st = self.server.state
        self.read_body()
        if self.path == "/v1/auth/cert/login":
            self.body()
            if (self.headers.get("X-Vault-Namespace") or "") != st.args.namespace:
                self.errors(403, "permission denied")
                return
            if not self.connection.getpeercert():
                self.errors(400, "invalid certificate or no client certificate supplied")
                return
            tok = "hvs.cert-" + secrets.token_hex(12)
            st.tokens.add(tok)
            self.reply(200, {"request_id": secrets.token_hex(8), "lease_id": "", "renewable": False,
                             "lease_duration": 0, "data": None, "warnings": None,
                             "auth": {"client_token": tok, "accessor": secrets.token_hex(8),
                                      "policies": ["default", "pki"], "lease_duration": st.args.lease,
                                      "renewable": True}})
            return
        if not self.authorized():
            return
        r = self.route()
        if not r:
            return
        mount, what, role = r
        if not what.startswith("sign/"):
            self.errors(405, "1 error occurred:\n\t* unsupported operation\n\n")
            return
        if role not in ROLES:
            self.errors(400, f"unknown role: {role}")
            return
        try:
            req = self.body()
            ttl = parse_ttl(req.get("ttl", "720h"))
        except ValueError as e:
            self.errors(400, str(e))
            return
        if not req.get("csr"):
            self.errors(400, "\"csr\" is empty")
            return
        cn = req.get("common_name") or ""
        if not cn:
            self.errors(400, "the common_name field is required, or must be provided in a CSR with \"use_csr_common_name\" set to true, unless \"require_cn\" is set to false")
            return
        uris = req.get("uri_sans") or []
        if isinstance(uris, str):
            uris = [u for u in uris.split(",") if u]
        warnings = None
        max_ttl = ROLES[role]
        if ttl > max_ttl:
            warnings = [f"TTL \"{go_duration(ttl)}\" is longer than permitted maxTTL \"{go_duration(max_ttl)}\", so maxTTL is being used"]
            ttl = max_ttl
        cert, err = st.sign(req["csr"], cn, uris, ttl)
        if err:
            self.errors(400, f"certificate request could not be parsed: {err}")
            return
        self.reply(200, {"request_id": secrets.token_hex(8), "lease_id": "", "renewable": False,
                         "lease_duration": 0, "warnings": warnings, "auth": None,
                         "data": {"certificate": cert, "issuing_ca": st.ca_pem,
                                  "ca_chain": [st.ca_pem], "serial_number": "00",
                                  "expiration": int(time.time()) + ttl}})


def main():
    p = argparse.ArgumentParser(description="Vault PKI TEST DOUBLE (not Vault)")
    p.add_argument("--dir", required=True, help="holds vault-ca.pem/.key, server.pem/.key, client-ca.pem")
    p.add_argument("--token-file", required=True)
    p.add_argument("--namespace", default="")
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--lease", type=int, default=3600, help="lease_duration of cert-login tokens")
    p.add_argument("--slow", type=float, default=5.0, help="delay of the pki-slow mount, seconds")
    args = p.parse_args()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.dir, "server.pem"), os.path.join(args.dir, "server.key"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(os.path.join(args.dir, "client-ca.pem"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
