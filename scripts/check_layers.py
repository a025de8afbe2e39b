#!/usr/bin/env python3
"""Checks that src/ imports form the DAG of ARCHITECTURE.md: a module names only
modules of a lower level (`crate::<module>` anywhere outside comments), plus the
explicit bans. Exits 1 and lists every violation otherwise."""
import pathlib
import re
import sys

LEVELS = {
    "syntax": 0, "error": 0, "fetch": 0, "telemetry": 0,
    "scope": 1, "challenge": 1, "credential": 1, "keys": 1,
    "claims": 2,
    "verify": 3, "extensions": 3, "observe": 3,
    "bind": 4,
    "guard": 5, "redis": 5,
    "layer": 6, "form": 6, "authorize": 6, "extract": 6, "metadata": 6, "mcp": 6, "rmcp": 6,
    "builder": 7, "testing": 7,
}
BANNED = {("extract", "guard"), ("extract", "verify"), ("authorize", "guard"), ("authorize", "verify"), ("mcp", "guard"), ("mcp", "verify"), ("rmcp", "guard"), ("rmcp", "verify")}
# Public API only: `testing` names root re-exports (`crate::TokenGuard`), never a module.
PUBLIC_ONLY = {"testing"}
NO_FRAMEWORK = {"syntax", "error", "fetch", "scope", "credential", "keys", "claims", "verify", "bind", "redis"}

src = pathlib.Path(__file__).resolve().parent.parent / "src"
problems = []
for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src).with_suffix("")
    module = rel.parts[0]
    # src/bin/: binaries are crates of their own, on the public API only.
    if module in ("lib", "bin"):
        continue
    if module not in LEVELS:
        problems.append(f"{path}: module `{module}` has no level in scripts/check_layers.py")
        continue
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith(("#[cfg(test)]", "#[cfg(all(test")):
            break  # unit tests (at the end of a file) may use anything
        lines.append(line.split("//")[0])
    code = "\n".join(lines)
    for used in sorted(set(re.findall(r"\bcrate::([a-z_]+)", code))):
        if used == module or used == "__private":
            continue
        if module in PUBLIC_ONLY:
            problems.append(f"{path}: `{module}` uses `crate::{used}`; it may use the public API only")
        elif used not in LEVELS:
            continue  # a root item (`crate::TokenGuard`), not a module
        elif LEVELS[used] >= LEVELS[module] or (module, used) in BANNED:
            problems.append(f"{path}: `{module}` (level {LEVELS[module]}) must not use `{used}` (level {LEVELS[used]})")
    if module in NO_FRAMEWORK:
        for framework in re.findall(r"\b(tower_layer|tower_service|axum|tonic)::", code):
            problems.append(f"{path}: `{module}` must not know `{framework}`")

for problem in problems:
    print(problem)
if problems:
    sys.exit(1)
print(f"import layers: ok ({len(list(src.rglob('*.rs')))} files)")
