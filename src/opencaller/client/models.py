"""Typed answers of every uCaller v1.0 method.

The models follow the newest documented shapes but accept what older uCaller answers and
hand-written fixtures contain (spec §5, §10): numbers where strings are documented (``phone``,
``code``), a single object where a list is documented (``phone_info``), missing deprecated
fields. Unknown fields are kept (``extra="allow"``) and the untouched JSON is on ``.raw``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr


def _to_str(v: Any) -> Any:
    # Old uCaller answers phones and codes as JSON numbers; keep them as text.
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


def _to_code(v: Any) -> Any:
    # A numeric code lost its leading zeros on the way (7 for "0007"); codes are 4 digits.
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:04d}"
    return v


def _to_list(v: Any) -> Any:
    if v is None:
        return []
    if isinstance(v, dict):
        return [v]
    return v


Text = Annotated[str, BeforeValidator(_to_str)]
AuthCode = Annotated[str, BeforeValidator(_to_code)]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON object exactly as the server sent it."""
        return self._raw


class InitCall(ApiModel):
    status: bool = True
    ucaller_id: int
    phone: Text
    code: AuthCode
    client: Text | None = None
    unique_request_id: str | None = None
    # Present when `unique` was sent; True when that key had been used before.
    exists: bool | None = None


class InitRepeat(InitCall):
    free_repeated: bool | None = None


class PhoneInfo(ApiModel):
    operator: str | None = None
    region: str | None = None
    mnp: str | None = None


class CallStatus:
    PENDING = -1
    FAILED = 0
    REACHED = 1


class GetInfo(ApiModel):
    status: bool = True
    ucaller_id: int
    init_time: int
    # -1 being checked, 0 could not get through, 1 the call was made.
    call_status: int
    unique: str | None = None
    client: Text | None = None
    phone: Text
    code: AuthCode | None = None
    country_code: str | None = None
    country_image: str | None = None
    phone_info: Annotated[list[PhoneInfo], BeforeValidator(_to_list)] = Field(default_factory=list)
    cost: float = 0.0
    balance: float | None = None
    # Deprecated by uCaller together with initRepeat; still sent by opencaller.
    is_repeated: bool | None = None
    first_ucaller_id: int | None = None
    repeatable: bool | None = None
    repeat_times: int | None = None
    repeated_ucaller_ids: list[int] | None = None
    # opencaller extensions: what the network said (None while pending or on uCaller).
    call_outcome: str | None = None
    sip_code: int | None = None
    sip_reason: str | None = None
    is_test: bool | None = None
    # opencaller extension: the server-side code check (verifyCode); None on uCaller.
    verified: bool | None = None
    verified_at: int | None = None

    @property
    def pending(self) -> bool:
        return self.call_status == CallStatus.PENDING

    @property
    def reached(self) -> bool:
        return self.call_status == CallStatus.REACHED


class GetBalance(ApiModel):
    status: bool = True
    rub_balance: float
    bonus_balance: float | None = None
    tariff: Text = ""
    tariff_name: Text = ""


class ServiceTestInfo(ApiModel):
    test_requests: int | None = None
    verified_phone: Text | None = None


class GetService(ApiModel):
    status: bool = True
    service_status: int
    name: str
    creation_time: int
    last_request: int
    owner: str = ""
    use_direction: str = ""
    now_test: bool | None = None
    test_info: ServiceTestInfo | None = None


class AccountLog(ApiModel):
    action: str
    user_agent: str = ""
    ip: str = ""
    created: int


class GetAccount(ApiModel):
    # uCaller's only documented example has no `status`.
    status: bool | None = None
    id: int
    telegram_id: int | None = None
    two_auth: bool = False
    email: str = ""
    logs: list[AccountLog] = Field(default_factory=list)
    updated: int | None = None
    created: int | None = None


class CheckPhone(ApiModel):
    # uCaller's only documented example has no `status`.
    status: bool | None = None
    source: Text = ""
    # Set (inside an otherwise normal answer) when the number is invalid.
    error: str | None = None
    mobile: int | None = None
    phone: Text
    country_iso: str | None = None
    country_code: int | None = None
    mnc: int | None = None
    number: Text | None = None
    provider: str | None = None
    company: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    phone_format: str | None = None
    cost: float = 0.0
    balance: float | None = None


class InboundCallWaiting(ApiModel):
    status: bool = True
    ucaller_id: int
    phone: Text
    # The number the user must call, digits without "+".
    confirmation_number: Text


class Health(ApiModel):
    status: bool
    database: bool | None = None
    providers: bool | None = None


class VerifyCode(ApiModel):
    """opencaller's `verifyCode` (not on uCaller): the code was right."""

    status: bool = True
    ucaller_id: int
    verified: bool
    verified_at: int
    attempts_left: int
