"""One readable line for every failure an operator can cause or meet.

Commands raise `KinaseError`; AWS SDK exceptions are translated here by class name so that this
module never imports botocore (it is on the path of `kinase --help`).
"""

from __future__ import annotations

from worker.retry import error_code


class KinaseError(Exception):
    """A failure with a message for humans and, optionally, what to do about it."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def translate(exc: BaseException) -> KinaseError | None:
    """Map SDK and OS exceptions to a KinaseError; None when the exception is unexpected."""
    if isinstance(exc, KinaseError):
        return exc
    name = type(exc).__name__
    if name == "ProfileNotFound":
        return KinaseError(str(exc), "check `aws configure list-profiles` or drop --profile")
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return KinaseError(
            "no AWS credentials found",
            "run `aws configure` / `aws sso login`, pass --profile, or use --local",
        )
    if name in ("NoRegionError",):
        return KinaseError("no AWS region configured", "pass --region or set AWS_REGION")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return KinaseError(
            f"cannot reach the AWS endpoint: {exc}",
            "check the network; for the local stack run `kinase local up`",
        )
    if name in ("ClientError",) or hasattr(exc, "response") and isinstance(exc.response, dict):
        code = error_code(exc) or "Error"
        message = (exc.response.get("Error") or {}).get("Message") or str(exc)  # type: ignore[attr-defined]
        op = getattr(exc, "operation_name", None)
        where = f" in {op}" if op else ""
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"):
            return KinaseError(f"AWS rejected the credentials ({code}){where}", "refresh them: `aws sso login` or `aws configure`")
        if code in ("ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException"):
            return KinaseError(f"AWS throttled the request ({code}){where}", "retry in a moment")
        return KinaseError(f"{code}{where}: {message}")
    if isinstance(exc, FileNotFoundError):
        return KinaseError(f"file not found: {exc.filename or exc}")
    if isinstance(exc, PermissionError):
        return KinaseError(f"permission denied: {exc.filename or exc}")
    return None
