"""AWS RDS failures as RdsError: what went wrong and what to do, never a stack trace or a secret.

Credentials and permissions get their own words because they are the usual cause at 3 a.m.: a
profile not logged in, an expired session, an IAM role missing one action.
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as AwsConnectionError

from bot.errors import RdsError
from bot.redact import redact

# AWS error codes for credentials that are missing, malformed, expired or unknown to AWS.
_BAD_CREDENTIALS = ("AuthFailure", "IncompleteSignature", "InvalidAccessKeyId", "SignatureDoesNotMatch")
_EXPIRED_CREDENTIALS = ("ExpiredToken", "ExpiredTokenException", "RequestExpired")
_NO_CREDENTIALS = ("InvalidClientTokenId", "InvalidToken", "MissingAuthenticationToken", "UnrecognizedClientException")
_CREDENTIAL_CODES = frozenset((*_BAD_CREDENTIALS, *_EXPIRED_CREDENTIALS, *_NO_CREDENTIALS))
_PERMISSION_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
# botocore's own failures to find or load credentials, before any request is sent.
_CREDENTIAL_FAILURES: tuple[type[Exception], ...] = (NoCredentialsError, PartialCredentialsError, ProfileNotFound)
_CREDENTIAL_FAILURES += (CredentialRetrievalError, SSOError, TokenRetrievalError)
_CREDENTIALS_MESSAGE = "AWS credentials were not found or were refused"
_CREDENTIALS_HINT = (
    "give the bot's process AWS credentials: AWS_PROFILE naming a profile in ~/.aws/config (run `aws sso login` "
    "first for SSO profiles), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance / task role"
)
_PERMISSIONS_HINT = (
    "the bot's IAM identity needs rds:DescribeDBInstances, rds:DescribeDBSnapshots, "
    "rds:RestoreDBInstanceFromDBSnapshot, rds:RestoreDBInstanceToPointInTime and rds:AddTagsToResource"
)


class ApiError(RdsError):
    """An AWS error answer, with its code kept so callers can treat "not found" as an answer."""

    def __init__(self, message: str, *, code: str, hint: str = "") -> None:
        super().__init__(message, hint=hint, details={"aws_error_code": code})
        self.code = code


def translate(error: Exception, what: str) -> RdsError:
    """One AWS or botocore failure during `what` ("looking up RDS instance x"), as an RdsError."""
    if isinstance(error, ClientError):
        body = error.response.get("Error") or {}
        code = str(body.get("Code") or "Unknown")
        message = redact(str(body.get("Message") or "")).rstrip(".")
        if code in _CREDENTIAL_CODES:
            return ApiError(f"{_CREDENTIALS_MESSAGE} ({code}: {message})", code=code, hint=_CREDENTIALS_HINT)
        if code in _PERMISSION_CODES:
            return ApiError(f"AWS refused {what}: not allowed ({message})", code=code, hint=_PERMISSIONS_HINT)
        return ApiError(f"AWS refused {what}: {code}: {message}", code=code)
    detail = redact(str(error))
    if isinstance(error, _CREDENTIAL_FAILURES):
        return RdsError(f"{_CREDENTIALS_MESSAGE} ({detail})", hint=_CREDENTIALS_HINT)
    if isinstance(error, NoRegionError):
        return RdsError(
            f"no AWS region is set for {what}", hint="set region in [environments.<env>.rds], or AWS_REGION"
        )
    if isinstance(error, AwsConnectionError):
        return RdsError(
            f"could not reach the AWS RDS API while {what} ({detail})",
            hint="check the network, and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_RDS if they are set",
        )
    return RdsError(f"{what} failed: {detail}")
