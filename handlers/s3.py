"""The `s3` handler: upload each finished song and its cover to any S3-compatible bucket.

boto3's managed transfer streams the shared spool file (multipart above a threshold, parts in
parallel) in a worker thread; nothing is downloaded twice or read into memory. Keys and
metadata are built in `s3_keys`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

# boto3 and botocore ship no type information: the client and the errors are `Any` to mypy.
import boto3  # type: ignore[import-untyped]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from boto3.exceptions import Boto3Error, S3UploadFailedError  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers._files import audio_extension, check_template, content_type, fetch_cover
from handlers.base import HandlerCheck, HandlerContext, HandlerError, SpooledFile, config_secrets
from handlers.s3_keys import TEMPLATE_FIELDS, check_key_text, key_segment, metadata, render_key
from receiver.models import Event

__all__ = ["S3Handler", "key_segment"]

CHECK_TIMEOUT_S = 30.0
"""How long doctor's `HeadBucket` may take."""

_SONG_KINDS = frozenset({"song.completed", "song.streaming"})
_MIB = 1024 * 1024
_THROTTLING = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout",
     "TooManyRequestsException", "ServiceUnavailable", "InternalError"}
)  # fmt: skip
_HINTS = {
    "NoSuchBucket": "the bucket does not exist (check bucket, region and endpoint_url)",
    "AccessDenied": "these credentials may not write to it",
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / access_key_id",
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY / secret_access_key",
}
_CREDENTIAL_ERRORS = (
    boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError, boto_errors.ProfileNotFound
)  # fmt: skip
_OFFLINE_ERRORS = (boto_errors.ConnectionError, boto_errors.HTTPClientError)  # incl. timeouts
_NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, "
    'or access_key_id/secret_access_key = "${ENV}" in relay.toml)'
)


class S3Handler:
    """Uploads `<key>.<ext>` (audio) and `<key>.<cover ext>` to `bucket`; returns key and URL."""

    default_events: ClassVar[tuple[str, ...]] = ("song.completed",)

    class Config(BaseModel):
        """Options of one `type = "s3"` entry in relay.toml."""

        model_config = ConfigDict(extra="forbid")

        bucket: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9._-]+$")
        prefix: str = ""
        key_template: str = "{prefix}{date}/{task_id}/{clip_id}.{ext}"
        endpoint_url: str | None = None
        """Any S3-compatible store (MinIO, R2, Ceph, moto); default: AWS."""
        region: str | None = None
        addressing_style: Literal["auto", "path", "virtual"] | None = None
        """Default: `path` with an `endpoint_url` (what MinIO and most stores expect), else auto."""
        access_key_id: str | None = None
        secret_access_key: SecretStr | None = None
        """Prefer the standard AWS chain; if set here, use `"${ENV_VAR}"`, never a literal."""
        content_type: str | None = None
        multipart_threshold_mb: int = Field(default=8, ge=1, le=5 * 1024)
        multipart_chunk_mb: int = Field(default=8, ge=5, le=5 * 1024)
        max_concurrency: int = Field(default=4, ge=1, le=64)
        presign: bool = False
        presign_expires_s: int = Field(default=604800, ge=1, le=604800)
        cover: bool = True
        storage_class: str | None = None
        acl: (
            Literal["private", "public-read", "public-read-write", "authenticated-read",
                    "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control"] | None
        ) = None  # fmt: skip

        @field_validator("key_template")
        @classmethod
        def _check_template(cls, template: str) -> str:
            check_template("key_template", template, TEMPLATE_FIELDS)
            check_key_text("key_template", template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x")))
            return template

        @field_validator("prefix")
        @classmethod
        def _check_prefix(cls, prefix: str) -> str:
            check_key_text("prefix", prefix)
            return prefix

        @field_validator("endpoint_url")
        @classmethod
        def _check_endpoint(cls, url: str | None) -> str | None:
            if not url:
                return None  # "${S3_ENDPOINT_URL:-}" left empty means AWS itself
            if urlsplit(url).scheme not in ("http", "https") or "@" in url:
                raise ValueError("endpoint_url must be an http(s) URL without credentials")
            return url

        @model_validator(mode="after")
        def _pairs(self) -> S3Handler.Config:
            if (self.access_key_id is None) != (self.secret_access_key is None):
                raise ValueError("set both access_key_id and secret_access_key, or neither")
            if self.prefix and "{prefix}" not in self.key_template:
                raise ValueError("prefix is set but key_template does not use {prefix}")
            return self

    def __init__(self, name: str, config: S3Handler.Config) -> None:
        self.name = name
        self.config = config
        self._s3: Any = None  # a botocore S3 client: thread-safe once built, built once
        self._lock = threading.Lock()  # boto3 sessions are not thread-safe
        self._transfer = TransferConfig(
            multipart_threshold=config.multipart_threshold_mb * _MIB,
            multipart_chunksize=config.multipart_chunk_mb * _MIB,
            max_concurrency=config.max_concurrency,
        )

    async def handle(self, event: Event, ctx: HandlerContext) -> dict[str, Any] | None:
        """Upload the song and its cover; raise a HandlerError saying whom to blame."""
        if event.kind not in _SONG_KINDS:
            return {"skipped": f"{event.kind} has no audio"}
        if not event.audio_url:
            raise HandlerError(
                f"{event.kind} for clip {event.clip_id} has no audio URL", retryable=False
            )
        audio = await ctx.spool.fetch(event.audio_url)
        ext = audio_extension(audio)
        template, prefix = self.config.key_template, self.config.prefix
        key = render_key(template, prefix, event, ext)
        cover: tuple[SpooledFile, str] | None = None
        found = await fetch_cover(event, ctx, self.name) if self.config.cover else None
        if found is not None:
            image, cover_ext = found
            cover = (image, render_key(template, prefix, event, cover_ext))
        try:
            return await asyncio.to_thread(self._store, event, audio, key, cover)
        except (boto_errors.BotoCoreError, Boto3Error, boto_errors.ClientError) as exc:
            raise _handler_error(exc, self.config) from exc

    async def check(self) -> HandlerCheck:
        """`HeadBucket` with the handler's own client (the same credential chain, endpoint and
        addressing style as an upload), which writes nothing."""
        where = urlsplit(self.config.endpoint_url).hostname if self.config.endpoint_url else "AWS"
        bucket = self.config.bucket

        def head() -> None:  # in a worker thread: building the client reads the credentials
            self._client().head_bucket(Bucket=bucket)

        try:
            await asyncio.wait_for(asyncio.to_thread(head), CHECK_TIMEOUT_S)
        except boto_errors.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            if code in ("404", "NoSuchBucket"):
                return HandlerCheck(
                    "fail",
                    f"bucket {bucket!r} does not exist at {where}",
                    "create it, or fix bucket / region / endpoint_url",
                )
            if code in ("403", "AccessDenied"):
                return HandlerCheck(
                    "fail",
                    f"access to bucket {bucket!r} at {where} denied",
                    "give these credentials s3:PutObject and s3:ListBucket on it",
                )
            return HandlerCheck("fail", f"bucket {bucket!r} at {where}: {code}")
        except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError):
            return HandlerCheck(
                "fail",
                "no AWS credentials found",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
            )
        except (boto_errors.BotoCoreError, TimeoutError) as exc:
            return HandlerCheck(
                "fail",
                f"cannot reach {where}: {type(exc).__name__}",
                "check endpoint_url and the network",
            )
        return HandlerCheck("ok", f"bucket {bucket!r} at {where} reachable with these credentials")

    def secrets(self) -> Iterable[str]:
        """The secret key, and the access key id too: it names the account."""
        return [*config_secrets(self.config), *filter(None, [self.config.access_key_id])]

    def _store(
        self, event: Event, audio: SpooledFile, key: str, cover: tuple[SpooledFile, str] | None
    ) -> dict[str, Any]:
        """In a worker thread: upload, read back size and ETag, presign."""
        client, bucket = self._client(), self.config.bucket
        audio_type = self.config.content_type or content_type(audio, key)
        self._upload(client, audio.path, key, audio_type, event)
        if cover is not None:
            self._upload(client, cover[0].path, cover[1], content_type(*cover), event)
        head = client.head_object(Bucket=bucket, Key=key)
        url = f"s3://{bucket}/{key}"
        if self.config.presign:
            url = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self.config.presign_expires_s,
            )
        return {
            "bucket": bucket,
            "key": key,
            "url": url,
            "size": head["ContentLength"],
            "etag": str(head["ETag"]).strip('"'),
            "cover_key": cover[1] if cover else None,
        }

    def _upload(self, client: Any, path: Path, key: str, content_type: str, event: Event) -> None:
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": metadata(event)}
        if self.config.storage_class:
            extra["StorageClass"] = self.config.storage_class
        if self.config.acl:
            extra["ACL"] = self.config.acl
        client.upload_file(
            str(path), self.config.bucket, key, ExtraArgs=extra, Config=self._transfer
        )

    def _client(self) -> Any:
        """The S3 client, created on first use (the credential chain is read then)."""
        with self._lock:
            if self._s3 is None:
                cfg = self.config
                secret = cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
                session = boto3.session.Session(
                    aws_access_key_id=cfg.access_key_id,
                    aws_secret_access_key=secret,
                    region_name=cfg.region,
                )
                style = cfg.addressing_style or ("path" if cfg.endpoint_url else "auto")
                options = BotoConfig(
                    retries={"max_attempts": 3, "mode": "standard"},  # the dispatcher backs off
                    connect_timeout=10,
                    read_timeout=60,
                    signature_version="s3v4",
                    s3={"addressing_style": style},
                )
                self._s3 = session.client("s3", endpoint_url=cfg.endpoint_url, config=options)
            return self._s3


def _handler_error(exc: BaseException, config: S3Handler.Config) -> HandlerError:
    """Map a boto error to retry-or-not and blame; never includes credentials."""
    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        exc = exc.__context__  # boto3 wraps the ClientError of upload_file
    bucket = f"bucket {config.bucket!r}"
    if isinstance(exc, boto_errors.ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "unknown")
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        if status >= 500 or status in (408, 429) or code in _THROTTLING:
            wait = str(meta.get("HTTPHeaders", {}).get("retry-after", "")).strip()
            return HandlerError(
                f"S3 {bucket} unavailable: {code} (HTTP {status})",
                retry_after=float(wait) if wait.isdigit() else None,
                blame="unavailable",
            )
        hint = f": {_HINTS[code]}" if code in _HINTS else ""
        return HandlerError(
            f"S3 {bucket} refused the upload: {code} (HTTP {status}){hint}",
            retryable=False,
            blame="destination",
        )
    if isinstance(exc, _CREDENTIAL_ERRORS):
        why = f"{_NO_CREDENTIALS} ({type(exc).__name__})"
        return HandlerError(f"S3 {bucket}: {why}", retryable=False, blame="relay")
    if isinstance(exc, _OFFLINE_ERRORS):
        where = urlsplit(config.endpoint_url).netloc if config.endpoint_url else "AWS S3"
        return HandlerError(
            f"S3 endpoint {where} unreachable for {bucket}: {type(exc).__name__}",
            blame="unavailable",
        )
    if isinstance(exc, boto_errors.ParamValidationError):
        return HandlerError(f"S3 {bucket}: invalid request: {exc}", retryable=False)
    return HandlerError(f"S3 upload to {bucket} failed: {type(exc).__name__}")
