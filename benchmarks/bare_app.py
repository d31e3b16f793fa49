"""The floor for `GET /api/v1/settings`: a bare FastAPI route returning the same JSON, no auth.

    python benchmarks/bare_app.py --port P --body FILE [--log-level warning]

FILE holds the JSON body apphub answered; the route returns it as a plain dict, the way a FastAPI
handler usually does (no response model: FastAPI encodes it and wraps it in a JSONResponse).
uvicorn runs with the options `apphub serve` uses (apphub.cli.serve): one worker, uvloop and
httptools when installed ("auto"), no access log, no server header.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from apphub.cli.serve import logging_config

PATH = "/api/v1/settings"


def create_app(body: dict[str, Any]) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(PATH, response_model=None)
    async def settings() -> dict[str, Any]:
        return body

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True, help="JSON file with the body to return")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    body = json.loads(args.body.read_text(encoding="utf-8"))
    uvicorn.run(
        create_app(body),
        host=args.host,
        port=args.port,
        log_config=logging_config(args.log_level),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
