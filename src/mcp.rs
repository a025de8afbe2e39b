//! Per-operation scopes for MCP servers (feature `mcp`).
