#!/usr/bin/env bash
# Side-by-side benchmark: the same plays on the same lab hosts, run by
# Ansible 2.14 and by gokube, alternating the tools run by run.
#   bench/run.sh quick   3 hosts: warm, cold, one task (1 Ansible run each,
#                        3 gokube runs each): about 3 minutes
#   bench/run.sh [full]  3 hosts and 3 hosts with 25 ms added each way:
#                        warm, cold, one task, RUNS runs of each tool
# Prints and writes bench/results/<date>-<mode>.csv and .md: medians, the
# ratio, gokube's round trips per host, both tools' peak memory (for Ansible
# the largest process of its tree, as GNU time reports children), and the
# 1-minute load average during the runs (the lab hosts share the machine's
# cores, so the load says how comparable a table is).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-full}
BIN=${BIN:-bin/gokube}
LAB=${BENCH_LAB:-gkb}
SUBNET=${BENCH_SUBNET:-10.233.0.0/24}
case $MODE in
quick) RUNS=${RUNS:-3}; ARUNS=${ARUNS:-1}; DELAYS="0" ;;
full) RUNS=${RUNS:-3}; ARUNS=${ARUNS:-3}; DELAYS="0 25" ;;
*) echo "usage: bench/run.sh [quick|full]" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"; $BIN lab delay 0 --name "$LAB" >/dev/null 2>&1 || true' EXIT
mkdir -p bench/results
stamp=$(date -u +%Y-%m-%dT%H%MZ)
csv=bench/results/$stamp-$MODE.csv
md=bench/results/$stamp-$MODE.md
raw=$work/raw.csv

$BIN lab up 3 --name "$LAB" --subnet "$SUBNET" >/dev/null

export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PIPELINING=True ANSIBLE_FORKS=50 \
       ANSIBLE_STDOUT_CALLBACK=null ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
       ANSIBLE_LOCAL_TEMP="$work/ansible-tmp" \
       ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s" ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp"

# one TOOL SCENARIO DELAY INV: one timed run, appended to $raw as
# tool,scenario,delay,seconds,peak_kb,rt_per_host,load1
one() {
  local tool=$1 scen=$2 delay=$3 inv=$4 pb out rt=""
  case $scen in warm|cold) pb=site.yml ;; one) pb=one.yml ;; esac
  if [ "$scen" = cold ]; then $BIN play -i "$inv" bench/reset.yml >/dev/null; fi
  out=$work/$tool.out
  if [ "$tool" = ansible ]; then
    /usr/bin/time -f '%e %M' -o "$work/time" ansible-playbook -i "$inv" "bench/ansible/$pb" >"$out" 2>&1
  else
    /usr/bin/time -f '%e %M' -o "$work/time" $BIN play -i "$inv" "bench/gokube/$pb" --output json >"$out"
    rt=$(python3 -c 'import json,sys; h=json.load(open(sys.argv[1]))["hosts"]; print(round(sum(s["round_trips"] for s in h.values())/len(h),1))' "$out")
  fi
  read -r secs kb <"$work/time"
  echo "$tool,$scen,$delay,$secs,$kb,$rt,$(cut -d' ' -f1 /proc/loadavg)" >>"$raw"
  printf '  %-8s %-5s delay %2s ms: %7.2f s  %6d KB  %s\n' "$tool" "$scen" "$delay" "$secs" "$kb" "${rt:+$rt RT/host}"
}

for delay in $DELAYS; do
  $BIN lab delay "$delay" --name "$LAB" >/dev/null
  $BIN lab inventory --name "$LAB" --groups bench=1-3 -o "$work/inventory.cfg"
  inv=$work/inventory.cfg
  echo "3 hosts, $delay ms added each way"
  # Converge once with each tool so that "warm" means nothing to change.
  ansible-playbook -i "$inv" bench/ansible/site.yml >/dev/null
  $BIN play -i "$inv" bench/gokube/site.yml >/dev/null
  for scen in warm one cold; do
    n=$(( RUNS > ARUNS ? RUNS : ARUNS ))
    for i in $(seq "$n"); do
      if [ "$i" -le "$ARUNS" ]; then one ansible "$scen" "$delay" "$inv"; fi
      if [ "$i" -le "$RUNS" ]; then one gokube "$scen" "$delay" "$inv"; fi
    done
  done
done
$BIN lab delay 0 --name "$LAB" >/dev/null

python3 - "$raw" "$csv" "$md" "$MODE" <<'PY'
import csv, statistics, sys, platform, os, datetime
raw, out_csv, out_md, mode = sys.argv[1:5]
rows = list(csv.reader(open(raw)))
groups = {}
for tool, scen, delay, secs, kb, rt, load in rows:
    g = groups.setdefault((scen, delay), {}).setdefault(tool, {"s": [], "kb": [], "rt": [], "load": []})
    g["s"].append(float(secs)); g["kb"].append(int(kb)); g["load"].append(float(load))
    if rt: g["rt"].append(float(rt))
names = {"warm": "31 tasks, warm (nothing to change)", "cold": "31 tasks, cold (everything changes)", "one": "1 task (command: /bin/true)"}
table = []
for (scen, delay), g in groups.items():
    a, k = g.get("ansible"), g.get("gokube")
    if not a or not k:
        continue
    am, km = statistics.median(a["s"]), statistics.median(k["s"])
    table.append({
        "scenario": scen, "hosts": 3, "delay_ms": delay,
        "ansible_s": round(am, 2), "ansible_runs": len(a["s"]), "ansible_peak_mb": round(max(a["kb"]) / 1024),
        "gokube_s": round(km, 3), "gokube_runs": len(k["s"]), "gokube_peak_mb": round(max(k["kb"]) / 1024),
        "ratio": round(am / km, 1), "gokube_rt_per_host": statistics.median(k["rt"]) if k["rt"] else "",
        "load1": round(statistics.median(a["load"] + k["load"]), 1),
    })
with open(out_csv, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(table[0].keys()))
    w.writeheader(); w.writerows(table)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [f"`make bench` ({mode}), {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), Linux {platform.release()}; medians",
         "", "| scenario | hosts | added delay | Ansible 2.14 | gokube | ratio | gokube RT/host | peak memory Ansible / gokube | load avg |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in table:
    lines.append(f"| {names[r['scenario']]} | {r['hosts']} | {r['delay_ms']} ms | {r['ansible_s']} s ({r['ansible_runs']} runs) | {r['gokube_s']} s ({r['gokube_runs']} runs) | {r['ratio']}x | {r['gokube_rt_per_host']} | {r['ansible_peak_mb']} / {r['gokube_peak_mb']} MB | {r['load1']} |")
open(out_md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "wrote $csv and $md"
