#!/usr/bin/env python3
# generate.py - writes the inline-CA fixtures of validate-cli.sh (issue 9 #21): one good CA and one
# CA per defect that `apply` refuses. Run once by hand (python3-cryptography); the output is
# checked in, so the tests need no generator. Validity dates are fixed and far from now.
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
D = datetime.datetime
GOOD = (D(2025, 1, 1), D(2099, 12, 31))


def key(kind="p256"):
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))


def cert(k, cn, issuer=None, issuer_key=None, ca=True, pathlen=None, dates=GOOD,
         key_cert_sign=True, key_agreement=False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer.subject if issuer else name)
         .public_key(k.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(dates[0]).not_valid_after(dates[1])
         .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca or not key_cert_sign,
                                      content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=key_agreement,
                                      key_cert_sign=ca and key_cert_sign, crl_sign=ca and key_cert_sign,
                                      encipher_only=False, decipher_only=False), critical=True))
    return b.sign(issuer_key or k, hashes.SHA256())


def pem(*items):
    out = b""
    for it in items:
        if isinstance(it, x509.Certificate):
            out += it.public_bytes(serialization.Encoding.PEM)
        else:
            out += it.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return out


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


k = key()
write("good.cert.pem", pem(cert(k, "good")))
write("good.key.pem", pem(k))

k = key()
write("expired.cert.pem", pem(cert(k, "expired", dates=(D(2000, 1, 1), D(2001, 1, 1)))))
write("expired.key.pem", pem(k))

k = key()
write("not-yet-valid.cert.pem", pem(cert(k, "not-yet-valid", dates=(D(2098, 1, 1), D(2099, 1, 1)))))
write("not-yet-valid.key.pem", pem(k))

k, other = key(), key()
write("key-mismatch.cert.pem", pem(cert(k, "key-mismatch")))
write("key-mismatch.key.pem", pem(other))

k = key()
write("leaf-as-ca.cert.pem", pem(cert(k, "leaf", ca=False)))
write("leaf-as-ca.key.pem", pem(k))

k = key("rsa1024")
write("rsa-1024.cert.pem", pem(cert(k, "rsa-1024")))
write("rsa-1024.key.pem", pem(k))

k = key()
write("no-keycertsign.cert.pem", pem(cert(k, "no-keycertsign", key_cert_sign=False)))
write("no-keycertsign.key.pem", pem(k))

k = key()
write("key-agreement.cert.pem", pem(cert(k, "key-agreement", key_agreement=True)))
write("key-agreement.key.pem", pem(k))

k = key("p521")
write("p521.cert.pem", pem(cert(k, "p521")))
write("p521.key.pem", pem(k))

# Chains: an intermediate signed by a root. Right order is intermediate first.
rk, ik = key(), key()
root = cert(rk, "root")
inter = cert(ik, "intermediate", issuer=root, issuer_key=rk)
write("chain-order.cert.pem", pem(root, inter))
write("chain-order.key.pem", pem(ik))
# pathlen 0 on the root forbids the intermediate CA below it.
rk0 = key()
root0 = cert(rk0, "root-pathlen-0", pathlen=0)
inter0 = cert(ik, "intermediate-below-pathlen-0", issuer=root0, issuer_key=rk0)
write("path-length.cert.pem", pem(inter0, root0))
write("path-length.key.pem", pem(ik))
