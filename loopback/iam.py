"""The IAM actions each request needs, as AWS's service authorization reference names them.

The endpoint records them per request (``GET /_loopback/actions``, ``LoopbackS3.actions``) so
that a test can hold a flow's documented least-privilege policy (docs/iam.md) to what the
flow really calls: an action it never needed, or one it needed and the policy lacks, fails.

What S3 asks of KMS on the caller's behalf (``kms:GenerateDataKey``, ``kms:Decrypt`` under
SSE-KMS) and ``iam:PassRole`` for a Batch Operations job's role are not requests to this
endpoint: docs/iam.md states them separately.
"""

from __future__ import annotations

from loopback.request import Request, read_body

#: Bucket sub-resources read or written, by query name: (GET action, PUT action).
_BUCKET_SETTINGS = {
    "versioning": ("s3:GetBucketVersioning", "s3:PutBucketVersioning"),
    "encryption": ("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    "object-lock": ("s3:GetBucketObjectLockConfiguration", "s3:PutBucketObjectLockConfiguration"),
    "lifecycle": ("s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
    "tagging": ("s3:GetBucketTagging", "s3:PutBucketTagging"),
    "policy": ("s3:GetBucketPolicy", "s3:PutBucketPolicy"),
    "location": ("s3:GetBucketLocation", "s3:GetBucketLocation"),
    "acl": ("s3:GetBucketAcl", "s3:PutBucketAcl"),
    "notification": ("s3:GetBucketNotification", "s3:PutBucketNotification"),
    "ownershipControls": ("s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
    "publicAccessBlock": ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
}

_GLACIER = {
    "InitiateJob": "glacier:InitiateJob",
    "ListJobs": "glacier:ListJobs",
    "GetJobOutput": "glacier:GetJobOutput",
    "DescribeJob": "glacier:DescribeJob",
    "UploadArchive": "glacier:UploadArchive",
    "DeleteArchive": "glacier:DeleteArchive",
    "DescribeVault": "glacier:DescribeVault",
    "CreateVault": "glacier:CreateVault",
    "DeleteVault": "glacier:DeleteVault",
}
_CONTROL = {
    "CreateJob": "s3:CreateJob",
    "ListJobs": "s3:ListJobs",
    "DescribeJob": "s3:DescribeJob",
    "UpdateJobStatus": "s3:UpdateJobStatus",
}


def needed(request: Request, environ: dict) -> list[str]:
    """The IAM actions ``request`` needs, DeleteObjects' entries included (empty for calls
    that need none, such as STS's GetCallerIdentity)."""
    if request.service == "glacier":
        return [_GLACIER.get(request.operation.removeprefix("Glacier:"), request.operation)]
    if request.service == "s3control":
        return [_CONTROL.get(request.operation.removeprefix("S3Control:"), request.operation)]
    if request.service == "sts":
        return []
    if request.service != "s3":
        return [f"{request.service}:{request.operation}"]
    return _bucket(request, environ) if not request.key else _object(request)


def _bucket(request: Request, environ: dict) -> list[str]:
    q, method = request.query, request.method
    for name, (read, write) in _BUCKET_SETTINGS.items():
        if name in q:
            return [read if method == "GET" else write]
    if method == "POST" and "delete" in q:
        return _delete_many(request, environ)
    if method == "PUT":
        return ["s3:CreateBucket"]
    if method == "DELETE":
        return ["s3:DeleteBucket"]
    if "versions" in q:
        return ["s3:ListBucketVersions"]
    if "uploads" in q:
        return ["s3:ListBucketMultipartUploads"]
    return ["s3:ListBucket"]  # ListObjectsV2, HeadBucket


def _object(request: Request) -> list[str]:
    q, method, h = request.query, request.method, request.headers
    version = "versionId" in q
    copy = h.get("x-amz-copy-source")
    found: list[str] = []
    if copy:  # the source is read as GetObject (of a version when it names one)
        found.append("s3:GetObjectVersion" if "versionId=" in copy else "s3:GetObject")
        if "partNumber" not in q and h.get("x-amz-tagging-directive", "COPY") == "COPY":
            # tags copied with the object: read at the source, written at the copy
            found += ["s3:GetObjectTagging", "s3:PutObjectTagging"]
    if h.get("x-amz-tagging") and "s3:PutObjectTagging" not in found:
        found.append("s3:PutObjectTagging")
    if method == "POST" and "restore" in q:
        return ["s3:RestoreObject"]
    if "tagging" in q:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}[method]
        return [f"s3:{verb}Object{'Version' if version else ''}Tagging"]
    if "retention" in q:
        return ["s3:GetObjectRetention" if method == "GET" else "s3:PutObjectRetention"]
    if "legal-hold" in q:
        return ["s3:GetObjectLegalHold" if method == "GET" else "s3:PutObjectLegalHold"]
    if "attributes" in q:  # both, as AWS's GetObjectAttributes page asks
        if version:
            return ["s3:GetObjectVersion", "s3:GetObjectVersionAttributes"]
        return ["s3:GetObject", "s3:GetObjectAttributes"]
    if "uploadId" in q and method == "DELETE":
        return ["s3:AbortMultipartUpload"]
    if "uploadId" in q and method == "GET":
        return ["s3:ListMultipartUploadParts"]
    if method in ("GET", "HEAD"):
        return ["s3:GetObjectVersion" if version else "s3:GetObject"]
    if method in ("PUT", "POST"):  # PutObject, CopyObject, multipart uploads and part copies
        return [*found, "s3:PutObject"]
    if method == "DELETE":
        return _deletes(h, ["s3:DeleteObjectVersion" if version else "s3:DeleteObject"])
    return [f"s3:{method}"]


def _delete_many(request: Request, environ: dict) -> list[str]:
    """DeleteObjects: s3:DeleteObject, s3:DeleteObjectVersion for entries naming a version,
    and s3:GetObject when an entry is conditional on its ETag (AWS asks for both)."""
    body = read_body(environ)
    found = ["s3:DeleteObject"]
    if b"<VersionId>" in body:
        found.append("s3:DeleteObjectVersion")
    if b"<ETag>" in body:
        found.append("s3:GetObject")
    return _deletes(request.headers, found)


def _deletes(headers: dict, found: list[str]) -> list[str]:
    if headers.get("if-match"):
        found.append("s3:GetObject")
    if headers.get("x-amz-bypass-governance-retention", "").lower() == "true":
        found.append("s3:BypassGovernanceRetention")
    return found
