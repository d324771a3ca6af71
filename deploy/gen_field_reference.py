"""Renders the module-twin field reference in README.md from the configuration schema
(device-maps/schema/modbus-config.schema.json). `--check` fails if the README is stale."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parents[1]
schema = json.loads((root / "device-maps/schema/modbus-config.schema.json").read_text())
rows = ["| field | type | default | meaning |", "|---|---|---|---|"]


def kind(s):
    if "type" in s:
        return s["type"] if isinstance(s["type"], str) else "/".join(s["type"])
    if "enum" in s:
        return " / ".join(map(str, s["enum"]))
    return "object or string" if "anyOf" in s else "object"


for name, s in schema["properties"].items():
    rows.append(f"| `{name}` | {kind(s)} | | {s.get('description', '')} |")
for name, s in schema["$defs"]["device"]["properties"].items():
    default = s.get("default", "")
    default = json.dumps(default) if default != "" else ""
    rows.append(f"| `devices.<id>.{name}` | {kind(s)} | {default} | {s.get('description', '')} |")
table = "\n".join(rows)
start, end = "<!-- field-reference:start -->", "<!-- field-reference:end -->"
readme = (root / "README.md").read_text()
head, rest = readme.split(start, 1)
_, tail = rest.split(end, 1)
new = f"{head}{start}\n{table}\n{end}{tail}"
if "--check" in sys.argv:
    if new != readme:
        sys.exit("README.md field reference is stale: run python3 deploy/gen_field_reference.py")
    print("field reference up to date")
else:
    (root / "README.md").write_text(new)
