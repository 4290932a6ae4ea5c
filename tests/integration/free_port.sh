# free_port.sh - free_port, for the integration tests (common.sh) and the
# bench scripts. Sourced; needs $PYTHON.

# free_port: print a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	"$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
