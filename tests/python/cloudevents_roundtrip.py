"""Reads one stored message straight from NATS (nats-py) and parses it with
the official CloudEvents SDK, as the NATS binding says: every `ce-*` header is
an attribute (percent-decoded), the payload is the data. The headers are put in
the binding's HTTP form (`ce-datacontenttype` becomes `Content-Type`) and read
with the SDK's HTTP binary-mode parser.

Usage: cloudevents_roundtrip.py NATS_URL STREAM SEQ
Prints one JSON object: the attributes as the SDK read them, the data, and
the raw time header decoded (Python's datetime keeps only microseconds).
"""

import asyncio
import json
import sys
from urllib.parse import unquote

import nats
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat


async def main(url: str, stream: str, seq: int) -> None:
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_msg(stream, seq=seq)
    finally:
        await nc.close()
    headers = {}
    for name, value in (msg.headers or {}).items():
        name = name.lower()
        if name == "ce-datacontenttype":
            headers["content-type"] = value
        elif name.startswith("ce-"):
            headers[name] = value
    event = from_http(HTTPMessage(headers=headers, body=msg.data), JSONFormat())
    attributes = {
        "specversion": event.get_specversion(),
        "id": event.get_id(),
        "source": event.get_source(),
        "type": event.get_type(),
        "subject": event.get_subject(),
        "datacontenttype": event.get_datacontenttype(),
        "time": event.get_time().isoformat() if event.get_time() else None,
    }
    print(
        json.dumps(
            {
                "attributes": attributes,
                "data": event.get_data(),
                "raw_time": unquote(headers["ce-time"]) if "ce-time" in headers else None,
                "nats_headers": sorted((msg.headers or {}).keys()),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
