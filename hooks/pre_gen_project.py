"""Check the answers before anything is generated; on error, say what to type instead.

A relative ``bids_root`` is resolved here, against the folder cookiecutter (or cruft) was run
from, and handed to post_gen_project.py, which infers schema.py from it. When cruft re-bakes
an existing repo (``cruft update``, ``cruft diff``), ``bids_root`` is not looked at: the data
may have moved since, and the repo's schema.py is the maintainer's by then.
"""

import json
import os
import re
import subprocess
import sys

CONTEXT = json.loads(r"""{{ cookiecutter | jsonify }}""")
HANDOVER = ".cookiecutter-bids-root"  # read, then removed, by post_gen_project.py

# The dataset_slug prompt in cookiecutter.json states this same rule (a test checks).
SLUG_RULE = ("lowercase letters, digits, '-', '_' or '.', starting and ending with a letter "
             "or digit, at most 64 characters")
SLUG = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
# Hub repo names: letters, digits, '-', '_', '.'; no '--' or '..'; not starting/ending with - or .
HUB_NAME = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
# Module names the generated repo already uses or imports.
TAKEN = {"schema", "push", "bids_hf", "tests", "datasets", "nibabel", "pandas", "numpy",
         "pyarrow", "huggingface_hub", "bids2table"}


def parent_argv():
    """The command line of the process running this hook: cookiecutter's or cruft's."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:  # no /proc (macOS): ps, which loses the quoting of arguments
        try:
            out = subprocess.run(["ps", "-o", "args=", "-p", str(os.getppid())],
                                 capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return []
        return out.stdout.split()


def tool(argv):
    """("cookiecutter" or "cruft", the arguments after it); ("", []) for the Python API."""
    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) in ("cookiecutter", "cruft"):
            return os.path.basename(arg), argv[i + 1:]
    return "", []


def invocation_dir():
    """The folder the command was run from. cookiecutter changes its own working folder and
    runs hooks in the new repo's folder, so this is the shell's $PWD; without one, the folder
    the repo is generated into."""
    pwd = os.environ.get("PWD", "")
    if os.path.isabs(pwd) and os.path.isdir(pwd):
        return pwd
    return os.path.dirname(os.getcwd())


def given_keys(name, args):
    """The keys the command line sets: KEY=VALUE (cookiecutter), --extra-context JSON or
    --extra-context-file PATH (cruft)."""
    keys = []
    for i, given in enumerate(args):
        arg, _, value = given.partition("=") if given.startswith("--") else (given, "", "")
        value = value or (args[i + 1] if i + 1 < len(args) else "")
        if name == "cookiecutter" and "=" in arg and not arg.startswith("-"):
            keys.append(arg.split("=", 1)[0])
        elif name == "cruft" and arg in ("--extra-context", "--extra-context-file", "-E"):
            try:
                if arg == "--extra-context":
                    data = json.loads(value)
                else:
                    with open(os.path.join(invocation_dir(), value), encoding="utf-8") as f:
                        data = json.load(f)
            except (OSError, ValueError):
                continue  # cruft itself reports a file it cannot read or JSON it cannot parse
            keys.extend(data if isinstance(data, dict) else [])
    return [k for k in keys if k.isidentifier()]


def unknown_keys(name, args):
    """cookiecutter and cruft silently drop keys they do not know (a typo such as
    bidsroot=... would go unnoticed), so read the keys from their command line."""
    known = {k for k in CONTEXT if not k.startswith("_")}
    for key in given_keys(name, args):
        if key not in known:
            close = [k for k in sorted(known) if k.replace("_", "") == key.replace("_", "")]
            hint = (f" Did you mean {close[0]}?" if close
                    else f" Known keys: {', '.join(sorted(known))}.")
            yield f"unknown key {key!r} ({name} would ignore it).{hint}"


def license_choices():
    """The `license` choices of cookiecutter.json, the one list. cookiecutter and cruft refuse
    any other answer before hooks run, except one replayed from a file (cookiecutter
    --replay-file), which is what this catches. cookiecutter names its template folder;
    cruft, which has no replay, does not."""
    repo_dir = CONTEXT.get("_repo_dir")
    if not repo_dir:
        return None
    try:
        with open(os.path.join(repo_dir, "cookiecutter.json"), encoding="utf-8") as f:
            return json.load(f)["license"]
    except (OSError, ValueError, KeyError):
        return None


def problems(root, name, args):
    """Every mistake in the answers; ``root`` is the resolved bids_root ("": none or unused)."""
    slug = CONTEXT["dataset_slug"]
    if not SLUG.match(slug):
        yield f"dataset_slug {slug!r}: use {SLUG_RULE} (e.g. arc-aphasia)."
    module = CONTEXT["module_name"]
    if not module.isidentifier() or module in TAKEN or module.startswith("_"):
        yield (f"module_name {module!r}: must be a Python identifier not in "
               f"{sorted(TAKEN)} (e.g. arc_aphasia).")
    repo_id = CONTEXT["hf_repo_id"]
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(HUB_NAME.match(p) for p in parts):
        yield (f"hf_repo_id {repo_id!r}: use ORG/NAME with letters, digits, '-', '_' or '.' "
               "(e.g. my-lab/arc-aphasia).")
    choices = license_choices()
    if choices and CONTEXT["license"] not in choices:
        yield f"license {CONTEXT['license']!r}: choose one of {', '.join(choices)}."
    if root and not os.path.isdir(root):
        yield (f"bids_root {CONTEXT['bids_root']!r} is not a folder (looked for {root}). Give "
               "the BIDS dataset folder, absolute or relative to the folder you run this "
               "command from, or leave it empty.")
    yield from unknown_keys(name, args)


def main():
    name, args = tool(parent_argv())
    subcommand = next((a for a in args if not a.startswith("-")), "")
    rebaking = name == "cruft" and subcommand in ("update", "diff")
    given = CONTEXT["bids_root"].strip()
    root = "" if rebaking or not given else os.path.normpath(
        os.path.join(invocation_dir(), os.path.expanduser(given)))
    found = list(problems(root, name, args))
    if found:
        print("ERROR: cannot generate the dataset repo:", file=sys.stderr)
        for p in found:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    if root:
        with open(HANDOVER, "w", encoding="utf-8") as f:
            json.dump({"bids_root": root, "invoked_from": invocation_dir()}, f)


main()
