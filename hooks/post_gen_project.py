"""If a BIDS root was given, infer schema.py from it, with the new repo's own push.py.

`python push.py --bids-root ROOT --infer-schema --write` is the one way schema.py is
inferred, at bake time and later. It runs on the Python running cookiecutter; when that
lacks the repo's dependencies, or the folder is not BIDS, the repo is generated all the same
(with the template's schema.py) and this says what to install and what to run.
"""

import json
import os
import re
import shlex
import subprocess
import sys

HANDOVER = ".cookiecutter-bids-root"  # written by pre_gen_project.py: the resolved bids_root


def main():
    if not os.path.isfile(HANDOVER):
        return  # no bids_root given, or cruft re-baking an existing repo
    with open(HANDOVER, encoding="utf-8") as f:
        given = json.load(f)
    os.remove(HANDOVER)
    root, here = given["bids_root"], os.getcwd()
    try:
        where = os.path.relpath(here, given["invoked_from"])
    except ValueError:  # another drive (Windows)
        where = here
    cd = f"cd {shlex.quote(here if where.startswith('..') else where)}"
    infer = ["push.py", "--bids-root", root, "--infer-schema", "--write"]
    with open("schema.py", encoding="utf-8") as f:
        example = f.read()
    # Emptied first, so --write keeps no backup of the template's example.
    with open("schema.py", "w", encoding="utf-8") as f:
        f.write("")
    # -B: no bytecode left in the new repo.
    done = subprocess.run([sys.executable, "-B", *infer], capture_output=True, text=True,
                          check=False)
    rerun = f"  python {shlex.join(infer)}"
    if done.returncode == 0:
        print(f"schema.py inferred from {root}: review it, then run\n  {cd}\n"
              f"  python push.py --bids-root {shlex.quote(root)} --out staging/check")
        return
    with open("schema.py", "w", encoding="utf-8") as f:
        f.write(example)
    missing = re.search(r"No module named '([\w.]+)'", done.stderr)
    if missing:
        print(f"schema.py was not inferred: {sys.executable} lacks "
              f"{missing.group(1).split('.')[0]}, which the repo needs. Install the repo's "
              f"dependencies, then infer it:\n  {cd}\n  pip install -e .\n{rerun}\n"
              "(Or install beforehand what the template's README lists, and inference runs "
              "while baking.)")
        return
    lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
    reason = lines[-1].removeprefix("error: ")
    print(f"schema.py was not inferred ({reason}); the template's example is in place. "
          f"Fix that, then run:\n  {cd}\n{rerun}")


main()
