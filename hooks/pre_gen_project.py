"""Validate the answers before anything is generated; on error, say what to type instead."""

import json
import os
import re
import subprocess
import sys

CONTEXT = json.loads(r"""{{ cookiecutter | jsonify }}""")

LICENSES = {"auto", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
            "pddl", "odc-by", "other"}
# Hub repo names: letters, digits, '-', '_', '.'; no '--' or '..'; not starting/ending with - or .
HUB_NAME = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
SLUG = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
# Module names the generated repo already uses or imports.
TAKEN = {"schema", "push", "bids_hf", "tests", "datasets", "nibabel", "pandas", "numpy",
         "pyarrow", "huggingface_hub", "bids2table"}


def problems():
    slug = CONTEXT["dataset_slug"]
    if not SLUG.match(slug):
        yield (f"dataset_slug {slug!r}: use lowercase letters, digits, '-', '_' or '.', "
               "starting and ending with a letter or digit (e.g. arc-aphasia).")
    module = CONTEXT["module_name"]
    if not module.isidentifier() or module in TAKEN or module.startswith("_"):
        yield (f"module_name {module!r}: must be a Python identifier not in "
               f"{sorted(TAKEN)} (e.g. arc_aphasia).")
    repo_id = CONTEXT["hf_repo_id"]
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(HUB_NAME.match(p) for p in parts):
        yield (f"hf_repo_id {repo_id!r}: use ORG/NAME with letters, digits, '-', '_' or '.' "
               "(e.g. my-lab/arc-aphasia).")
    if CONTEXT["license"] not in LICENSES:
        yield f"license {CONTEXT['license']!r}: choose one of {sorted(LICENSES)}."
    root = CONTEXT["bids_root"]
    if root and not os.path.isdir(os.path.expanduser(root)):
        yield f"bids_root {root!r} is not a folder. Give the BIDS dataset folder, or leave it empty."
    yield from unknown_keys()


def unknown_keys():
    """cookiecutter silently drops KEY=VALUE arguments it does not know (a typo such as
    bidsroot=... would go unnoticed), so read them from the cookiecutter command line."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        try:
            out = subprocess.run(["ps", "-o", "args=", "-p", str(os.getppid())],
                                 capture_output=True, text=True, timeout=5, check=False)
            argv = out.stdout.split()
        except (OSError, subprocess.SubprocessError):
            return
    if not any("cookiecutter" in a or "cruft" in a for a in argv[:3]):
        return  # not the command-line tool (e.g. the Python API): nothing to read
    known = {k for k in CONTEXT if not k.startswith("_")}
    for arg in argv:
        key = arg.split("=", 1)[0]
        if "=" in arg and not arg.startswith("-") and key.isidentifier() and key not in known:
            close = [k for k in sorted(known) if k.replace("_", "") == key.replace("_", "")]
            hint = f" Did you mean {close[0]}?" if close else f" Known keys: {', '.join(sorted(known))}."
            yield f"unknown key {key!r} (cookiecutter would ignore it).{hint}"


found = list(problems())
if found:
    print("ERROR: cannot generate the dataset repo:", file=sys.stderr)
    for p in found:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
