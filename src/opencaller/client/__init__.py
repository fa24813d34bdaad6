"""Python client for the uCaller API v1.0, as served by opencaller and by uCaller itself.

``Client`` blocks, ``AsyncClient`` awaits; both share one core (``_core``), so they send the
same requests and raise the same exceptions. See docs/client.md.
"""

from ._async import AsyncClient
from ._core import DEFAULT_BASE_URL, ProtocolError
from ._sync import Client
from .errors import (
    AuthError,
    BalanceError,
    CodeError,
    LimitError,
    NotFoundError,
    RepeatError,
    ServerError,
    ServiceError,
    UcallerAPIError,
    ValidationError,
)
from .models import (
    AccountLog,
    CallStatus,
    CheckPhone,
    GetAccount,
    GetBalance,
    GetInfo,
    GetService,
    Health,
    InboundCallWaiting,
    InitCall,
    InitRepeat,
    PhoneInfo,
    ServiceTestInfo,
    VerifyCode,
)
from .retry import NO_RETRY, RetryPolicy
from .webhooks import (
    InboundCall,
    StatusEvent,
    WebhookSignatureError,
    parse_event,
    sign,
    verify,
    verify_event,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "NO_RETRY",
    "AccountLog",
    "AsyncClient",
    "AuthError",
    "BalanceError",
    "CallStatus",
    "CheckPhone",
    "Client",
    "CodeError",
    "GetAccount",
    "GetBalance",
    "GetInfo",
    "GetService",
    "Health",
    "InboundCall",
    "InboundCallWaiting",
    "InitCall",
    "InitRepeat",
    "LimitError",
    "NotFoundError",
    "PhoneInfo",
    "ProtocolError",
    "RepeatError",
    "RetryPolicy",
    "ServerError",
    "ServiceError",
    "ServiceTestInfo",
    "StatusEvent",
    "UcallerAPIError",
    "ValidationError",
    "VerifyCode",
    "WebhookSignatureError",
    "parse_event",
    "sign",
    "verify",
    "verify_event",
]
