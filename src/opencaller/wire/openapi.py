"""The API describes itself: an OpenAPI 3.1 document at /openapi.json and a reference at /docs.

The answer schemas are written by hand, next to each other, to the exact wire types of
``views.py`` (integers vs strings, nullable fields, the masked phone). What can be taken from
code is: the error codes and texts (``errors.py``) and the call outcomes (``telephony.base``),
so a new code appears here without anyone editing this module. tests/test_openapi.py checks
that real answers validate and fuzzes the server with the document.

/docs is rendered on the server from the same document (Jinja2, one stylesheet, no script), so
it works offline and under a Content-Security-Policy without inline scripts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..errors import MESSAGES, Code
from ..telephony.base import Outcome
from . import openapi_webhooks

Schema = dict[str, Any]

HERE = Path(__file__).parent
EXTENSION = "x-opencaller-extension"  # marks what uCaller itself does not have (spec §14)

# -- value types ------------------------------------------------------------------------------

TRUE: Schema = {"type": "boolean", "const": True}
FALSE: Schema = {"type": "boolean", "const": False}
UCALLER_ID: Schema = {
    "type": "integer",
    "minimum": 1,
    "description": "uCaller ID of the authorization (JSON integer).",
    "examples": [103000],
}
UNIX_TIME: Schema = {"type": "integer", "minimum": 0, "description": "Unix time, seconds."}
MASKED_PHONE: Schema = {
    "type": "string",
    "pattern": r"^(?:[0-9]{4}\*\*\*[0-9]{4}|\*\*\*[0-9]{1,4})$",
    "description": "The number called, masked: first 4 and last 4 digits for numbers of 9 or more"
    " digits, only the last 4 for shorter ones.",
    "examples": ["7900***1010"],
}
CODE: Schema = {
    "type": "string",
    "pattern": "^[0-9]{4}$",
    "description": "The 4-digit code as a string (leading zeros kept): the last 4 digits of the"
    " calling number, or the code the voice call speaks.",
    "examples": ["0427"],
}
ROUBLES: Schema = {
    "type": "number",
    "minimum": 0,
    "description": "Roubles, a JSON number (fractions allowed).",
    "examples": [0.3],
}
SHORT_TEXT: Schema = {"type": "string", "maxLength": 64}


def _ext(schema: Schema) -> Schema:
    return {**schema, EXTENSION: True}


def _object(props: dict[str, Schema], *, optional: tuple[str, ...] = (), **extra: Any) -> Schema:
    """A closed object: every property required unless named in ``optional``, no others."""
    return {
        "type": "object",
        "properties": props,
        "required": [name for name in props if name not in optional],
        "additionalProperties": False,
        **extra,
    }


# -- answers ----------------------------------------------------------------------------------


def _init_call_props() -> dict[str, Schema]:
    return {
        "status": TRUE,
        "ucaller_id": UCALLER_ID,
        "phone": MASKED_PHONE,
        "code": CODE,
        "client": {**SHORT_TEXT, "description": 'Echo of `client`; "" when none was sent.'},
        "unique_request_id": {
            **SHORT_TEXT,
            "description": "Echo of `unique`; only when `unique` was sent.",
        },
        "exists": {
            "type": "boolean",
            "description": "Only with `unique`: false on first use, true when this answer is the"
            " replay of an earlier request with the same key (same id, no new call or charge).",
        },
    }


_UNIQUE_PAIR = {"unique_request_id": ["exists"], "exists": ["unique_request_id"]}

INIT_CALL = _object(
    _init_call_props(),
    optional=("unique_request_id", "exists"),
    dependentRequired=_UNIQUE_PAIR,
)
INIT_REPEAT = _object(
    {
        **_init_call_props(),
        "ucaller_id": {**UCALLER_ID, "description": "A new uCaller ID for the repeat."},
        "free_repeated": {**TRUE, "description": "The repeat was placed, free of charge."},
    },
    optional=("unique_request_id", "exists"),
    dependentRequired=_UNIQUE_PAIR,
)

PHONE_INFO: Schema = _object(
    {
        "operator": {"type": "string", "description": "Holder of the number's range."},
        "region": {"type": "string", "description": "Region of the number."},
        "mnp": {"type": "string", "description": 'Operator it was ported to, "" when none.'},
    }
)

GET_INFO = _object(
    {
        "status": TRUE,
        "ucaller_id": UCALLER_ID,
        "init_time": {**UNIX_TIME, "description": "When the authorization was created."},
        "call_status": {
            "type": "integer",
            "enum": [-1, 0, 1],
            "description": "-1 still in progress, 0 the phone was not reached, 1 it was.",
        },
        "is_repeated": {"type": "boolean", "description": "This id is a repeat (deprecated)."},
        "repeatable": {
            "type": "boolean",
            "description": "Free repeats are left (deprecated).",
        },
        "repeat_times": {
            "type": "integer",
            "minimum": 0,
            "description": "Free repeats left, 0 when none (deprecated).",
        },
        "repeated_ucaller_ids": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "description": "Ids of the repeats of this chain (deprecated).",
        },
        "first_ucaller_id": {
            **UCALLER_ID,
            "description": "First id of the chain; only when `is_repeated` is true (deprecated).",
        },
        "unique": {**SHORT_TEXT, "description": "The chain's `unique` key, when it has one."},
        "client": {**SHORT_TEXT, "description": '`client` as sent, "" when none.'},
        "phone": MASKED_PHONE,
        "code": CODE,
        "country_code": {
            "type": "string",
            "pattern": "^(?:[A-Z]{2}|001)$",
            "description": "ISO 3166-1 alpha-2 of the number (001 for non-geographic numbers).",
            "examples": ["RU"],
        },
        "country_image": {
            "type": "string",
            "format": "uri",
            "pattern": r"^https://static\.ucaller\.ru/flag/[a-z0-9]+\.svg$",
            "description": "Flag URL, in the pattern old clients know.",
        },
        "phone_info": {
            "type": "array",
            "items": PHONE_INFO,
            "description": "Carrier and region of the number; may be empty.",
        },
        "cost": {**ROUBLES, "description": "What this authorization was charged."},
        "balance": {
            **ROUBLES,
            "description": "Account balance before this authorization was charged.",
        },
        "call_outcome": _ext(
            {
                "type": ["string", "null"],
                "enum": [*(o.value for o in Outcome), None],
                "description": "What the network said; null while the call is in progress.",
            }
        ),
        "sip_code": _ext(
            {
                "type": ["integer", "null"],
                "description": "Final SIP status of the call, when there was one.",
            }
        ),
        "sip_reason": _ext(
            {"type": ["string", "null"], "description": "Its reason phrase, when there was one."}
        ),
        "is_test": _ext(
            {"type": "boolean", "description": "A test number or a service in test mode."}
        ),
        "verified": _ext(
            {"type": "boolean", "description": "verifyCode (or the inbound call) confirmed it."}
        ),
        "verified_at": _ext(
            {"type": ["integer", "null"], "description": "When it was verified; null until then."}
        ),
    },
    # no code for an inbound verification: the subscriber calls us, nothing is dialled
    optional=("first_ucaller_id", "unique", "code"),
    # first_ucaller_id comes exactly with the repeats
    **{
        "if": {"properties": {"is_repeated": {"const": True}}},
        "then": {"required": ["first_ucaller_id"]},
        "else": {"not": {"required": ["first_ucaller_id"]}},
    },
)

GET_BALANCE = _object(
    {
        "status": TRUE,
        "rub_balance": {**ROUBLES, "description": "Balance of the account."},
        "bonus_balance": {**ROUBLES, "description": "Bonus balance (old clients read it)."},
        "tariff": {"type": "string", "description": "Code of the account's tariff."},
        "tariff_name": {"type": "string", "description": "Name of the tariff."},
    }
)

GET_SERVICE = _object(
    {
        "status": TRUE,
        "service_status": {
            "type": "integer",
            "enum": [0, 1],
            "description": "1 when the service is enabled and not archived, else 0.",
        },
        "name": {"type": "string"},
        "creation_time": {**UNIX_TIME, "description": "When the service was created."},
        "last_request": {
            **UNIX_TIME,
            "description": "Last request to the service (its creation time before any).",
        },
        "owner": {"type": "string", "description": "E-mail of the owning account."},
        "use_direction": {"type": "string", "description": "Where the service is used."},
        "now_test": {"type": "boolean", "description": "The service is in test mode."},
        "test_info": _object(
            {
                "test_requests": {
                    "type": "integer",
                    "const": 0,
                    "description": "Always 0: test numbers are unlimited.",
                },
                "verified_phone": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The account's verified phone as a number, 0 when none.",
                },
            }
        ),
    }
)

GET_ACCOUNT = _object(
    {
        "status": TRUE,
        "id": {"type": "integer", "minimum": 1, "description": "Account id."},
        "telegram_id": {"type": "integer", "description": "0 when unknown."},
        "two_auth": {"type": "boolean", "description": "Two-factor sign-in is on."},
        "email": {"type": "string"},
        "logs": {
            "type": "array",
            "maxItems": 50,
            "description": "The 50 newest entries of the account's log, newest first.",
            "items": _object(
                {
                    "action": {"type": "string"},
                    "user_agent": {"type": "string"},
                    "ip": {"type": "string"},
                    "created": UNIX_TIME,
                }
            ),
        },
        "updated": UNIX_TIME,
        "created": UNIX_TIME,
    }
)

CHECK_PHONE = _object(
    {
        "status": TRUE,
        "source": {"type": "string", "description": "The input as received."},
        "mobile": {"type": "integer", "enum": [0, 1], "description": "1 for a mobile number."},
        "phone": {
            "type": "integer",
            "minimum": 1,
            "description": "E.164 as a JSON number, usable as initCall's `phone`.",
            "examples": [79091000000],
        },
        "country_iso": {"type": "string", "examples": ["RU"]},
        "country_code": {"type": "integer", "minimum": 1, "description": "Dialling code."},
        "mnc": {
            "type": "integer",
            "minimum": 0,
            "description": "Mobile network code of the serving operator, 0 when unknown.",
        },
        "number": {"type": "integer", "minimum": 0, "description": "National number."},
        "provider": {"type": "string", "description": "Brand of the serving operator."},
        "company": {"type": "string", "description": "Its legal entity (Russian numbers)."},
        "country": {"type": "string", "description": "Country name (in Russian)."},
        "region": {"type": "string"},
        "city": {"type": "string", "description": '"" when the registry names none.'},
        "phone_format": {"type": "string", "examples": ["+7 909 100-00-00"]},
        "cost": {**ROUBLES, "description": "Price of this lookup (0 for test numbers)."},
        "balance": {**ROUBLES, "description": "Account balance after it."},
    }
)

INBOUND = _object(
    {
        "status": TRUE,
        "ucaller_id": UCALLER_ID,
        "phone": MASKED_PHONE,
        "confirmation_number": {
            "type": "string",
            "pattern": "^[0-9]*$",
            "description": "The number the user must call: digits, no `+`.",
            "examples": ["79990000000"],
        },
    }
)

ATTEMPTS_LEFT: Schema = _ext(
    {"type": "integer", "minimum": 0, "description": "Code checks left for this authorization."}
)

VERIFY_CODE = _ext(
    _object(
        {
            "status": TRUE,
            "ucaller_id": UCALLER_ID,
            "verified": {"type": "boolean", "const": True},
            "verified_at": {**UNIX_TIME, "description": "When the code was first confirmed."},
            "attempts_left": ATTEMPTS_LEFT,
        }
    )
)

HEALTH = _object(
    {
        "status": {"type": "boolean", "description": "Database and providers are both up."},
        "database": {"type": "boolean", "description": "The database (and Redis) answer."},
        "providers": {"type": "boolean", "description": "The telephony providers are up."},
    }
)


def error_schema() -> Schema:
    codes = "\n".join(f"* `{int(c)}` — {MESSAGES[c]}" for c in Code)
    return _object(
        {
            "status": FALSE,
            "error": {"type": "string", "minLength": 1, "description": "English text."},
            "code": {
                "type": "integer",
                "enum": [int(c) for c in Code],
                "description": "The error code (JSON integer); clients branch on it.",
            },
            "attempts_left": {**ATTEMPTS_LEFT, "description": "With errors 60 and 61 only."},
        },
        optional=("attempts_left",),
        description="Every error: HTTP 200 with this object. The codes:\n\n" + codes,
    )


# -- arguments --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    description: str
    query: Schema  # as a query or form value (text)
    json: Schema  # in a JSON body
    required: bool = False
    example: Any = None


def _text_or(json_types: list[str], **extra: Any) -> tuple[Schema, Schema]:
    return {"type": "string", **extra}, {"type": json_types, **extra}


_PHONE = Arg(
    "phone",
    "The number with its country code: ASCII digits, with spaces, `+`, `-`, `(` and `)` allowed"
    " around them (`+7 (900) 000-00-01` works); anything else is error 3. JSON number or"
    " string.",
    *_text_or(["integer", "string"]),
    required=True,
    example="79000000001",
)
_UID = Arg(
    "uid",
    "The `ucaller_id` to act on (`ucaller_id` is accepted as its name too).",
    {"type": "string", "pattern": "^[0-9]{1,18}$"},
    {"type": ["integer", "string"]},
)
_UCALLER_ID = Arg(
    "ucaller_id",
    "Another name of `uid` (`uid` wins when both are sent).",
    {"type": "string", "pattern": "^[0-9]{1,18}$"},
    {"type": ["integer", "string"]},
)
_FLAG_TEXT: Schema = {
    "type": "string",
    "enum": ["true", "True", "1", "on", "yes", "false", "False", "0", "off", "no", ""],
}


def _flag(name: str, description: str) -> Arg:
    return Arg(name, description, _FLAG_TEXT, {"type": ["boolean", "integer", "string"]})


INIT_CALL_ARGS = (
    _PHONE,
    Arg(
        "code",
        '1 to 4 digits, left-padded to 4 (`7` → `"0007"`); generated when absent.',
        {"type": "string", "pattern": "^[0-9]{1,4}$"},
        {"type": ["integer", "string"]},
        example="0427",
    ),
    Arg("client", "Free text (nickname, e-mail) shown in statistics.", SHORT_TEXT, SHORT_TEXT),
    Arg(
        "unique",
        "Idempotency key: a replay returns the first authorization (`exists: true`).",
        SHORT_TEXT,
        SHORT_TEXT,
    ),
    _flag("voice", "Deliver the code by a voice call (error 20 where unavailable)."),
    _flag("mix", "Flash call first, then a voice call if the phone was not reached."),
)


# -- operations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    summary: str
    description: str
    answer: str  # component name
    args: tuple[Arg, ...] = ()
    errors: tuple[Code, ...] = ()


METHODS: tuple[Method, ...] = (
    Method(
        "initCall",
        "Start a flash-call (or voice) authorization",
        "Places a call to `phone` from a number whose last 4 digits are the code (or speaks the"
        " code with `voice`). Billed when accepted; test numbers (79000000001 always reached,"
        " 79000000002 never) and services in test mode are free. Follow it with getInfo.",
        "InitCallAnswer",
        INIT_CALL_ARGS,
        (
            Code.BAD_PARAMETER,
            Code.BAD_PHONE,
            Code.SERVICE_DISABLED,
            Code.INIT_FAILED,
            Code.COUNTRY_FORBIDDEN,
            Code.NUMBER_LIMIT,
            Code.NUMBER_WAIT,
            Code.VOICE_UNAVAILABLE,
            Code.HOURLY_LIMIT,
            Code.LOW_BALANCE,
            Code.PHONE_NOT_VERIFIED,
            Code.SUSPECTED_FRAUD,
        ),
    ),
    Method(
        "initRepeat",
        "Free repeat of an authorization (deprecated by uCaller, supported here)",
        "At most 2 per authorization, within 5 minutes; the repeat gets a new `ucaller_id`,"
        " the same phone and code, and is free.",
        "InitRepeatAnswer",
        (
            _UID,
            _UCALLER_ID,
            _flag("voice", "Make the repeat a voice call."),
            Arg(
                "unique",
                "Idempotency key (our extension): a retry gets the same repeat.",
                SHORT_TEXT,
                SHORT_TEXT,
            ),
        ),
        (
            Code.BAD_PARAMETER,
            Code.NO_SUCH_ID,
            Code.REPEAT_EXPIRED,
            Code.REPEAT_LIMIT,
            Code.REPEAT_INVALID,
            Code.NUMBER_LIMIT,
            Code.NUMBER_WAIT,
        ),
    ),
    Method(
        "getInfo",
        "State of an authorization",
        "Poll it until `call_status` leaves -1.",
        "GetInfoAnswer",
        (_UID, _UCALLER_ID),
        (Code.BAD_PARAMETER, Code.NO_SUCH_ID),
    ),
    Method("getBalance", "Balance and tariff of the account", "", "GetBalanceAnswer"),
    Method("getService", "The calling service", "", "GetServiceAnswer"),
    Method("getAccount", "The account, with its 50 newest log entries", "", "GetAccountAnswer"),
    Method(
        "checkPhone",
        "Standardise a phone number and look it up",
        "Billed at the tariff's lookup price (test numbers and test mode are free); an invalid"
        " number is error 3 and costs nothing.",
        "CheckPhoneAnswer",
        (_PHONE,),
        (Code.BAD_PARAMETER, Code.BAD_PHONE, Code.LOW_BALANCE),
    ),
    Method(
        "inboundCallWaiting",
        "Verification by the user calling in",
        "Answers the number the user must call; when the call from `phone` arrives (within 10"
        " minutes) a signed JSON webhook is posted to `callback_url`.",
        "InboundCallWaitingAnswer",
        (
            _PHONE,
            Arg(
                "callback_url",
                "http(s) URL the webhook is posted to.",
                {"type": "string", "maxLength": 2048, "pattern": "^https?://"},
                {"type": "string", "maxLength": 2048, "pattern": "^https?://"},
                required=True,
                example="https://example.com/ucaller/webhook",
            ),
        ),
        (Code.BAD_PARAMETER, Code.BAD_PHONE, Code.LOW_BALANCE),
    ),
    Method(
        "verifyCode",
        "Check the code the subscriber typed (our extension)",
        "The server compares `code` with the authorization's code. The original and its free"
        " repeats share one code and one attempt counter (the service's `verify_attempts`,"
        " default 5); a code can be checked for `verify_ttl_s` (default 600 s) after initCall."
        " Asking again with the right code repeats the success.",
        "VerifyCodeAnswer",
        (
            _UID,
            _UCALLER_ID,
            Arg(
                "code",
                "The code the subscriber typed: 1 to 4 digits, left-padded to 4.",
                {"type": "string", "pattern": "^[0-9]{1,4}$"},
                {"type": ["integer", "string"]},
                required=True,
                example="0427",
            ),
            Arg(
                "unique",
                "Idempotency key: a retry with the same arguments gets the first answer and"
                " spends no attempt.",
                SHORT_TEXT,
                SHORT_TEXT,
            ),
        ),
        (
            Code.BAD_PARAMETER,
            Code.NO_SUCH_ID,
            Code.WRONG_CODE,
            Code.NO_ATTEMPTS_LEFT,
            Code.CODE_EXPIRED,
            Code.ALREADY_VERIFIED,
        ),
    ),
)

ANSWERS: dict[str, Schema] = {
    "VerifyCodeAnswer": VERIFY_CODE,
    "InitCallAnswer": INIT_CALL,
    "InitRepeatAnswer": INIT_REPEAT,
    "GetInfoAnswer": GET_INFO,
    "GetBalanceAnswer": GET_BALANCE,
    "GetServiceAnswer": GET_SERVICE,
    "GetAccountAnswer": GET_ACCOUNT,
    "CheckPhoneAnswer": CHECK_PHONE,
    "InboundCallWaitingAnswer": INBOUND,
    "HealthAnswer": HEALTH,
}

# Errors any authenticated method may answer, besides its own.
COMMON_ERRORS = (
    Code.IP_BLOCKED,
    Code.BAD_REQUEST,
    Code.AUTH_FAILED,
    Code.TOO_MANY_REQUESTS,
    Code.INTERNAL,
    Code.ACCOUNT_BLOCKED,
    Code.IP_FORBIDDEN,
    Code.SERVICE_ARCHIVED,
)

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"queryKey": [], "queryServiceId": []}]

AUTH_TEXT = (
    "Three schemes, the first present wins: the header `Authorization: Bearer"
    " <key>.<service_id>`; `key` and `service_id` in the body (JSON or form); `key` and"
    " `service_id` in the query string (also on POST)."
)


def _answer(component: str, *, errors: bool = True) -> Schema:
    ref = {"$ref": f"#/components/schemas/{component}"}
    schema = {"oneOf": [ref, {"$ref": "#/components/schemas/Error"}]} if errors else ref
    response: Schema = {
        "description": "Always HTTP 200 and JSON; `status` tells success from an error.",
        "content": {"application/json": {"schema": schema}},
    }
    if errors:
        response["headers"] = {
            "Retry-After": {
                "description": "With errors 0, 18, 19, 50 and 429, and error 64 when the refusal"
                " is temporary: seconds until a request would pass.",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return {"200": response}


def _query_parameter(arg: Arg) -> Schema:
    param: Schema = {
        "name": arg.name,
        "in": "query",
        "required": arg.required,
        "description": arg.description,
        "schema": arg.query,
    }
    if arg.example is not None:
        param["example"] = arg.example
    return param


def _body(method: Method) -> Schema:
    credentials_json: dict[str, Schema] = {
        "key": {"type": "string", "description": "Secret key of the service (body scheme)."},
        "service_id": {
            "type": ["integer", "string"],
            "description": "Id of the service (body scheme); number or string.",
        },
    }
    credentials_form: dict[str, Schema] = {
        "key": credentials_json["key"],
        "service_id": {**credentials_json["service_id"], "type": "string"},
    }
    required = [a.name for a in method.args if a.required]
    json_schema: Schema = {
        "type": "object",
        "properties": {
            **credentials_json,
            **{a.name: {**a.json, "description": a.description} for a in method.args},
        },
    }
    form_schema: Schema = {
        "type": "object",
        "properties": {
            **credentials_form,
            **{a.name: {**a.query, "description": a.description} for a in method.args},
        },
    }
    if required:
        json_schema["required"] = required
        form_schema["required"] = required
    examples = {a.name: a.example for a in method.args if a.example is not None}
    if examples:
        json_schema["examples"] = [examples]
        form_schema["examples"] = [examples]
    return {
        "required": False,
        "description": "Arguments in the body (they win over the query). JSON is also read on"
        " GET and without a Content-Type.",
        "content": {
            "application/json": {"schema": json_schema},
            "application/x-www-form-urlencoded": {"schema": form_schema},
            "multipart/form-data": {"schema": form_schema},
        },
    }


def _errors_text(codes: tuple[Code, ...]) -> str:
    return ", ".join(str(int(c)) for c in codes)


def _operation(method: Method, verb: str) -> Schema:
    errors = f"Errors of every method: {_errors_text(COMMON_ERRORS)}."
    if method.errors:
        errors = f"Errors of this method: {_errors_text(method.errors)}; of every method:" + (
            f" {_errors_text(COMMON_ERRORS)}."
        )
    description = f"{method.description}\n\n{errors}" if method.description else errors
    op: Schema = {
        "operationId": f"{method.name}{verb.title()}",
        "tags": ["uCaller"],
        "summary": method.summary,
        "description": description,
        "security": SECURITY,
        "parameters": [_query_parameter(a) for a in method.args if verb == "get"],
        "responses": _answer(method.answer),
    }
    if verb == "post":
        op["requestBody"] = _body(method)
    return op


@functools.cache
def document() -> Schema:
    """The OpenAPI 3.1 document; built once (treat it as read-only)."""
    paths: dict[str, Schema] = {}
    for method in METHODS:
        paths[f"/v1.0/{method.name}"] = {
            "get": _operation(method, "get"),
            "post": _operation(method, "post"),
        }
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "tags": ["uCaller"],
            "summary": "Infrastructure status (no authentication)",
            "description": "Also at `/v1.0/health`; answers the same to any verb.",
            "security": [],
            "responses": _answer("HealthAnswer", errors=False),
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opencaller — uCaller API v1.0",
            "version": __version__,
            "description": "Phone-number verification by flash call, voice code or inbound"
            " call, on the uCaller API v1.0 wire. Paths also work without `/v1.0`, with a"
            " trailing slash and in any letter case; unknown methods and other verbs answer"
            " error 405. Every answer is HTTP 200 JSON with a boolean `status`.\n\n" + AUTH_TEXT,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "uCaller", "description": "uCaller API v1.0 methods."},
            {"name": "Webhooks", "description": "What opencaller POSTs to your URLs."},
        ],
        "paths": paths,
        "webhooks": openapi_webhooks.webhooks(),
        "components": {
            "schemas": {**ANSWERS, "Error": error_schema(), **openapi_webhooks.SCHEMAS},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "<key>.<service_id>",
                    "description": "`Authorization: Bearer <key>.<service_id>`.",
                },
                "queryKey": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "key",
                    "description": "Secret key of the service, with `service_id`.",
                },
                "queryServiceId": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "service_id",
                    "description": "Id of the service, with `key`.",
                },
            },
        },
    }


# -- /docs ------------------------------------------------------------------------------------


def type_label(schema: Schema) -> str:
    """A short human name of a schema's type: ``integer | null``, ``array of object``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "oneOf" in schema:
        return " or ".join(type_label(s) for s in schema["oneOf"])
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    label = " | ".join(str(k) for k in kinds)
    if kinds == ["array"] and "items" in schema:
        label = f"array of {type_label(schema['items'])}"
    if "const" in schema:
        label += f" = {orjson.dumps(schema['const']).decode()}"
    elif "enum" in schema:
        label += ": " + ", ".join(orjson.dumps(v).decode() for v in schema["enum"])
    if "pattern" in schema:
        label += f" /{schema['pattern']}/"
    if "maxLength" in schema:
        label += f" (≤ {schema['maxLength']} chars)"
    return label


_BACKTICKS = re.compile(r"`([^`]+)`")


def inline_code(text: str) -> Markup:
    """Escaped text with `backticked` parts as <code>."""
    return Markup(_BACKTICKS.sub(r"<code>\1</code>", str(escape(text))))


def answer_links(schema: Schema) -> Markup:
    """Links to the answer schemas a response may hold: ``InitCallAnswer or Error``."""
    refs = [s["$ref"] for s in schema.get("oneOf", [schema]) if "$ref" in s]
    names = [str(ref).rsplit("/", 1)[-1] for ref in refs]
    return Markup(" or ").join(Markup('<a href="#{0}">{0}</a>').format(n) for n in names)


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["type_label"] = type_label
    env.filters["inline_code"] = inline_code
    env.filters["answer_links"] = answer_links
    return env


@functools.cache
def docs_html() -> str:
    doc = document()
    schemas = doc["components"]["schemas"]
    return (
        _environment()
        .get_template("openapi_docs.html")
        .render(
            doc=doc,
            schemas=schemas,
            answers=[(name, schemas[name]) for name in ANSWERS],
            webhooks=[(name, schemas[name]) for name in openapi_webhooks.SCHEMAS],
            signature_text=openapi_webhooks.SIGNATURE_TEXT,
            codes=[(int(c), MESSAGES[c]) for c in Code],
            extension=EXTENSION,
        )
    )


def openapi_routes() -> list[BaseRoute]:
    """/openapi.json, /docs and its stylesheet; no authentication."""
    body = orjson.dumps(document())
    css = (HERE / "static" / "openapi_docs.css").read_bytes()

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html())

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css; charset=utf-8")

    return [
        Route("/openapi.json", openapi_json, methods=["GET", "HEAD"]),
        Route("/docs", docs, methods=["GET", "HEAD"]),
        Route("/docs/openapi.css", stylesheet, methods=["GET", "HEAD"]),
    ]
