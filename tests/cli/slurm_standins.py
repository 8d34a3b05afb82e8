"""Stand-ins for SLURM's `sbatch`, `srun`, `sacct` and `scontrol` on one machine, enough for
submitit (Hydra's submitit launcher) to submit a job, run it and requeue it.

- `sbatch SCRIPT` keeps a copy of the script (`submitted.sh`), prints a job id and runs the
  script in the background with the job's variables; after a `scontrol requeue` it runs the
  script again with SLURM_RESTART_COUNT one higher, as SLURM does.
- `srun ... COMMAND` starts nodes × tasks-per-node copies of COMMAND (from the script's
  #SBATCH lines), each with its task's variables (SLURM_PROCID, SLURM_NODEID, ...), writes each
  one's pid to `tasks/<restart>_<rank>.pid` and its output to srun's --output file.
- `sacct` reports the job RUNNING until its last run of the script has ended.
- `scontrol requeue JOB` notes the request in `requeued` (one line per call).

Everything lands in the folder named by $SLURM_STANDIN_DIR. `--nodes` tasks share this machine:
the "nodes" talk over 127.0.0.1 on $MASTER_PORT.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

JOB_ID = "4242"

_SBATCH = """
import os, re, shutil, subprocess, sys
from pathlib import Path

state = Path(os.environ["SLURM_STANDIN_DIR"])
script = Path(sys.argv[-1])
shutil.copy(script, state / "submitted.sh")
text = script.read_text()
option = lambda name, default: (re.findall(rf"#SBATCH --{{name}}=(\\S+)", text) or [default])[0]
job = "{job}"
env = {{
    **os.environ,
    "SLURM_JOB_ID": job,
    "SLURM_JOB_NAME": option("job-name", "job"),
    "SLURM_NNODES": option("nodes", "1"),
    "SLURM_NTASKS_PER_NODE": option("ntasks-per-node", "1"),
    "SLURM_JOB_NODELIST": "127.0.0.1",
}}
loop = f'''
restarts=0
while true; do
  echo RUNNING > {{state}}/state
  SLURM_RESTART_COUNT=$restarts bash {{script}}
  if [ -e {{state}}/requeue-pending ]; then rm {{state}}/requeue-pending; restarts=$((restarts+1)); else break; fi
done
echo COMPLETED > {{state}}/state
'''
(state / "state").write_text("RUNNING")
log = open(state / "sbatch.log", "a")
subprocess.Popen(["bash", "-c", loop], env=env, stdout=log, stderr=log, start_new_session=True)
print(f"Submitted batch job {{job}}")
"""

_SRUN = """
import os, subprocess, sys
from pathlib import Path

state = Path(os.environ["SLURM_STANDIN_DIR"])
args = sys.argv[1:]
output = None
while args and args[0].startswith("--"):
    option = args.pop(0)
    if option in ("--output", "--error"):
        value = args.pop(0)
        output = value if option == "--output" else output
nodes = int(os.environ["SLURM_NNODES"])
per_node = int(os.environ["SLURM_NTASKS_PER_NODE"])
job = os.environ["SLURM_JOB_ID"]
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
(state / "tasks").mkdir(exist_ok=True)
tasks = []
for rank in range(nodes * per_node):
    env = {
        **os.environ,
        "SLURM_NTASKS": str(nodes * per_node),
        "SLURM_PROCID": str(rank),
        "SLURM_NODEID": str(rank // per_node),
        "SLURM_LOCALID": str(rank % per_node),
        "SLURM_STEP_ID": "0",
        "SLURM_NODELIST": "127.0.0.1",
    }
    path = output.replace("%j", job).replace("%t", str(rank)) if output else os.devnull
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a")
    task = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    (state / "tasks" / f"{restart}_{rank}.pid").write_text(str(task.pid))
    tasks.append(task)
sys.exit(max(abs(task.wait()) for task in tasks))
"""

_SACCT = """
import os, sys
from pathlib import Path

state = Path(os.environ["SLURM_STANDIN_DIR"])
job = sys.argv[sys.argv.index("-j") + 1].split(",")[0]
print("JobID|State|NodeList")
print(f"{job}|{(state / 'state').read_text().strip()}|127.0.0.1")
"""

_SCONTROL = """
import os, sys
from pathlib import Path

state = Path(os.environ["SLURM_STANDIN_DIR"])
assert sys.argv[1] == "requeue", sys.argv
with open(state / "requeued", "a") as f:
    f.write(" ".join(sys.argv[2:]) + "\\n")
(state / "requeue-pending").touch()
"""


def install(bin_dir: Path) -> None:
    """Writes the four stand-ins into bin_dir (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {
        "sbatch": _SBATCH.format(job=JOB_ID),
        "srun": _SRUN,
        "sacct": _SACCT,
        "scontrol": _SCONTROL,
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        os.chmod(path, 0o755)
