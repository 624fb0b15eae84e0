"""Device credentials: per-device tokens issued by OTA, an allow-list and activation codes.

Without ``devices.auth_secret`` (and no static ``devices.tokens``) the hub is open: any device
connects and OTA hands out an empty token, fit for a loopback or home-LAN setup. With a secret:

- OTA issues a token only to an *allowed* device: its id is in ``devices.allowed_devices``, or
  it was activated. The token is ``<signature>.<issued_s>``, where the signature is the
  base64url HMAC-SHA256 of ``client_id|device_id|issued_s`` under the secret (the scheme of the
  xiaozhi ecosystem's servers, so firmware needs nothing new). It names no device in clear and
  expires after ``devices.token_ttl_s``. The WebSocket checks it against the ``Device-Id`` and
  ``Client-Id`` headers; revoking a device (removing it from the list, revoking activation)
  makes its tokens useless at once.
- An unknown device gets ``activation{code, challenge, message, timeout_ms}`` instead (the
  firmware shows the 6-digit code and polls ``POST /xiaozhi/ota/activate``: 202 while pending,
  200 once an admin approved the code with ``POST /admin/devices/activate``). Activation binds
  the device id to the ``Client-Id`` it asked with (a UUID the board keeps in flash and only
  sends to its servers), so knowing a MAC address is not enough to obtain the device's token.
- Static ``devices.tokens`` are still accepted on the WebSocket (devices provisioned by hand)
  but never handed out by OTA.

Activated devices are kept in a JSON file under ``server.data_dir``; an unreadable or
unwritable file is reported (log and :attr:`DeviceAuth.state_error`), never silently ignored,
and the activations made meanwhile stay valid in memory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.settings import DeviceSettings

log = logging.getLogger(__name__)

ACTIVATION_CODE_DIGITS = 6
MAX_PENDING_ACTIVATIONS = 256  # a stranger asking with random ids cannot grow memory
MAX_CLOCK_SKEW_S = 300.0  # a token "issued" further in the future than this is forged
MAX_ID_CHARS = 128  # device and client ids longer than this are not real firmware ids


@dataclass(slots=True)
class PendingActivation:
    device_id: str
    client_id: str
    code: str
    challenge: str
    expires_s: float  # time.time()
    approved: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    per_device: bool = False  # the token proves the device id (not a shared static token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class DeviceAuth:
    def __init__(
        self,
        settings: DeviceSettings,
        state_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.state_path = state_path
        self._clock = clock
        secret = settings.auth_secret.get_secret_value() if settings.auth_secret else ""
        self._secret = secret.encode()
        self._static = [t.get_secret_value().encode() for t in settings.tokens]
        self._static = [t for t in self._static if t]
        self._allowed = frozenset(settings.allowed_devices)
        self._activated: dict[str, str] = {}  # device id -> client id it was activated with
        self._pending: OrderedDict[str, PendingActivation] = OrderedDict()  # by device id
        self.state_error: str | None = None
        if state_path is not None:
            self._load(state_path)

    # -- policy ------------------------------------------------------------------------------
    @property
    def required(self) -> bool:
        """Whether the WebSocket demands a credential at all."""
        return bool(self._secret or self._static)

    @property
    def issues_tokens(self) -> bool:
        return bool(self._secret)

    def allowed(self, device_id: str, client_id: str) -> bool:
        if device_id in self._allowed:
            return True
        return self._activated.get(device_id) == client_id and bool(client_id)

    # -- tokens ------------------------------------------------------------------------------
    def _sign(self, client_id: str, device_id: str, issued_s: int) -> str:
        content = f"{client_id}|{device_id}|{issued_s}".encode()
        return _b64(hmac.new(self._secret, content, hashlib.sha256).digest())

    def issue(self, client_id: str, device_id: str) -> str:
        issued_s = int(self._clock())
        return f"{self._sign(client_id, device_id, issued_s)}.{issued_s}"

    def verify(self, token: str, client_id: str, device_id: str) -> Verdict:
        """Check a WebSocket's bearer token (constant-time comparisons throughout)."""
        if not self.required:
            return Verdict(True)
        given = token.encode("utf-8", "replace")
        # compare with every static token, not stopping at the first match (no timing hint)
        static_ok = False
        for expected in self._static:
            static_ok |= hmac.compare_digest(given, expected)
        if static_ok:
            return Verdict(True)
        if not self._secret:
            return Verdict(False, "invalid or missing device token")
        signature, _, issued = token.rpartition(".")
        if not signature or not issued.isascii() or not issued.isdigit() or len(issued) > 12:
            return Verdict(False, "invalid or missing device token")
        issued_s = int(issued)
        now_s = self._clock()
        if issued_s > now_s + MAX_CLOCK_SKEW_S:
            return Verdict(False, "invalid or missing device token")
        expected_sig = self._sign(client_id, device_id, issued_s)
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected_sig.encode()):
            return Verdict(False, "invalid or missing device token")
        if now_s - issued_s > self.settings.token_ttl_s:
            return Verdict(False, "device token expired: ask the OTA endpoint for a new one")
        if not self.allowed(device_id, client_id):
            return Verdict(False, "device is no longer allowed")
        return Verdict(True, per_device=True)

    # -- activation --------------------------------------------------------------------------
    def _expire_pending(self) -> None:
        now_s = self._clock()
        for device_id in [d for d, p in self._pending.items() if p.expires_s < now_s]:
            del self._pending[device_id]

    def start_activation(self, device_id: str, client_id: str) -> PendingActivation:
        """The pending activation of ``device_id`` (a new one, or the one already shown)."""
        self._expire_pending()
        pending = self._pending.get(device_id)
        if pending is not None and pending.client_id == client_id:
            return pending
        while len(self._pending) >= MAX_PENDING_ACTIVATIONS:
            self._pending.popitem(last=False)
        codes = {p.code for p in self._pending.values()}
        code = ""
        while not code or code in codes:
            code = f"{secrets.randbelow(10**ACTIVATION_CODE_DIGITS):0{ACTIVATION_CODE_DIGITS}d}"
        pending = PendingActivation(
            device_id=device_id,
            client_id=client_id,
            code=code,
            challenge=secrets.token_hex(16),
            expires_s=self._clock() + self.settings.activation_timeout_s,
        )
        self._pending[device_id] = pending
        return pending

    def poll_activation(self, device_id: str, client_id: str, challenge: str | None) -> str:
        """``"activated"``, ``"pending"`` or ``"unknown"`` (no such activation in progress)."""
        if self.allowed(device_id, client_id):
            return "activated"
        self._expire_pending()
        pending = self._pending.get(device_id)
        if pending is None or not hmac.compare_digest(pending.client_id, client_id):
            return "unknown"
        if challenge is not None and not hmac.compare_digest(challenge, pending.challenge):
            return "unknown"
        return "pending"

    def pending(self) -> list[dict[str, object]]:
        self._expire_pending()
        return [
            {"device_id": p.device_id, "code": p.code, "expires_s": round(p.expires_s, 3)}
            for p in self._pending.values()
        ]

    def activated(self) -> list[str]:
        return sorted(self._activated)

    async def approve(self, code: str) -> str | None:
        """An admin typed the code the device shows: activate it. Returns the device id."""
        self._expire_pending()
        found = next((p for p in self._pending.values() if hmac.compare_digest(p.code, code)), None)
        if found is None:
            return None
        del self._pending[found.device_id]
        self._activated[found.device_id] = found.client_id
        await asyncio.to_thread(self._save)
        log.info("device %s activated", found.device_id)
        return found.device_id

    async def revoke(self, device_id: str) -> bool:
        if self._activated.pop(device_id, None) is None:
            return False
        await asyncio.to_thread(self._save)
        log.info("device %s activation revoked", device_id)
        return True

    # -- state file --------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.state_error = f"cannot read {path}: {exc}"
            log.error("device activations: %s (starting with none)", self.state_error)
            return
        activated = data.get("activated", {}) if isinstance(data, dict) else {}
        if isinstance(activated, dict):
            self._activated = {str(k): str(v) for k, v in activated.items()}

    def _save(self) -> None:
        if self.state_path is None:
            return
        payload = json.dumps({"activated": self._activated}, ensure_ascii=False)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(payload, encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            self.state_error = f"cannot write {self.state_path}: {exc}"
            log.error("device activations: %s (kept in memory until restart)", self.state_error)
            return
        self.state_error = None


def valid_id(value: str) -> bool:
    """A device or client id as firmware sends it: printable ASCII, not absurdly long."""
    return 0 < len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable()
