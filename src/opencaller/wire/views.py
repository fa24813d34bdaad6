"""The JSON shapes of uCaller v1.0 responses (spec §11), built from domain objects.

Types matter more than anything here: ids and times are JSON integers, phones in responses are
masked strings, codes are 4-character strings, money is a JSON number of roubles.
"""

from __future__ import annotations

from typing import Any

from ..domain.accounts import Account, Service
from ..domain.authorizations import Authorization, Info, InitResult
from ..domain.money import to_rub
from ..domain.phones import mask
from ..domain.verification import Verified

FLAG_URL = "https://static.ucaller.ru/flag/{iso}.svg"


def init_call(result: InitResult, *, repeat: bool = False) -> dict[str, Any]:
    auth = result.auth
    body: dict[str, Any] = {
        "status": True,
        "ucaller_id": auth.id,
        "phone": mask(auth.phone),
        "code": auth.code,
        "client": auth.client or "",
    }
    if result.unique is not None:
        body["unique_request_id"] = result.unique
        body["exists"] = result.exists
    if repeat:
        body["free_repeated"] = True
    return body


def get_info(info: Info, phone_info: list[dict[str, str]]) -> dict[str, Any]:
    auth = info.auth
    left = info.repeats_left
    body: dict[str, Any] = {
        "status": True,
        "ucaller_id": auth.id,
        "init_time": int(auth.created_at),
        "call_status": auth.call_status,
        "is_repeated": auth.repeat_index > 0,
        "repeatable": left > 0,
        "repeat_times": left,
        "repeated_ucaller_ids": info.chain,
    }
    if auth.repeat_index > 0:
        body["first_ucaller_id"] = info.root_id
    if info.root_unique is not None:
        body["unique"] = info.root_unique
    body.update(
        {
            "client": auth.client or "",
            "phone": mask(auth.phone),
            "code": auth.code,
            "country_code": auth.country_iso,
            "country_image": FLAG_URL.format(iso=auth.country_iso.lower()),
            "phone_info": phone_info,
            "cost": to_rub(auth.cost),
            "balance": to_rub(auth.balance_before),
            # opencaller extensions: what the network said (null while pending)
            "call_outcome": auth.outcome,
            "sip_code": auth.sip_code,
            "sip_reason": auth.sip_reason,
            "is_test": auth.is_test,
            # opencaller extensions: the server-side code check (verifyCode), per chain
            "verified": info.verified_at is not None,
            "verified_at": None if info.verified_at is None else int(info.verified_at),
        }
    )
    if auth.kind == "inbound":
        # The subscriber calls us: there is no code to type, and the stored last digits of
        # the confirmation number must not look like one to a client comparing codes.
        del body["code"]
    return body


def verified(result: Verified) -> dict[str, Any]:
    return {
        "status": True,
        "ucaller_id": result.ucaller_id,
        "verified": True,
        "verified_at": int(result.verified_at),
        "attempts_left": result.attempts_left,
    }


def inbound(auth: Authorization) -> dict[str, Any]:
    return {
        "status": True,
        "ucaller_id": auth.id,
        "phone": mask(auth.phone),
        "confirmation_number": auth.confirmation_number or "",
    }


def get_balance(account: Account, tariff_code: str, tariff_name: str) -> dict[str, Any]:
    return {
        "status": True,
        "rub_balance": to_rub(account.balance),
        "bonus_balance": to_rub(account.bonus_balance),
        "tariff": tariff_code,
        "tariff_name": tariff_name,
    }


def get_service(service: Service, account: Account) -> dict[str, Any]:
    return {
        "status": True,
        "service_status": 1 if service.enabled and not service.archived else 0,
        "name": service.name,
        "creation_time": int(service.created_at),
        "last_request": int(service.last_request_at or service.created_at),
        "owner": account.email,
        "use_direction": service.use_direction,
        "now_test": service.test_mode,
        "test_info": {
            "test_requests": 0,
            "verified_phone": int(account.phone) if account.phone and account.phone_verified else 0,
        },
    }


def get_account(account: Account, logs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": True,
        "id": account.id,
        "telegram_id": account.telegram_id or 0,
        "two_auth": account.two_auth,
        "email": account.email,
        "logs": logs,
        "updated": int(account.updated_at),
        "created": int(account.created_at),
    }
