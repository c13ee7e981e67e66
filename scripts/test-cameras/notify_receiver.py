#!/usr/bin/python3
"""A local HTTPS receiver for notification-channel tests on 127.0.0.1 that checks each provider's documented
request shape the way the provider would, and answers 200 or 400 with the reason (as they do):

  /slack/...           Slack incoming webhook: JSON, "text" plus "blocks" of header/section with text objects
  /teams/...           Teams webhook: JSON message with one Adaptive Card attachment of TextBlocks
  /discord/...         Discord webhook: JSON "content" and/or "embeds" (title <= 256, description)
  /bot<T>/sendPhoto    Telegram: multipart chat_id, caption (<= 1024) and a JPEG "photo"
  /bot<T>/sendMediaGroup  Telegram album: multipart chat_id, "media" JSON of photos "attach://<part>", JPEG parts
  /bot<T>/sendMessage  Telegram: JSON chat_id and text
  /ntfy/<topic>        ntfy: a text body with a Title header
  /gotify/message      Gotify: JSON title, message, integer priority; X-Gotify-Key header
  /1/messages.json     Pushover: multipart token, user, message (<= 1024), optional JPEG "attachment"
  /hook/...            generic webhook: JSON kind + incident; X-StreamPulse-Signature checked with --hmac

Each request is appended to --out as one JSON line: {"path", "ok", "why", "fields"} (fields: what was read,
a JPEG given as its size and whether it starts and ends like one). --fail N answers the first N with 500.
Prints "READY port=P"; exits when its parent goes away."""
import argparse
import asyncio
import email.parser
import email.policy
import hashlib
import hmac
import json
import os
import ssl


def jpeg_facts(data):
    return {"bytes": len(data), "jpeg": data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"}


def multipart(headers, body):
    raw = b"Content-Type: " + headers.get("content-type", "").encode() + b"\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    if not message.is_multipart():
        raise ValueError("not multipart/form-data")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            fields[name] = dict(jpeg_facts(payload), type=part.get_content_type(), filename=part.get_filename())
        else:
            fields[name] = payload.decode("utf-8")
    return fields


def check(method, path, headers, body, secret):
    """Returns (fields, None) when the shape is right, else (fields, why)."""
    if path.startswith("/slack/"):
        j = json.loads(body)
        if not isinstance(j.get("text"), str) or not isinstance(j.get("blocks"), list) or not j["blocks"]:
            return j, "invalid_blocks: text and blocks are required"
        for block in j["blocks"]:
            if block.get("type") not in ("header", "section") or block["text"].get("type") not in ("plain_text", "mrkdwn"):
                return j, "invalid_blocks: unknown block or text type"
            if block["type"] == "header" and (block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150):
                return j, "invalid_blocks: header must be plain_text of at most 150 characters"
        return j, None
    if path.startswith("/teams/"):
        j = json.loads(body)
        attachments = j.get("attachments") or []
        if j.get("type") != "message" or len(attachments) != 1:
            return j, "a message with one attachment is required"
        card = attachments[0]
        if card.get("contentType") != "application/vnd.microsoft.card.adaptive" or card["content"].get("type") != "AdaptiveCard":
            return j, "the attachment must be an Adaptive Card"
        if not all(item.get("type") == "TextBlock" and isinstance(item.get("text"), str) for item in card["content"].get("body", [])):
            return j, "the card body must be TextBlocks"
        return j, None
    if path.startswith("/discord/") and headers.get("content-type", "").startswith("multipart/"):
        fields = multipart(headers, body)
        payload = json.loads(fields.get("payload_json", "{}"))
        picture = fields.get("files[0]")
        if not isinstance(picture, dict) or not picture["jpeg"]:
            return fields, "Invalid Form Body: files[0] must be an image"
        embeds = payload.get("embeds") or [{}]
        if embeds[0].get("image", {}).get("url") != "attachment://" + picture["filename"]:
            return fields, "the embed does not show the attached file"
        second = fields.get("files[1]")
        if second is not None:
            if not isinstance(second, dict) or not second["jpeg"]:
                return fields, "Invalid Form Body: files[1] must be an image"
            if len(embeds) < 2 or embeds[1].get("image", {}).get("url") != "attachment://" + second["filename"]:
                return fields, "the second embed does not show the second file"
            return dict(payload, file=picture, file2=second), None
        return dict(payload, file=picture), None
    if path.startswith("/discord/"):
        j = json.loads(body)
        if not j.get("content") and not j.get("embeds"):
            return j, "Cannot send an empty message"
        for embed in j.get("embeds", []):
            if len(embed.get("title", "")) > 256 or not isinstance(embed.get("description", ""), str):
                return j, "Invalid Form Body: embeds"
        return j, None
    if path.startswith("/bot") and path.endswith("/sendPhoto"):
        fields = multipart(headers, body)
        photo = fields.get("photo")
        if not fields.get("chat_id") or not isinstance(photo, dict) or not photo["jpeg"]:
            return fields, "Bad Request: chat_id and a JPEG photo are required"
        if len(fields.get("caption", "")) > 1024:
            return fields, "Bad Request: message caption is too long"
        return fields, None
    if path.startswith("/bot") and path.endswith("/sendMediaGroup"):
        # An album: "media" is a JSON array of 2-10 InputMediaPhoto, each "attach://<field>" naming a file part.
        fields = multipart(headers, body)
        try:
            media = json.loads(fields.get("media", ""))
        except ValueError:
            return fields, "Bad Request: can't parse media JSON"
        if not fields.get("chat_id") or not isinstance(media, list) or not 2 <= len(media) <= 10:
            return fields, "Bad Request: chat_id and 2-10 media are required"
        photos = []
        for item in media:
            ref = str(item.get("media", ""))
            part = fields.get(ref[len("attach://"):]) if ref.startswith("attach://") else None
            if item.get("type") != "photo" or not isinstance(part, dict) or not part["jpeg"]:
                return fields, "Bad Request: each media must be a photo attached as a JPEG file"
            if len(item.get("caption", "")) > 1024:
                return fields, "Bad Request: message caption is too long"
            photos.append(dict(part, caption=item.get("caption")))
        return {"chat_id": fields["chat_id"], "photos": photos}, None
    if path.startswith("/bot") and path.endswith("/sendMessage"):
        j = json.loads(body)
        return j, None if j.get("chat_id") and j.get("text") else "Bad Request: chat_id and text are required"
    if path.startswith("/ntfy/") and headers.get("content-type") == "image/jpeg":
        fields = dict(jpeg_facts(body), title=headers.get("title"), message=headers.get("message"), filename=headers.get("filename"), method=method)
        ok = method == "PUT" and fields["jpeg"] and fields["title"] and fields["message"] and fields["filename"]
        return fields, None if ok else "an attachment is a PUT of the file with Title, Message and Filename headers"
    if path.startswith("/ntfy/"):
        fields = {"title": headers.get("title"), "priority": headers.get("priority"), "tags": headers.get("tags"),
                  "message": body.decode("utf-8"), "authorization": headers.get("authorization")}
        return fields, None if fields["title"] and fields["message"] else "a Title header and a message body are required"
    if path == "/gotify/message":
        j = json.loads(body)
        j["key"] = headers.get("x-gotify-key")
        ok = isinstance(j.get("message"), str) and isinstance(j.get("priority"), int) and j["key"]
        return j, None if ok else "message, an integer priority and X-Gotify-Key are required"
    if path == "/1/messages.json":
        fields = multipart(headers, body)
        if not fields.get("token") or not fields.get("user") or not fields.get("message"):
            return fields, "token, user and message are required"
        if len(fields["message"]) > 1024:
            return fields, "message is too long"
        attachment = fields.get("attachment")
        if attachment is not None and not attachment["jpeg"]:
            return fields, "attachment is not an image"
        return fields, None
    if path.startswith("/hook/"):
        j = json.loads(body)
        j["headers"] = {k: v for k, v in headers.items() if k.startswith("x-")}
        signature = headers.get("x-streampulse-signature")
        if secret is not None:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if signature != expected:
                return j, "bad signature"
        return j, None if j.get("kind") and isinstance(j.get("incident"), dict) else "kind and incident are required"
    return {}, "unknown path"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--hmac")
    parser.add_argument("--fail", type=int, default=0)
    args = parser.parse_args()
    failures = {"left": args.fail}

    async def handle(reader, writer):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if failures["left"] > 0:
                failures["left"] -= 1
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            try:
                fields, why = check(method, path, headers, body, args.hmac)
            except Exception as error:  # a body that does not parse is a 400, as at the provider
                fields, why = {}, "unreadable body: %s" % error
            record = {"path": path, "method": method, "ok": why is None, "why": why, "fields": fields}
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
            answer = json.dumps({"ok": why is None, "description": why}).encode()
            status = b"200 OK" if why is None else b"400 Bad Request"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: " +
                         str(len(answer)).encode() + b"\r\nConnection: close\r\n\r\n" + answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    print("READY port=%d" % server.sockets[0].getsockname()[1], flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
