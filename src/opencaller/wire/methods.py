"""The uCaller v1.0 methods: read arguments, call the domain, shape the answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..domain import account_info
from ..domain.authentication import Caller
from ..domain.lookups import bill_lookup
from ..domain.money import to_rub
from ..domain.phones import parse_code
from ..domain.verification import verify_code as check_code
from ..errors import Code, UcallerError
from ..numbering import InvalidPhoneNumber, InvalidReason
from ..observability import metrics
from ..phone_text import e164
from ..runtime import Runtime
from ..telephony.base import CallKind
from . import views
from .params import Args

Handler = Callable[[Runtime, Caller, Args], Awaitable[dict[str, Any]]]


def _phone(args: Args) -> str:
    """ASCII digits in E.164 form (domain/phones.py): every per-number limit is keyed on it."""
    raw = args.get("phone")
    if raw is None or raw == "":
        raise UcallerError(Code.BAD_PARAMETER, "Parameter 'phone' is required")
    phone = e164(raw)
    if not phone:
        raise UcallerError(Code.BAD_PHONE)
    return phone


def _uid(args: Args) -> int:
    uid = args.integer("uid", "ucaller_id")
    if uid is None:
        raise UcallerError(Code.BAD_PARAMETER, "Parameter 'uid' is required")
    return uid


async def init_call(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    phone = _phone(args)
    raw_code = args.get("code")
    code = None
    if raw_code not in (None, ""):
        code = parse_code(raw_code)
        if code is None:
            raise UcallerError(
                Code.BAD_PARAMETER, "Parameter 'code' must be 1 to 4 ASCII digits (0-9)"
            )
    client = args.text("client", max_len=64)
    unique = args.text("unique", max_len=64) or None
    kind = CallKind.FLASH
    if args.flag("voice"):
        kind = CallKind.VOICE
    elif args.flag("mix"):
        kind = CallKind.MIX
    result = await rt.authorizations.init_call(
        caller.service,
        caller.account,
        phone=phone,
        code=code,
        client=client,
        unique=unique,
        kind=kind,
    )
    if not result.exists:  # conversion's denominator (a replayed key started nothing)
        metrics.count_initiated(result.auth)
    return views.init_call(result)


async def init_repeat(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    uid = _uid(args)
    unique = args.text("unique", max_len=64) or None
    result = await rt.authorizations.init_repeat(
        caller.service, caller.account, uid, voice=args.flag("voice"), unique=unique
    )
    return views.init_call(result, repeat=True)


async def phone_info(rt: Runtime, phone: str) -> list[dict[str, str]]:
    try:
        info = await rt.directory.lookup_e164(phone)
    except InvalidPhoneNumber:
        return []
    return [info.phone_info_entry()]


async def get_info(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    info = await rt.authorizations.info(caller.service, _uid(args))
    return views.get_info(info, await phone_info(rt, info.auth.phone))


async def get_balance(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    b = await account_info.balance(rt.db, caller.account.id)
    return views.get_balance(b.account, b.tariff_code, b.tariff_name)


async def get_service(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    return views.get_service(caller.service, caller.account)


async def get_account_(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    account, entries = await account_info.with_log(rt.db, caller.account.id)
    logs = [
        {"action": e.action, "user_agent": e.user_agent, "ip": e.ip, "created": int(e.created_at)}
        for e in entries
    ]
    return views.get_account(account, logs)


async def check_phone(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    """Standardise human input (docs/numbering.md); billed per the tariff's `lookup` price."""
    try:
        info = await rt.directory.lookup(args.get("phone"))
    except InvalidPhoneNumber as exc:
        if exc.reason is InvalidReason.EMPTY:
            raise UcallerError(Code.BAD_PARAMETER, "Parameter 'phone' is required") from exc
        raise UcallerError(Code.BAD_PHONE) from exc
    bill = await bill_lookup(
        rt.db,
        caller.account.id,
        caller.account.tariff_id,
        info.country_iso,
        free=caller.service.test_mode or rt.policy.is_test(info.e164),
        now=rt.clock.now(),
    )
    if bill is None:
        raise UcallerError(Code.LOW_BALANCE)
    return {
        "status": True,
        **info.check_phone_fields(),
        "cost": to_rub(bill.price),
        "balance": to_rub(bill.balance),
    }


async def inbound_call_waiting(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    phone = _phone(args)
    url = args.text("callback_url", max_len=2048)
    if not url:
        raise UcallerError(Code.BAD_PARAMETER, "Parameter 'callback_url' is required")
    if (why := rt.webhook_destinations.refusal(url)) is not None:
        raise UcallerError(Code.BAD_PARAMETER, f"Parameter 'callback_url' is refused: {why}")
    auth = await rt.authorizations.inbound_waiting(
        caller.service, caller.account, phone=phone, callback_url=url
    )
    metrics.count_initiated(auth)
    return views.inbound(auth)


async def verify_code(rt: Runtime, caller: Caller, args: Args) -> dict[str, Any]:
    """Our extension (spec §14): check the code the subscriber typed."""
    uid = _uid(args)
    raw_code = args.get("code")
    if raw_code is None or raw_code == "":
        raise UcallerError(Code.BAD_PARAMETER, "Parameter 'code' is required")
    code = parse_code(raw_code)
    if code is None:
        raise UcallerError(Code.BAD_PARAMETER, "Parameter 'code' must be 1 to 4 digits")
    unique = args.text("unique", max_len=64) or None
    result = await check_code(rt.db, caller.service, uid, code, now=rt.clock.now(), unique=unique)
    await rt.fraud.converted(caller.service.id, result.ucaller_id)  # conversion: domain/fraud
    return views.verified(result)


METHODS: dict[str, Handler] = {
    "initcall": init_call,
    "initrepeat": init_repeat,
    "getinfo": get_info,
    "getbalance": get_balance,
    "getservice": get_service,
    "getaccount": get_account_,
    "checkphone": check_phone,
    "inboundcallwaiting": inbound_call_waiting,
    "verifycode": verify_code,
}
