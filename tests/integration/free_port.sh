# free_port.sh - free_port, for the integration tests (common.sh) and the
# bench scripts. Sourced; needs $PYTHON.

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago.
# It is drawn at random below the kernel's ephemeral range
# (ip_local_port_range): a port from bind(0) is one that any client's
# outgoing connection may take before the server binds it ("Address
# already in use" seen in CI with several tests running); below the range
# only another test's free_port can, and a random draw makes that rare.
free_port() {
	"$PYTHON" -c 'import random, socket
lo = 32768
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    pass
lo = max(lo, 12000)
for _ in range(200):
    p = random.randrange(10000, lo)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])'
}
