"""The Triton model repository and its versions in a bucket: what the stack (components/) and the
tools (tools/) both need, defined once.

- `layout`: the formats: a model version (content hash), its storage URI and its object keys.
- `repository`: reading, validating and hashing a repository folder with Triton's own protobuf.
- `triton`: how Triton runs (ports, metrics flags, ready path), shared by the stack and the
  local server.
- `registry`: publishing, verifying and copying versions in S3 (boto3).

Imports nothing from components/ or tools/ (docs/layers.md); needs only requirements.txt, since
the stack runs it at deploy time.
"""
