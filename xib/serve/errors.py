"""Errors a client can act on, in the OpenAI error shape: `{"error": {message, type, param, code}}`."""

from __future__ import annotations

from typing import Any

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """One request refused: HTTP `status`, a one-line `message`, the request field it is about."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }


def bad(param: str, rule: str) -> ApiError:
    """400 naming the field (`messages[0].content[1].image_url`) and the rule it breaks."""
    return ApiError(400, f"{param}: {rule}", param=param, code="invalid_value")


def too_large(param: str, rule: str) -> ApiError:
    return ApiError(413, f"{param}: {rule}", param=param, code="too_large")
