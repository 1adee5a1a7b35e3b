"""Typed config of `xib serve` (conf/serve/*.yaml). Media limits are the ingest rules
(`data.validate`); these are the server's own."""

from dataclasses import dataclass, field


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    model: str = "champion"  # alias (champion, challenger, previous) or version number
    max_request_bytes: int = 16_000_000  # a whole request body (base64 media included)
    max_media_inputs: int = 2  # media parts over a conversation (the DisCRn prompt compares two)
    max_messages: int = 32
    max_text_chars: int = 4000  # all text of a conversation together
    max_tokens: int = 256  # the largest `max_tokens` a request may ask for
    max_n: int = 4  # the largest `n`
    max_stop: int = 4  # stop strings per request (as OpenAI)
    max_batch_size: int = 8  # answers generated together in one LLM call
    batch_wait_ms: float = 10.0  # how long the first request of a batch waits for company
    max_queue: int = 64  # requests waiting or running; beyond: 429
    poll_s: float = 5.0  # how often the registry alias is checked for a new version; 0: never
    threads: int = 0  # torch threads; 0: torch's default
    token_env: str = "XIB_SERVE_TOKEN"  # when this variable is set, requests need `Bearer <it>`
    cors_origins: list[str] = field(default_factory=list)  # empty: no CORS headers (browsers refuse)
