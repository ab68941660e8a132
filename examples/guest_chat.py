"""A minimal netbus client: log in as a guest, enter the talkroom, say something, listen.

    python examples/guest_chat.py --url tcp://127.0.0.1:6080 --name Ann "hello, room"

The guest key is kept in a local file (like the original client's local storage), so every
run logs into the same account. Prints the account, the reply to the message, and the pushes
that arrive during ``--listen`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from netbus.client import Client
from netbus.client.guest import load_or_create_key
from netbus.protocol import ProtoType
from netbus.roles import Stype
from netbus.roles.talkroom import TalkroomCmd, TalkroomService
from netbus.service import client_codecs


async def main(url: str, key_file: str, name: str, message: str, listen: float, buf: bool) -> None:
    proto = ProtoType.BUF if buf else ProtoType.JSON
    codecs = client_codecs(TalkroomService)  # the talkroom's BUF layouts, from the service
    async with await Client.connect(url, proto_type=proto, codecs=codecs) as client:
        account = await client.guest_login(load_or_create_key(key_file))
        if account.get("status") != 1:
            raise SystemExit(f"login refused: status {account.get('status')}")
        print(f"logged in: uid {account['uid']} ({account['unick']})")
        print(f"enter: {await client.enter(name, 0)}")
        reply = await client.send_msg(message)
        print(f"sent: status {reply['0']}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(listen):
                while True:
                    push = await client.next_push(Stype.TalkRoom, timeout=listen)
                    if push.ctype == TalkroomCmd.UserMsg:
                        print(f"<{push.body['0']}> {push.body['2']}")
                    elif push.ctype == TalkroomCmd.UserArrived:
                        print(f"* {push.body['uname']} is here")
                    elif push.ctype == TalkroomCmd.UserExit:
                        print(f"* {push.body['uname']} left")
        print(f"exit: {await client.exit()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message")
    parser.add_argument("--url", default="tcp://127.0.0.1:6080")
    parser.add_argument("--key-file", default=".netbus/example_guest_key")
    parser.add_argument("--name", default="example")
    parser.add_argument("--listen", type=float, default=2.0, help="seconds to print pushes")
    parser.add_argument("--buf", action="store_true", help="BUF bodies for the talkroom")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.key_file, args.name, args.message, args.listen, args.buf))
