"""A standard S3 client (boto3) lists and reads what the state mirror wrote.

Run by tests/interop.rs with ENDPOINT, ACCESS_KEY, SECRET_KEY, BUCKET, PREFIX
and EXPECTED (a JSON object of path -> content) in the environment.
"""

import hashlib
import json
import os
import sys

import boto3
from botocore.config import Config

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["ENDPOINT"],
    aws_access_key_id=os.environ["ACCESS_KEY"],
    aws_secret_access_key=os.environ["SECRET_KEY"],
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
)
bucket, prefix = os.environ["BUCKET"], os.environ["PREFIX"]
expected = json.loads(os.environ["EXPECTED"])

pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/manifests/")
manifests = sorted(item["Key"] for page in pages for item in page.get("Contents", []))
assert manifests, "no manifest listed"
manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifests[-1])["Body"].read())
assert sorted(manifest["files"]) == sorted(expected), (manifest["files"].keys(), expected.keys())
for path, entry in manifest["files"].items():
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/objects/{entry['hash'][:2]}/{entry['hash']}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["hash"], path
    assert body.decode() == expected[path], path
print(f"boto3 read {len(manifest['files'])} files of snapshot {manifest['seq']}", file=sys.stderr)
