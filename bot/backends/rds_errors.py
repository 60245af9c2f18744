"""AWS RDS failures as RdsError: what went wrong and what to do, never a stack trace or a secret.

Credentials and permissions get their own words because they are the usual cause at 3 a.m.: a
profile not logged in, an expired session, an IAM role missing one action.
"""

from __future__ import annotations

from typing import Literal

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
    "rds:RestoreDBInstanceFromDBSnapshot, rds:RestoreDBInstanceToPointInTime and rds:AddTagsToResource; "
    "for Aurora also rds:DescribeDBClusters, rds:DescribeDBClusterSnapshots, rds:RestoreDBClusterFromSnapshot, "
    "rds:RestoreDBClusterToPointInTime and rds:CreateDBInstance"
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


# --- what exists, in words: shared by instance and Aurora cluster restores ------------------------------

_Kind = Literal["instance", "cluster"]
_RENAME = "set another restore_instance_id"


def label(kind: _Kind) -> str:
    return "Aurora cluster" if kind == "cluster" else "RDS instance"


def delete_command(kind: _Kind, name: str) -> str:
    if kind == "cluster":
        return (
            f"`aws rds delete-db-instance --db-instance-identifier <each of its instances> --skip-final-snapshot`, "
            f"then `aws rds delete-db-cluster --db-cluster-identifier {name} --skip-final-snapshot`"
        )
    return f"`aws rds delete-db-instance --db-instance-identifier {name} --skip-final-snapshot`"


def _ids(kind: _Kind, name: str, **more: str) -> dict[str, str]:
    return {f"{kind}_id": name, **more}


def not_ours(kind: _Kind, name: str, status: str) -> RdsError:
    return RdsError(
        f"an {label(kind)} named {name} already exists (state '{status}') and was not created by rollback-bot",
        hint=f"RDS restores into a NEW {kind}: set restore_instance_id in [environments.<env>.rds] to a name that "
        "is not in use",
        details=_ids(kind, name, status=status),
    )


def another_run(kind: _Kind, name: str, owner: str) -> RdsError:
    return RdsError(
        f"{label(kind)} {name} already exists: rollback-bot created it for another run ({owner})",
        hint=f"it may be the live database now: {_RENAME}, or delete it if nothing uses it",
        details=_ids(kind, name, run_id=owner),
    )


def other_source(kind: _Kind, name: str, key: str, found: str, wanted: str) -> RdsError:
    return RdsError(
        f"{label(kind)} {name} was restored by rollback-bot from {key.split(':')[-1]} {found}, not {wanted}",
        hint=f"{_RENAME}, or delete it ({delete_command(kind, name)})",
        details=_ids(kind, name, **{key: found}),
    )


def failed(kind: _Kind, name: str, status: str) -> RdsError:
    return RdsError(
        f"{label(kind)} {name} exists but is in state '{status}': the restore did not complete; "
        f"the live database {kind} was not touched",
        hint=f"see its events in the RDS console, then delete it ({delete_command(kind, name)}) before retrying, "
        "or set another restore_instance_id",
        details=_ids(kind, name, status=status),
    )


def disappeared(kind: _Kind, name: str) -> RdsError:
    return RdsError(
        f"{label(kind)} {name} disappeared while it was being restored",
        hint="someone deleted it, or it failed and RDS removed it; retry this step to restore again",
    )


def still_waiting(kind: _Kind, name: str, status: str, waited: str) -> RdsError:
    return RdsError(
        f"{label(kind)} {name} is still '{status}' after {waited}: it exists and AWS is still working on it; "
        f"the live database {kind} was not touched",
        hint=f"retry this step to keep waiting (it will not create a second {kind}), or delete it "
        f"({delete_command(kind, name)}) to give up on this restore",
        details=_ids(kind, name, status=status),
    )
