"""The `s3` handler: upload each finished song and its cover to any S3-compatible bucket.

boto3's managed transfer streams the shared spool file (multipart above a threshold, parts in
parallel) in a worker thread; nothing is downloaded twice or read into memory. Keys come from a
template filled with values the provider controls, so every value is sanitised into one safe
key segment. Title metadata is UTF-8 percent-encoded (read it back with `urllib.parse.unquote`),
because S3 user metadata must be ASCII.
"""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

# boto3 and botocore ship no type information: the client and the errors are `Any` to mypy.
import boto3  # type: ignore[import-untyped]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from boto3.exceptions import Boto3Error, S3UploadFailedError  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers._files import TYPES, audio_extension, check_template, fetch_cover, template_values
from handlers.base import HandlerContext, HandlerError, SpooledFile
from receiver.models import Event

__all__ = ["S3Handler", "key_segment"]

TEMPLATE_FIELDS = frozenset(
    {"prefix", "date", "title", "slug", "task_id", "clip_id", "platform", "ext"}
)
"""The names a key template may use."""

_SONG_KINDS = frozenset({"song.completed", "song.streaming"})
_MIB = 1024 * 1024
_MAX_KEY_BYTES = 1024  # S3's limit
_MAX_SEGMENT_BYTES = 200
_AVOID = frozenset('/\\{}^%`[]"<>~#|')  # AWS lists these as characters to avoid in keys
_META_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
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


def key_segment(value: str) -> str:
    """One key segment for `value`: no slashes, control characters, leading dots, or excess."""
    text = unicodedata.normalize("NFKC", value)
    text = "".join(
        "_" if ch in _AVOID else ch for ch in text if not unicodedata.category(ch).startswith("C")
    )
    text = " ".join(text.split()).lstrip(". ")
    while len(text.encode()) > _MAX_SEGMENT_BYTES:
        text = text[:-1]
    return text.rstrip() or "untitled"


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
            _check_key_text("key_template", template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x")))
            return template

        @field_validator("prefix")
        @classmethod
        def _check_prefix(cls, prefix: str) -> str:
            _check_key_text("prefix", prefix)
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
        key = self._key(event, ext)
        cover: tuple[SpooledFile, str] | None = None
        found = await fetch_cover(event, ctx, self.name) if self.config.cover else None
        if found is not None:
            image, cover_ext = found
            cover = (image, self._key(event, cover_ext))
        try:
            return await asyncio.to_thread(self._store, event, audio, key, cover)
        except (boto_errors.BotoCoreError, Boto3Error, boto_errors.ClientError) as exc:
            raise _handler_error(exc, self.config) from exc

    def _store(
        self, event: Event, audio: SpooledFile, key: str, cover: tuple[SpooledFile, str] | None
    ) -> dict[str, Any]:
        """In a worker thread: upload, read back size and ETag, presign."""
        client, bucket = self._client(), self.config.bucket
        content_type = self.config.content_type or _content_type(audio, key)
        self._upload(client, audio.path, key, content_type, event)
        if cover is not None:
            self._upload(client, cover[0].path, cover[1], _content_type(*cover), event)
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
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": _metadata(event)}
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

    def _key(self, event: Event, ext: str) -> str:
        """The rendered key template; every value is one sanitised segment."""
        safe = {name: key_segment(value) for name, value in template_values(event).items()}
        rendered = self.config.key_template.format(prefix=self.config.prefix, ext=ext, **safe)
        key = "/".join(part for part in rendered.split("/") if part not in ("", "."))
        if ".." in key.split("/") or len(key.encode()) > _MAX_KEY_BYTES:
            raise HandlerError(
                f"rendered key for clip {event.clip_id} is not usable", retryable=False
            )
        return key


def _check_key_text(name: str, text: str) -> None:
    if text.startswith("/") or ".." in text.split("/"):
        raise ValueError(f"{name} must not start with '/' or contain a '..' segment")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ValueError(f"{name} must not contain control characters")


def _content_type(spooled: SpooledFile, key: str) -> str:
    """The served content type unless it is generic, else one from the key's extension."""
    if spooled.content_type and spooled.content_type not in _GENERIC_TYPES:
        return spooled.content_type
    return TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


def _ascii(value: str, limit: int = 256) -> str:
    """`value` UTF-8 percent-encoded (printable ASCII other than `%` kept), cut to `limit`."""
    text = value[:limit]
    while len(encoded := quote(text, safe=_META_SAFE)) > limit:
        text = text[:-1]
    return encoded


def _metadata(event: Event) -> dict[str, str]:
    """S3 user metadata (x-amz-meta-*): ASCII only, about 2 KB in all."""
    return {
        "task-id": _ascii(event.task_id),
        "clip-id": _ascii(event.clip_id),
        "title": _ascii(event.title, limit=1024),
        "platform": _ascii(event.platform),
        "event-id": _ascii(event.id),
    }


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
