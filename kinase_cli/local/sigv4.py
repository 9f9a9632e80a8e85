"""SigV4 verification for the local Kinesis Video endpoint, so unsigned clients fail here as on AWS.

The signature is recomputed with botocore's own signer from the headers the client says it signed.
Streaming bodies (PutMedia) cannot be hashed before they are read: their signature covers the
`X-Amz-Content-SHA256` header when it is signed, else the hash of an empty payload (which is how
the public PutMedia producers, and `kinase stream put`, sign).
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime, timedelta, timezone

from kinase_cli.aws.target import LOCAL_CREDENTIALS

MAX_SKEW = timedelta(minutes=15)
ACCESS_KEY = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
SECRET_KEY = LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)


class AuthError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def verify(method: str, url: str, headers, body: bytes | None) -> None:
    """Raise AuthError unless `headers` carry a valid signature by the local fake credentials.

    `url` is the full request URL (scheme, host, path, query); `headers` a case-insensitive mapping;
    `body` the request body, or None for a streaming body that has not been read.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = headers.get("Authorization")
    if not authorization:
        raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.match(authorization.strip())
    amz_date = headers.get("X-Amz-Date")
    if not match or not amz_date:
        raise AuthError("IncompleteSignatureException", "The request signature is malformed.")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise AuthError("IncompleteSignatureException", "X-Amz-Date is not a SigV4 timestamp.") from None
    if abs(datetime.now(timezone.utc) - signed_at) > MAX_SKEW:
        raise AuthError("InvalidSignatureException", f"Signature expired: {amz_date} is more than 15 minutes from now.")
    if match["key"] != ACCESS_KEY:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = match["signed"].split(";")
    request = AWSRequest(method=method, url=url, data=body or b"")
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise AuthError("IncompleteSignatureException", f"Signed header {name} is missing.")
        request.headers[name] = value
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise AuthError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
