#!/usr/bin/env python3
"""hostile_controller.py PORT DIR: a dataplane API that signs the agent's CSR wrongly, as a
compromised or broken controller could (test/agent-hostile-controller.sh).

DIR holds tls.pem/tls-key.pem (its server certificate), mesh-ca.pem/mesh-ca-key.pem (the CA it
signs with), other-ca.pem (a CA that did not sign), and `mode`, read on every request:
  ok           the right certificate: urn:meshca:dataplane:default:web-01, spiffe://default/web
  other-dp     urn:meshca:dataplane:default:web-02 (another dataplane of the mesh)
  other-mesh   urn:meshca:dataplane:other:web-01 and spiffe://other/web
  spiffe-other the right urn, but spiffe://other/web beside it
  bundle-junk  the right certificate, caBundle "not a certificate"
  bundle-other the right certificate, caBundle of a CA that did not sign it
  chain-junk   the right certificate, chain "junk"
  leaf-extra   the right certificate with another certificate after it in `certificate`
Every ack is appended to DIR/acks. Listens on 127.0.0.1 only; the script kills it.
"""
import http.server, json, os, ssl, subprocess, sys

PORT, DIR = int(sys.argv[1]), sys.argv[2]
SANS = {
    "ok": ["urn:meshca:dataplane:default:web-01", "spiffe://default/web"],
    "other-dp": ["urn:meshca:dataplane:default:web-02", "spiffe://default/web"],
    "other-mesh": ["urn:meshca:dataplane:other:web-01", "spiffe://other/web"],
    "spiffe-other": ["urn:meshca:dataplane:default:web-01", "spiffe://other/web"],
}


def path(name):
    return os.path.join(DIR, name)


def sign(csr_pem, sans):
    with open(path("csr.pem"), "w") as f:
        f.write(csr_pem)
    with open(path("ext.cnf"), "w") as f:
        f.write("subjectAltName=" + ",".join("URI:" + s for s in sans) + "\n"
                "extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n")
    return subprocess.run(
        ["openssl", "x509", "-req", "-in", path("csr.pem"), "-CA", path("mesh-ca.pem"),
         "-CAkey", path("mesh-ca-key.pem"), "-CAcreateserial", "-days", "1",
         "-extfile", path("ext.cnf")], check=True, capture_output=True, text=True).stdout


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    csr = None

    def log_message(self, *args):
        pass

    def reply(self, status, doc, index=None):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if index is not None:
            self.send_header("X-Meshca-Index", str(index))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")

    def do_POST(self):
        Handler.csr = self.body().get("csr")
        self.reply(202, {"status": "accepted"})

    def do_PUT(self):
        with open(path("acks"), "a") as f:
            f.write(json.dumps(self.body()) + "\n")
        self.reply(200, {"generation": 1})

    def do_GET(self):
        if not Handler.csr:
            self.reply(404, {"error": {"code": "not-issued",
                                       "message": "no certificate has been issued to default/web-01 yet"}})
            return
        mode = open(path("mode")).read().strip()
        leaf = sign(Handler.csr, SANS.get(mode, SANS["ok"]))
        bundle = open(path("mesh-ca.pem")).read()
        chain = ""
        if mode == "bundle-junk":
            bundle = "not a certificate\n"
        elif mode == "bundle-other":
            bundle = open(path("other-ca.pem")).read()
        elif mode == "chain-junk":
            chain = "junk\n"
        elif mode == "leaf-extra":
            leaf += open(path("other-ca.pem")).read()
        self.reply(200, {"generation": 1, "backend": "ca-1", "certificate": leaf, "chain": chain,
                         "caBundle": bundle, "notAfter": "2099-01-01T00:00:00Z",
                         "renewAt": "2098-01-01T00:00:00Z"}, index=1)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(path("tls.pem"), path("tls-key.pem"))
srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(path("ready"), "w").close()
srv.serve_forever()
