"""A TCP and UDP echo server to run inside a network namespace (`ip netns exec NS python3
ns_echo.py IP PORT`): prints `listening on IP:PORT` once both are bound, then echoes every byte
of every TCP connection and every UDP datagram until killed. Whatever the proxy writes first (a PROXY protocol header) comes back
to the client verbatim, so a test reads what the task saw. Standard library only."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    server = harness.TcpEchoServer(sys.argv[1], int(sys.argv[2]))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((sys.argv[1], server.port))

    def udp_echo():
        while True:
            data, peer = u.recvfrom(65535)
            u.sendto(data, peer)
    threading.Thread(target=udp_echo, daemon=True).start()
    print(f"listening on {server.ip}:{server.port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
