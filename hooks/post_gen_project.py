"""If a BIDS root was given, replace schema.py with one inferred from it (via bids_hf)."""

import os
import subprocess
import sys

BIDS_ROOT = r"""{{ cookiecutter.bids_root }}"""

if BIDS_ROOT:
    root = os.path.abspath(os.path.expanduser(BIDS_ROOT))
    # bids_hf needs datasets and bids2table, which the environment running cookiecutter may
    # lack: then say how to infer later instead of failing the generation.
    done = subprocess.run(
        [sys.executable, "-c",
         ("import sys; from bids_hf import index_bids, infer_schema; "
          "sys.stdout.write(infer_schema(index_bids(sys.argv[1])))"), root],
        capture_output=True, text=True, check=False,
    )
    if done.returncode == 0:
        with open("schema.py", "w", encoding="utf-8") as f:
            f.write(done.stdout)
        print(f"schema.py inferred from {root}: review it, then run "
              f"`python push.py --bids-root {root} --out staging/check`.")
    else:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "unknown error"
        print(f"Could not infer schema.py here ({reason}).\n"
              "Install the repo's dependencies (pip install -e '.[test]'), then run:\n"
              f"  python push.py --bids-root {root} --infer-schema > schema.py")
