"""Renders the module-twin field references in README.md from the configuration schemas,
which are generated from the Rust configuration types (device-maps/schema/
modbus-config.schema.json and ble-config.schema.json; `UPDATE_SCHEMAS=1 cargo test -p
bridge-modbus -p bridge-ble --lib schema_files` writes them). One table per module,
between its markers. `--check` fails if the README is stale."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parents[1]

# Device maps are documented with their own schema: one row each.
OPAQUE = {"MapSpec", "AdvertMap"}
TABLES = [
    ("modbus-config.schema.json", "field-reference"),
    ("ble-config.schema.json", "ble-field-reference"),
]


def resolve(schema, s):
    """The definition a `$ref` points at (and its name), or the schema itself; an
    optional value (`anyOf` with null) is its non-null alternative."""
    alts = [a for a in s.get("anyOf", []) if a.get("type") != "null"]
    if len(alts) == 1 and len(s.get("anyOf", [])) == 2:
        s = alts[0]
    ref = s.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return schema["$defs"][name], name
    return s, None


def kind(schema, s):
    s, name = resolve(schema, s)
    if "const" in s:
        return json.dumps(s["const"])
    if "oneOf" in s and all("const" in v for v in s["oneOf"]):
        return " / ".join(str(v["const"]) for v in s["oneOf"])
    if "enum" in s:
        return " / ".join(map(str, s["enum"]))
    for alt in ("anyOf", "oneOf"):
        if alt in s:
            kinds = [kind(schema, v) for v in s[alt] if v.get("type") != "null"]
            return " or ".join(dict.fromkeys(kinds))
    t = s.get("type", "object")
    if isinstance(t, list):
        t = "/".join(x for x in t if x != "null")
    if t == "array" and "items" in s:
        return f"array of {kind(schema, s['items'])}"
    if t == "object" and name and name not in OPAQUE:
        return "object"
    return t


def bounds(s):
    lo, hi = s.get("minimum"), s.get("maximum")
    if lo is None and hi is None:
        lo, hi = s.get("minLength"), s.get("maxLength")
        unit = " characters"
    else:
        unit = ""
    if lo is None and hi is None:
        return ""
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
    if hi is None:
        return f"≥ {fmt(lo)}{unit}"
    if lo is None:
        return f"≤ {fmt(hi)}{unit}"
    return f"{fmt(lo)}-{fmt(hi)}{unit}"


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def rows_of(schema, obj, prefix, out, note=""):
    """One row per property of `obj`, descending into the module's own objects."""
    for name, prop in obj.get("properties", {}).items():
        if "const" in prop:
            continue  # the tag of a variant: named in the rows' "(variant)" prefix
        path = f"{prefix}{name}"
        target, ref = resolve(schema, prop)
        default = prop.get("default")
        # Objects show their fields' defaults; null is "absent".
        default = "" if isinstance(default, (dict, type(None))) else json.dumps(default, ensure_ascii=False)
        meaning = prop.get("description") or target.get("description", "")
        out.append((path, kind(schema, prop), default, bounds(target if ref else prop), note + meaning))
        descend(schema, target, ref, path, out)


def descend(schema, target, ref, path, out):
    if ref in OPAQUE:
        return
    if "oneOf" in target and all(v.get("type") == "object" for v in target["oneOf"]):
        # A tagged enum (the connection): each variant's fields, merged where equal.
        merged = {}
        for variant in target["oneOf"]:
            tag = next(
                ((k, p["const"]) for k, p in variant.get("properties", {}).items() if "const" in p),
                ("?", "?"),
            )
            variant_rows = []
            rows_of(schema, variant, f"{path}.", variant_rows)
            for row in variant_rows:
                merged.setdefault(row, []).append(tag)
        for row, tags in merged.items():
            p, k, d, b, m = row
            values = ", ".join(v for _, v in tags)
            out.append((p, k, d, b, f"({tags[0][0]}: {values}) {m}"))
        return
    if target.get("type") == "object" and "properties" in target:
        rows_of(schema, target, f"{path}.", out)
        return
    extra = target.get("additionalProperties")
    if isinstance(extra, dict) and "$ref" in extra:
        inner, name = resolve(schema, extra)
        if name in OPAQUE:
            return
        own = inner.get("properties", {})
        if name == "GroupDoc":
            # A group: its own keys; the device fields are those of devices.<id>.
            device = schema["$defs"]["DeviceDoc"]["properties"]
            inner = {"properties": {k: v for k, v in own.items() if k not in device}}
        rows_of(schema, inner, f"{path}.<{'name' if name != 'DeviceDoc' else 'id'}>.", out)
        return
    items = target.get("items")
    if isinstance(items, dict):
        inner, name = resolve(schema, items)
        for alt in inner.get("anyOf", []) + inner.get("oneOf", []) + [inner]:
            alt_target, alt_ref = resolve(schema, alt)
            if alt_target.get("type") == "object" and alt_ref not in OPAQUE:
                rows_of(schema, alt_target, f"{path}[].", out)


def table(file):
    schema = json.loads((root / "device-maps/schema" / file).read_text())
    out = []
    rows_of(schema, schema, "", out)
    lines = ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for p, k, d, b, m in out:
        lines.append(f"| `{p}` | {cell(k)} | {cell(d)} | {cell(b)} | {cell(m)} |")
    return "\n".join(lines)


readme = (root / "README.md").read_text()
new = readme
for file, marker in TABLES:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, rest = new.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{table(file)}\n{end}{tail}"
if "--check" in sys.argv:
    if new != readme:
        sys.exit("README.md field reference is stale: run python3 deploy/gen_field_reference.py")
    print("field reference up to date")
else:
    (root / "README.md").write_text(new)
