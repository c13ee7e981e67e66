#!/usr/bin/python3
"""A local SMTP submission server for email-channel tests (aiosmtpd from PyPI, in .build/notify-python):
STARTTLS required before AUTH (PLAIN/LOGIN) with --user/--password; each accepted mail is written to
--out/N.eml. Prints "READY port=P"; exits when its parent goes away."""
import argparse
import os
import socket
import ssl
import sys
import time

# setup-deps --test installs aiosmtpd into the project's .build/notify-python.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".build", "notify-python"))
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    count = {"n": 0}

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            count["n"] += 1
            with open(os.path.join(args.out, "%d.eml" % count["n"]), "wb") as f:
                f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
                f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
                f.write(envelope.original_content)
            return "250 Message accepted"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user and auth_data.password.decode() == args.password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    # The controller checks itself by connecting to its port, so it needs a real one (not 0).
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    controller = Controller(Handler(), hostname="127.0.0.1", port=free, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_required=True)
    controller.start()
    port = free
    print("READY port=%d" % port, flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    controller.stop()


if __name__ == "__main__":
    main()
