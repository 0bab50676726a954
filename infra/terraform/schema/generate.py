#!/usr/bin/env python3
"""Generate the provider schema subset the Terraform check (tests/tests/terraform.rs) uses.

Terraform's own schema (`terraform providers schema -json`) needs `terraform init`, which
needs the provider registry; none is reachable in CI. The providers document every
argument in markdown (`docs/resources/<name>.md`, "Argument Reference"), so the subset is
generated from those docs at the pinned release tag, for the resources and data sources
infra/terraform uses, and committed. Regenerate after changing the pin or using a new type
(the exact commands are in infra/terraform/schema/README.md and in each JSON's `command`).

Usage: generate.py --provider NAME --repo GIT_DIR --ref TAG --out FILE TYPE...
TYPE is `resource:<name>` or `data:<name>` without the provider prefix.

Output: {"provider", "version", "source_ref", "command", "resources": {type: BLOCK},
"data_sources": {type: BLOCK}} with BLOCK = {"arguments": {name: {"required": bool}},
"attributes": [exported names], "blocks": {name: BLOCK}}. An argument is `required` only
when the docs say `(Required` unconditionally ("Required unless ..." / "Optional; Required
if ..." count as optional). A nested block is listed under the argument that holds it
when its section ("The `x` block supports:") is found; arguments of a block whose section
the docs lack are not checked (`"open": true`).
"""
import argparse
import json
import re
import subprocess
import sys

ARG = re.compile(r"^\s*\* `([a-z0-9_]+)` - ?\(?([^)\n]*)")
SECTION = re.compile(r"^\s*[Tt]he `([a-z0-9_]+)` (?:block|object|structure)?\s*(?:supports|block supports)")
ANCHOR = re.compile(r'^<a name="([^"]+)"></a>')


def show(repo, ref, path):
    out = subprocess.run(["git", "--git-dir", repo, "show", f"{ref}:{path}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"generate.py: {path} at {ref}: {out.stderr.strip()}")
    return out.stdout


def parse(md, name):
    lines = md.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if re.match(r"^## Arguments? Reference", l))
    except StopIteration:
        sys.exit(f"generate.py: {name}: no '## Argument Reference' section")
    top = {"arguments": {}, "attributes": ["id"], "blocks": {}}
    sections = {}
    current = top["arguments"]
    in_args = True
    for line in lines[start + 1:]:
        if line.startswith("## "):
            in_args = bool(re.match(r"^## Arguments? Reference", line))
            if re.match(r"^## Attributes? Reference", line):
                in_args = "attrs"
            current = None if in_args is False else current
            continue
        if in_args == "attrs":
            m = ARG.match(line)
            if m and not line.startswith("  "):
                top["attributes"].append(m.group(1))
            continue
        if not in_args:
            continue
        s = SECTION.match(line)
        if s:
            current = sections.setdefault(s.group(1), {})
            continue
        m = ARG.match(line)
        if m and current is not None:
            flags = m.group(2)
            required = flags.startswith("Required") and not flags.startswith("Required unless")
            current.setdefault(m.group(1), {"required": required})
    # Attach each documented section to the argument of that name (top level or nested).
    def attach(block, seen):
        for arg in list(block["arguments"]):
            if arg in sections and arg not in seen:
                sub = {"arguments": sections[arg], "attributes": [], "blocks": {}}
                attach(sub, seen | {arg})
                block["blocks"][arg] = sub
    attach(top, set())
    top["attributes"] = sorted(set(top["attributes"]))
    return top


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--provider", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("types", nargs="+")
    a = p.parse_args()
    out = {"provider": a.provider, "version": a.ref.lstrip("v"), "source_ref": a.ref,
           "command": "infra/terraform/schema/generate.py " + " ".join(sys.argv[1:]).replace(a.repo, "<provider git dir>"),
           "resources": {}, "data_sources": {}}
    for t in a.types:
        kind, name = t.split(":", 1)
        folder, key = {"resource": ("resources", "resources"), "data": ("data-sources", "data_sources")}[kind]
        md = show(a.repo, a.ref, f"docs/{folder}/{name}.md")
        out[key][f"{a.provider}_{name}"] = parse(md, name)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
