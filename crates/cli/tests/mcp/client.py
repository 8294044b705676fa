"""An MCP client independent of rein: the official Python SDK (`mcp` on
PyPI, which scripts/test.sh installs into .ci/py) driving `rein mcp serve`.

    client.py --stdio COMMAND --calls CALLS [--mode auto|legacy]
    client.py --http URL --calls CALLS [--mode auto|legacy]

COMMAND is the server's command line as a JSON list; CALLS a JSON list of
[tool, arguments]. Prints one JSON object: the negotiated protocol version,
the tools listed, and each call's result (is_error, text, structured
content, the progress notifications received during it) or the protocol
error it raised.
"""

import argparse
import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError


async def main() -> None:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", metavar="COMMAND")
    where.add_argument("--http", metavar="URL")
    parser.add_argument("--calls", required=True)
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    args = parser.parse_args()

    if args.stdio:
        command = json.loads(args.stdio)
        # The SDK hands a child only a few variables unless told otherwise;
        # rein needs the test's (the model's key).
        server = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    else:
        server = args.http

    report = {"calls": []}
    async with Client(server, mode=args.mode) as client:
        report["protocol_version"] = client.protocol_version
        listed = await client.list_tools()
        report["tools"] = [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.input_schema,
                "output_schema": tool.output_schema,
            }
            for tool in listed.tools
        ]
        for name, arguments in json.loads(args.calls):
            progress = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append({"progress": value, "message": message})

            try:
                result = await client.call_tool(name, arguments, progress_callback=on_progress)
            except MCPError as error:
                report["calls"].append({"protocol_error": str(error)})
                continue
            report["calls"].append(
                {
                    "is_error": result.is_error,
                    "text": "\n".join(block.text for block in result.content if block.type == "text"),
                    "structured": result.structured_content,
                    "progress": progress,
                }
            )
    json.dump(report, sys.stdout)


asyncio.run(main())
