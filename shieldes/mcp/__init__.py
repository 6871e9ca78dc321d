"""The MCP gateway: registered MCP servers reached through /mcp/{name} with a virtual key (docs/mcp.md)."""
