#!/usr/bin/env bash
# Side-by-side benchmark: the same plays on the same lab hosts, run by
# Ansible 2.14, by gokube and by the floor (bench/floor: a plain SSH client
# doing only the host work a run cannot avoid), alternating run by run.
#   bench/run.sh quick   3 hosts: cold, warm, one task (1 Ansible run each,
#                        3 gokube and floor runs each): under 3 minutes
#   bench/run.sh [full]  30 hosts (1 Ansible run: ~9 min a 31-task run
#                        here), then 3 hosts with 25 ms added each way and
#                        3 hosts (RUNS runs of gokube and the floor, ARUNS
#                        of Ansible; default 3); the table is rewritten
#                        after each configuration
# Prints and writes bench/results/<date>-<mode>.csv and .md: medians, the
# ratios to Ansible and to the floor, gokube's round trips per host, peak
# memory of each tool's whole process tree (bench/benchtime), the 1-minute
# load average during the runs (the lab hosts share the machine's cores,
# so the load says how comparable a table is), and whether the hosts' state
# after each tool's cold run was the same (bench/state.sh). A difference
# in that state fails the benchmark (exit 1) after the table is written.
# The lab (BENCH_LAB, default gkb) is reused when it is already up.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-full}
BIN=${BIN:-bin/gokube}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
LAB=${BENCH_LAB:-gkb}
SUBNET=${BENCH_SUBNET:-10.233.0.0/24}
# Configurations: "HOSTS DELAY_MS RUNS ANSIBLE_RUNS".
case $MODE in
quick) CONFIGS=("3 0 3 1") ;;
full) CONFIGS=("30 0 ${RUNS:-3} 1" "3 25 ${RUNS:-3} ${ARUNS:-3}" "3 0 ${RUNS:-3} ${ARUNS:-3}") ;;
*) echo "usage: bench/run.sh [quick|full]" >&2; exit 2 ;;
esac
# BENCH_CONFIGS="HOSTS DELAY RUNS ARUNS;...": other configurations.
if [ -n "${BENCH_CONFIGS:-}" ]; then IFS=';' read -ra CONFIGS <<<"$BENCH_CONFIGS"; fi
work=$(mktemp -d)
trap 'rm -rf "$work"; $BIN lab delay 0 --name "$LAB" >/dev/null 2>&1 || true' EXIT
mkdir -p bench/results "$work/state"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
csv=bench/results/$stamp-$MODE.csv
md=bench/results/$stamp-$MODE.md
raw=$work/raw.csv
equal=$work/equal.csv
: >"$raw"; : >"$equal"
started=$(date +%s)

# Built per run: two benchmarks on two labs must not replace each other's.
$GO build -o "$work/benchfloor" ./bench/floor
$GO build -o "$work/benchtime" ./bench/benchtime
maxhosts=0
for c in "${CONFIGS[@]}"; do read -r h _ <<<"$c"; [ "$h" -gt "$maxhosts" ] && maxhosts=$h; done
$BIN lab up "$maxhosts" --name "$LAB" --subnet "$SUBNET" >/dev/null

# ANSIBLE_TIMEOUT: SSH connect timeout (default 10 s), which 30 lab hosts on
# a busy 2-core machine can exceed.
export ANSIBLE_TIMEOUT=60 ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PIPELINING=True ANSIBLE_FORKS=50 \
       ANSIBLE_STDOUT_CALLBACK=null ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
       ANSIBLE_LOCAL_TEMP="$work/ansible-tmp" \
       ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s" ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp"

# one TOOL SCENARIO HOSTS DELAY INV: one timed run, appended to $raw as
# tool,scenario,hosts,delay,seconds,peak_kb,user_s,sys_s,rt_per_host,load1
one() {
  local tool=$1 scen=$2 hosts=$3 delay=$4 inv=$5 pb out rt=""
  case $scen in warm|cold) pb=site.yml ;; one) pb=one.yml ;; esac
  if [ "$scen" = cold ]; then $BIN play -i "$inv" bench/reset.yml >"$work/reset.out" || { echo "reset failed:" >&2; tail -20 "$work/reset.out" >&2; exit 1; }; fi
  out=$work/$tool.out
  local rc=0
  case $tool in
  ansible) "$work/benchtime" -o "$work/time" -- ansible-playbook -i "$inv" "bench/ansible/$pb" >"$out" 2>&1 || rc=$? ;;
  floor) "$work/benchtime" -o "$work/time" -- "$work/benchfloor" -i "$inv" "$scen" >"$out" 2>&1 || rc=$? ;;
  gokube) "$work/benchtime" -o "$work/time" -- $BIN play -i "$inv" "bench/gokube/$pb" --output json >"$out" || rc=$? ;;
  esac
  if [ "$rc" != 0 ]; then
    echo "$tool $scen ($hosts hosts, +$delay ms) failed (exit $rc):" >&2
    tail -20 "$out" >&2
    exit 1
  fi
  case $tool in
  gokube)
    rt=$(python3 -c 'import json,sys; h=json.load(open(sys.argv[1]))["hosts"]; print(round(sum(s["round_trips"] for s in h.values())/len(h),1))' "$out") ;;
  esac
  read -r secs kb user sys <"$work/time"
  echo "$tool,$scen,$hosts,$delay,$secs,$kb,$user,$sys,$rt,$(cut -d' ' -f1 /proc/loadavg)" >>"$raw"
  printf '  %-8s %-5s %2s hosts +%2s ms: %7.2f s  %7d KB  %s\n' "$tool" "$scen" "$hosts" "$delay" "$secs" "$kb" "${rt:+$rt RT/host}"
}

# capture TOOL HOSTS: the state every bench host is in, to $work/state/TOOL/.
capture() {
  local dir=$work/state/$1 i
  mkdir -p "$dir"
  for i in $(seq "$2"); do
    $BIN lab ssh --name "$LAB" "$LAB-$i" sh -s <bench/state.sh >"$dir/$LAB-$i" 2>&1 &
  done
  wait
}

summary() {
  python3 - "$raw" "$equal" "$csv" "$md" "$MODE" "$(( $(date +%s) - started ))" <<'PY'
import csv, statistics, sys, platform, os, datetime
raw, equal, out_csv, out_md, mode, took = sys.argv[1:7]
eq = {(h, d): v for h, d, v in csv.reader(open(equal))}
groups = {}
for tool, scen, hosts, delay, secs, kb, user, sys_, rt, load in csv.reader(open(raw)):
    g = groups.setdefault((scen, hosts, delay), {}).setdefault(tool, {"s": [], "kb": [], "cpu": [], "rt": [], "load": []})
    g["s"].append(float(secs)); g["kb"].append(int(kb)); g["cpu"].append(float(user) + float(sys_)); g["load"].append(float(load))
    if rt: g["rt"].append(float(rt))
names = {"warm": "31 tasks, warm (nothing to change)", "cold": "31 tasks, cold (everything changes)", "one": "1 task (command: /bin/true)"}
target = {"warm": 100, "cold": 30}
table, notes = [], []
for (scen, hosts, delay), g in groups.items():
    a, k, f = g.get("ansible"), g.get("gokube"), g.get("floor")
    if not a or not k or not f:
        continue
    am, km, fm = (statistics.median(x["s"]) for x in (a, k, f))
    r = {
        "scenario": scen, "hosts": int(hosts), "delay_ms": int(delay),
        "ansible_s": round(am, 2), "ansible_runs": len(a["s"]), "ansible_tree_peak_mb": round(max(a["kb"]) / 1024),
        "gokube_s": round(km, 3), "gokube_runs": len(k["s"]), "gokube_peak_mb": round(max(k["kb"]) / 1024),
        "gokube_cpu_s": round(statistics.median(k["cpu"]), 2),
        "floor_s": round(fm, 3), "floor_runs": len(f["s"]),
        "ratio_ansible": round(am / km, 1), "ratio_floor": round(km / fm, 2), "ansible_over_floor": round(am / fm, 1),
        "gokube_rt_per_host": statistics.median(k["rt"]) if k["rt"] else "",
        "state_equal": eq.get((hosts, delay), "") if scen == "cold" else "",
        "load1": round(statistics.median(a["load"] + k["load"] + f["load"]), 1),
    }
    table.append(r)
    where = f"{names[scen].split(',')[0]} {scen}, {hosts} hosts, +{delay} ms" if scen != "one" else f"one task, {hosts} hosts, +{delay} ms"
    if scen == "one":
        ok = r["ratio_floor"] <= 1.2
        notes.append(f"- {where}: within 1.2x of the floor? {'met' if ok else 'NOT met'} ({r['ratio_floor']}x the floor; {r['ratio_ansible']}x Ansible).")
    else:
        t = target[scen]
        if r["ratio_ansible"] >= t:
            notes.append(f"- {where}: >= {t}x Ansible? met ({r['ratio_ansible']}x; {r['ratio_floor']}x the floor).")
        elif r["ansible_over_floor"] < t:
            notes.append(f"- {where}: >= {t}x Ansible is impossible on these hosts: the floor itself is only {r['ansible_over_floor']}x faster than Ansible "
                         f"({r['floor_s']} s vs {r['ansible_s']} s), so the floor ratio decides: gokube is {r['ratio_floor']}x the floor ({r['ratio_ansible']}x Ansible).")
        else:
            notes.append(f"- {where}: >= {t}x Ansible? NOT met ({r['ratio_ansible']}x; the floor allows up to {r['ansible_over_floor']}x; gokube is {r['ratio_floor']}x the floor).")
if not table:
    sys.exit(0)
with open(out_csv, "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(table[0].keys()))
    w.writeheader(); w.writerows(table)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [f"`make bench` ({mode}), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), Linux {platform.release()}; medians; {took} s in all",
         "", "| scenario | hosts | added delay | Ansible 2.14 | gokube | floor | gokube vs Ansible | gokube / floor | gokube RT/host | peak memory Ansible tree / gokube | same host state | load avg |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in table:
    lines.append(f"| {names[r['scenario']]} | {r['hosts']} | {r['delay_ms']} ms | {r['ansible_s']} s ({r['ansible_runs']}) | {r['gokube_s']} s ({r['gokube_runs']}) | "
                 f"{r['floor_s']} s ({r['floor_runs']}) | {r['ratio_ansible']}x | {r['ratio_floor']}x | {r['gokube_rt_per_host']} | "
                 f"{r['ansible_tree_peak_mb']} / {r['gokube_peak_mb']} MB | {r['state_equal']} | {r['load1']} |")
lines += ["", "Targets:"] + notes
open(out_md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
}

status=0
for c in "${CONFIGS[@]}"; do
  read -r hosts delay runs aruns <<<"$c"
  $BIN lab delay "$delay" --name "$LAB" >/dev/null
  inv=$work/inventory-$hosts.cfg
  $BIN lab inventory --name "$LAB" --groups "bench=1-$hosts" -o "$inv"
  echo "$hosts hosts, $delay ms added each way"
  rm -rf "$work/state"
  # Cold first, each tool from the reset state; its hosts' state is captured
  # after its first cold run. gokube runs last, so the warm runs that follow
  # find the hosts converged (every tool leaves the same state).
  for scen in cold warm one; do
    n=$(( runs > aruns ? runs : aruns ))
    for i in $(seq "$n"); do
      for tool in ansible floor gokube; do
        if [ "$tool" = ansible ] && [ "$i" -gt "$aruns" ]; then continue; fi
        if [ "$tool" != ansible ] && [ "$i" -gt "$runs" ]; then continue; fi
        one "$tool" "$scen" "$hosts" "$delay" "$inv"
        if [ "$scen" = cold ] && [ "$i" = 1 ]; then capture "$tool" "$hosts"; fi
      done
    done
    if [ "$scen" = cold ]; then
      same=yes
      for tool in floor gokube; do
        if ! diff -r "$work/state/ansible" "$work/state/$tool" >"$work/diff" 2>&1; then
          same=NO; status=1
          echo "HOST STATE DIFFERS after the cold runs of Ansible and $tool ($hosts hosts, +$delay ms):" >&2
          cat "$work/diff" >&2
        fi
      done
      echo "$hosts,$delay,$same" >>"$equal"
      echo "  same host state after each tool's cold run: $same"
    fi
  done
  summary >/dev/null
done
$BIN lab delay 0 --name "$LAB" >/dev/null
summary
echo "wrote $csv and $md"
exit $status
