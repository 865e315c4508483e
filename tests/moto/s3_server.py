"""moto's S3 API on 127.0.0.1 for the object-storage tests and benches.

One request at a time (werkzeug without threads): moto's threaded server
checks If-Match / If-None-Match and then writes, non-atomically, and lost
updates under contention; served one at a time, every conditional write is
atomic, as on S3.

IAM authentication is on (INITIAL_NO_AUTH_ACTION_COUNT=0), so wrong
credentials are refused as S3 refuses them. Two users are made at start:
"writer" (s3:*) and "reader" (s3:Get*, s3:List*, so its writes are refused).

Prints one JSON line, {"port", "writer": {"key", "secret"}, "reader": {...}},
then serves until its standard input closes (the test process ended).
With --log FILE, appends one JSON line per request: method, path, query,
status, bytes_in (request body), bytes_out (response body), key (access key
id). POST /auh-admin/buckets/NAME creates a bucket (test set-up, no auth).
"""

import argparse
import json
import os
import sys
import threading
from urllib.parse import quote, unquote

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")

import moto.iam.access_control as access_control  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.iam.models import iam_backends  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    create_backend_app,
)
from moto.s3.models import s3_backends  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

# moto 5.2.1 checks a signature against the percent-decoded URL
# (`delimiter=/`), while SigV4 signs the query in its canonical encoding
# (`delimiter=%2F`), so a listing with a delimiter or prefix fails with
# SignatureDoesNotMatch for clients that encode it (object_store). Check it
# against the path as received and the query in SigV4's canonical form
# (each name and value encoded except A-Z a-z 0-9 - _ . ~), which every
# client signs whether it sent `/` or `%2F`. One request at a time, so a
# global holds the request line.
RAW_URI = {"uri": ""}
_create_aws_request = access_control.IAMRequestBase._create_aws_request


def canonical_uri(raw):
    path, _, query = raw.partition("?")
    if not query:
        return path
    pairs = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        pairs.append(
            quote(unquote(name), safe="-_.~") + "=" + quote(unquote(value), safe="-_.~")
        )
    return path + "?" + "&".join(pairs)


def _create_raw_aws_request(self):
    request = _create_aws_request(self)
    if RAW_URI["uri"]:
        request.url = canonical_uri(RAW_URI["uri"])
    return request


access_control.IAMRequestBase._create_aws_request = _create_raw_aws_request

POLICIES = {
    "writer": ["s3:*"],
    "reader": ["s3:Get*", "s3:List*"],
}


def make_users():
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    users = {}
    for name, actions in POLICIES.items():
        iam.create_user("us-east-1", name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(name, f"{name}-s3", json.dumps(policy))
        key = iam.create_access_key(name)
        users[name] = {"key": key.access_key_id, "secret": key.secret_access_key}
    return users


class Logged:
    """WSGI middleware: the admin route, and the request log."""

    def __init__(self, app, log):
        self.app = app
        self.log = open(log, "a", buffering=1) if log else None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/auh-admin/buckets/") and environ["REQUEST_METHOD"] == "POST":
            name = path.rsplit("/", 1)[1]
            s3_backends[DEFAULT_ACCOUNT_ID]["aws"].create_bucket(name, "us-east-1")
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        RAW_URI["uri"] = environ.get("RAW_URI") or environ.get("REQUEST_URI", "")
        status = {}

        def recording_start(code, headers, exc_info=None):
            status["code"] = int(code.split()[0])
            return start_response(code, headers, exc_info)

        body = b"".join(self.app(environ, recording_start))
        if self.log:
            auth = environ.get("HTTP_AUTHORIZATION", "")
            key = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""
            entry = {
                "method": environ["REQUEST_METHOD"],
                "path": path,
                "query": environ.get("QUERY_STRING", ""),
                "status": status.get("code"),
                "bytes_in": int(environ.get("CONTENT_LENGTH") or 0),
                "bytes_out": len(body),
                "key": key,
            }
            self.log.write(json.dumps(entry) + "\n")
        return [body]


class Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    users = make_users()
    app = Logged(DomainDispatcherApplication(create_backend_app), args.log)
    server = make_server("127.0.0.1", args.port, app, threaded=False, request_handler=Quiet)
    print(json.dumps({"port": server.server_port, **users}), flush=True)

    def exit_with_parent():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
