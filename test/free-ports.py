#!/usr/bin/env python3
"""free-ports.py [N]: N distinct TCP ports free on 127.0.0.1 for test servers, one line.

Not port 0 (the kernel's choice): that comes from the ephemeral range, which the kernel also
gives every outgoing connection, so between our check and the server's bind a connection of a
test running beside this one could take the port ("Address already in use"). Ports below the
ephemeral range are only ever bound on purpose. A port handed out is reserved for 10 minutes by
a file in $TMPDIR/meshca-test-ports, so two tests picking at the same moment do not collide.
"""
import os, random, socket, sys, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    ephemeral_low = 32768
low, high = 10000, max(ephemeral_low - 1, 10999)
reserved = os.path.join(os.environ.get("TMPDIR", "/tmp"), "meshca-test-ports")
os.makedirs(reserved, exist_ok=True)


def reserve(port):
    """True when no other test took this port in the last 10 minutes (its file is ours now)."""
    path = os.path.join(reserved, str(port))
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        try:
            if time.time() - os.stat(path).st_mtime < 600:
                return False
            os.utime(path)   # a stale reservation: take it over
            return True
        except OSError:
            return False


ports, socks = [], []
for _ in range(20 * (high - low + 1)):
    if len(ports) == n:
        break
    port = random.randint(low, high)
    if port in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))   # free now; kept bound until all are found, so they differ
    except OSError:
        s.close()
        continue
    if not reserve(port):
        s.close()
        continue
    socks.append(s)
    ports.append(port)
for s in socks:
    s.close()
if len(ports) < n:
    sys.exit("free-ports.py: fewer than %d free ports in %d-%d on 127.0.0.1" % (n, low, high))
print(" ".join(map(str, ports)))
