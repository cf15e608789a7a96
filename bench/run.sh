#!/usr/bin/env bash
# Side-by-side benchmark: the same 31 tasks on the same 3 lab hosts, run by
# Ansible 2.14 and by gokube, warm (nothing to change). Prints both times and
# the ratio, then gokube's round trips per host with 50 ms of added latency.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/gokube}
LAB=${BENCH_LAB:-gkb}
LABDIR=/var/lib/gokube/lab/$LAB
RUNS=${RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

$BIN lab up 3 --name "$LAB" --subnet 10.233.0.0/24 >/dev/null
$BIN lab inventory --name "$LAB" --groups bench=1-3 -o "$work/inventory.cfg"

export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PIPELINING=True ANSIBLE_FORKS=5 \
       ANSIBLE_STDOUT_CALLBACK=null ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
       ANSIBLE_LOCAL_TEMP="$work/ansible-tmp"

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

echo "converging (cold runs) ..."
ansible-playbook -i "$work/inventory.cfg" bench/ansible/site.yml >/dev/null
$BIN play -i "$work/inventory.cfg" bench/gokube/site.yml >/dev/null

t0=$(now); ansible-playbook -i "$work/inventory.cfg" bench/ansible/site.yml >/dev/null; t1=$(now)
ansible_s=$(elapsed "$t0" "$t1")

best=999
for _ in $(seq "$RUNS"); do
  t0=$(now); $BIN play -i "$work/inventory.cfg" bench/gokube/site.yml >"$work/gk.out"; t1=$(now)
  s=$(elapsed "$t0" "$t1"); best=$(echo "if ($s < $best) $s else $best" | bc -l)
done
grep -E "changed=" "$work/gk.out" || true

printf '\n31 tasks x 3 hosts, warm (no change), same hosts\n'
printf '  ansible-playbook 2.14 (pipelining on): %8.3f s\n' "$ansible_s"
printf '  gokube (best of %d):                    %8.3f s\n' "$RUNS" "$best"
printf '  ratio:                                 %8.1fx\n' "$(echo "$ansible_s / $best" | bc -l)"

echo
echo "round trips per host with 50 ms added each way (gokube lab delay 50):"
$BIN lab delay 50 --name "$LAB" >/dev/null
$BIN lab inventory --name "$LAB" --groups bench=1-3 -o "$work/inventory-delay.cfg"
t0=$(now); $BIN play -v -i "$work/inventory-delay.cfg" bench/gokube/site.yml --output json >"$work/gk.json"; t1=$(now)
$BIN lab delay 0 --name "$LAB" >/dev/null
python3 - "$work/gk.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for h, s in sorted(d["hosts"].items()):
    print(f"  {h}: {s.get('round_trips')} round trips, changed={s.get('changed')}")
PY
printf '  wall time with 50 ms delay: %.3f s\n' "$(elapsed "$t0" "$t1")"
